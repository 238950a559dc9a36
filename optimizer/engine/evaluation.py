"""Running agents on examples: on Ray actors (default) or on threads in this process.

Each example is one unit of work, so results stream back and are committed as they finish; a crash
loses at most the examples in flight. Workers make their own LLM calls through the shared cache in
the archive, so a result computed anywhere is never paid for again. A worker that dies takes only
its in-flight examples with it: they are run again on another worker (at most
``MAX_WORKER_LOSSES`` times each, then recorded as an infrastructure error). When a budget stops
calls, the examples already running finish and are committed, and nothing new starts.
"""

import itertools
import os
import sys
from collections import Counter, deque
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from agentopt.agents import agent_from_payload
from agentopt.agents.base import Agent, Traced
from agentopt.agents.runtime.errors import BudgetExhausted
from agentopt.agents.models.gate import Endpoint
from agentopt.agents.models.llm import CallCache, Gate, LLMClient, Sampling
from agentopt.agents.runtime.prompt_runtime import Inputs
from agentopt.archive.records import ExampleOutcome
from agentopt.optimizer.engine.cluster import ensure_ray, worker_name

if TYPE_CHECKING:
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

MAX_WORKER_LOSSES = 3


@dataclass(frozen=True)
class Job:
    candidate_id: int
    split: str
    example_id: str
    input: Inputs
    payload: dict[str, Any]
    campaign_id: str | None = None  # whose budget its calls count against


@dataclass(frozen=True)
class LLMSpec:
    """What a worker needs to build its own client: picklable, and free of secrets (keys stay in
    environment variables, read where the call is made)."""

    endpoints: tuple[Endpoint, ...]
    sampling: Sampling
    timeout_s: float
    max_attempts: int
    gate: Gate
    role: str = "task"
    embedder: "LLMSpec | None" = None  # the embedder role's, for agents that retrieve by embeddings

    @classmethod
    def of(cls, llm: LLMClient) -> "LLMSpec":
        return cls(llm.endpoints, llm.sampling, llm.timeout_s, llm.max_attempts, llm.gate, llm.payer.role,
                   cls.of(llm.embedder) if llm.embedder is not None else None)

    def client(self, cache: CallCache) -> LLMClient:
        llm = LLMClient(self.endpoints, cache, self.sampling, self.timeout_s, self.max_attempts, self.gate, self.role)
        return llm.with_embedder(self.embedder.client(cache)) if self.embedder is not None else llm


@dataclass(frozen=True)
class Programs:
    """What a worker needs to run the user's programs as the driver does: the driver's import path
    (a program module next to the user's script or tests) and the programs that live only in the
    driver's session, pickled by value and unpickled once that path is in place. One that cannot be
    pickled is left out: its examples fail on the workers with its entry named, and nothing else does."""

    import_path: tuple[str, ...]
    session: dict[str, bytes]

    @classmethod
    def here(cls) -> "Programs":
        from ray import cloudpickle

        from agentopt.agents.runtime.program_runtime import SESSION_PROGRAMS

        dumps: Callable[[object], bytes] = cloudpickle.dumps  # unannotated in Ray's copy of cloudpickle
        session = {}
        for entry, program in SESSION_PROGRAMS.items():
            try:
                session[entry] = dumps(program)
            except Exception:  # noqa: BLE001, S112 - any pickling failure: that program stays in the driver
                continue
        return cls(tuple(os.path.abspath(p) for p in sys.path), session)  # '' is the working directory

    def install(self) -> None:
        """In another process (a Ray actor): the driver's import path, then its session programs."""
        from ray import cloudpickle

        from agentopt.agents.runtime.program_runtime import SESSION_PROGRAMS

        sys.path.extend(p for p in self.import_path if p not in sys.path)
        SESSION_PROGRAMS.update({entry: cloudpickle.loads(blob) for entry, blob in self.session.items()})


OnDone = Callable[[Job, ExampleOutcome], None]
Returned = ExampleOutcome | BudgetExhausted


def _run_agent(agent: Agent, inputs: Inputs, llm: LLMClient) -> tuple[str, list[dict[str, Any]] | None]:
    """The agent's output, with its trace when it keeps one (see :class:`Traced`)."""
    if isinstance(agent, Traced):
        return agent.run_traced(inputs, llm)
    return agent.run(inputs, llm), None


def run_job(llm: LLMClient, job: Job) -> Returned:
    """Run one example. Any failure becomes an outcome with an error, never a wrong answer; a spent
    budget comes back as the exception (as a value, so it crosses process boundaries unchanged)."""
    meter = llm.metered(job.campaign_id)
    try:
        (output, trace), error = _run_agent(agent_from_payload(job.payload), job.input, meter), None
    except BudgetExhausted as exc:
        return exc
    except Exception as exc:  # noqa: BLE001 - every failure is recorded as data with its reason
        output, trace, error = None, None, f"{type(exc).__name__}: {exc}"
    usage = meter.usage.as_dict()
    usage["llm_calls"] = usage.pop("calls")
    if meter.embedder is not None:  # an embedder that fails is an LLM failure of the example (health limits)
        usage["failed"] += meter.embedder.usage.failed
        usage["refused"] += meter.embedder.usage.refused
    return ExampleOutcome(job.example_id, output, None, error, usage, worker_name(), trace)


class Evaluator(Protocol):
    def evaluate(self, jobs: Sequence[Job], on_done: OnDone) -> None: ...

    def close(self) -> None: ...


H = TypeVar("H")


WAIT_S = 1.0
"""The longest a backend's ``wait`` blocks. Python runs a signal handler only in the main thread, and a
Ctrl-C the kernel may hand to a worker thread does not wake it: an unbounded wait would leave the
handler pending until a job finished, however slow its call."""


class Dispatch(Protocol[H]):
    """How one backend starts a job and learns it finished; ``collect`` returns ``None`` when the
    job was lost with its worker."""

    def submit(self, job: Job) -> H: ...

    def wait(self, handles: list[H]) -> list[H]:
        """The handles done, after at most :data:`WAIT_S` (none, if none finished by then)."""

    def collect(self, handle: H) -> Returned | None: ...


class Schedule(Protocol):
    """The order jobs start in: ``take`` the next one (``None`` once none is left), say when one
    has ``finished``, and ``put_back`` one lost with its worker to run again."""

    def take(self) -> Job | None: ...

    def finished(self, job: Job) -> None: ...

    def put_back(self, job: Job) -> None: ...


class InOrder:
    """Jobs start in the order given (the schedule before prefix-aware runs; ``prefix_affinity: false``)."""

    def __init__(self, jobs: Sequence[Job]) -> None:
        self.queue = deque(jobs)

    def take(self) -> Job | None:
        return self.queue.popleft() if self.queue else None

    def finished(self, job: Job) -> None:
        pass

    def put_back(self, job: Job) -> None:
        self.queue.appendleft(job)


@dataclass
class Lane:
    """What one endpoint is meant to work through: a run of one candidate's jobs."""

    run: deque[Job] = field(default_factory=deque)
    in_flight: int = 0


class PrefixRuns:
    """Jobs in runs that share a prompt prefix, one run per lane (an endpoint of the task model).

    A candidate's jobs share everything but the example, so each lane works through one candidate
    at a time and the gate, which sends a call where its prefix was last served, keeps that run on
    one endpoint: the endpoint re-uses its prompt cache for all but the first. The next job always
    goes to the lane with the fewest in flight, so lanes start interleaved (A1 B1 A2 B2) and stay
    balanced; a lane whose candidate is done takes the next one, and once none is left unstarted it
    shares the longest remaining run (work stealing), so no endpoint idles while work is queued."""

    def __init__(self, jobs: Sequence[Job], lanes: int) -> None:
        runs: dict[int, deque[Job]] = {}
        for job in jobs:
            runs.setdefault(job.candidate_id, deque()).append(job)
        self.unstarted = deque(runs.values())
        self.lanes = [Lane() for _ in range(max(lanes, 1))]
        self.placed: dict[tuple[int, str, str], list[Lane]] = {}  # a list: a batch may list a job twice

    def take(self) -> Job | None:
        lane = min(self.lanes, key=lambda lane: lane.in_flight)
        if not lane.run:
            lane.run = self.unstarted.popleft() if self.unstarted else max((other.run for other in self.lanes),
                                                                              key=len)
        if not lane.run:
            return None
        job = lane.run.popleft()
        lane.in_flight += 1
        self.placed.setdefault(_key(job), []).append(lane)
        return job

    def finished(self, job: Job) -> None:
        self.placed[_key(job)].pop().in_flight -= 1

    def put_back(self, job: Job) -> None:
        self.unstarted.appendleft(deque([job]))


def _key(job: Job) -> tuple[int, str, str]:
    return job.candidate_id, job.split, job.example_id


def schedule(jobs: Sequence[Job], lanes: int | None) -> Schedule:
    """Prefix runs over ``lanes`` endpoints, or the given order when ``lanes`` is ``None``."""
    return InOrder(jobs) if lanes is None else PrefixRuns(jobs, lanes)


@dataclass
class Pump(Generic[H]):
    """Keeps ``limit`` jobs in flight on a backend, started in the order of a :func:`schedule`
    over ``lanes`` endpoints, and commits each as it finishes."""

    backend: Dispatch[H]
    limit: int
    lanes: int | None = None

    def run(self, jobs: Sequence[Job], on_done: OnDone) -> None:
        queue, in_flight, losses = schedule(jobs, self.lanes), dict[H, Job](), dict[tuple[int, str, str], int]()
        stop: BudgetExhausted | None = None
        while True:
            while stop is None and len(in_flight) < self.limit and (job := queue.take()) is not None:
                in_flight[self.backend.submit(job)] = job
            if not in_flight:
                break
            for handle in self.backend.wait(list(in_flight)):
                job = in_flight.pop(handle)
                queue.finished(job)
                returned = self.backend.collect(handle)
                if isinstance(returned, BudgetExhausted):
                    stop = stop or returned
                elif returned is not None:
                    try:
                        on_done(job, returned)
                    except BudgetExhausted as exc:  # spent while committing (a judge's budget): drain as above
                        stop = stop or exc
                else:
                    key = _key(job)
                    losses[key] = losses.get(key, 0) + 1
                    if losses[key] < MAX_WORKER_LOSSES:
                        queue.put_back(job)
                    else:
                        on_done(job, ExampleOutcome(job.example_id, None, None, "WorkerLost: the worker running it "
                                                    f"died {MAX_WORKER_LOSSES} times", {}))
        if stop is not None:
            raise stop


class ThreadEvaluator:
    """In-process evaluation on a thread pool: no Ray start-up, for small runs and tests."""

    def __init__(self, llm: LLMClient, workers: int = 2, lanes: int | None = None) -> None:
        self.llm = llm
        self.workers = workers
        self.lanes = lanes
        self.pool = ThreadPoolExecutor(max_workers=workers)

    def submit(self, job: Job) -> "Future[Returned]":
        return self.pool.submit(run_job, self.llm, job)

    def wait(self, handles: "list[Future[Returned]]") -> "list[Future[Returned]]":
        return list(wait(handles, timeout=WAIT_S, return_when=FIRST_COMPLETED).done)

    def collect(self, handle: "Future[Returned]") -> Returned:
        return handle.result()

    def evaluate(self, jobs: Sequence[Job], on_done: OnDone) -> None:
        Pump(self, self.workers, self.lanes).run(jobs, on_done)

    def close(self) -> None:
        self.pool.shutdown(cancel_futures=True)


def _make_worker_class() -> Any:
    import ray

    @ray.remote(num_cpus=0)
    class EvalWorker:
        """A Ray actor holding one LLM client with the archive-backed cache."""

        def __init__(self, spec: LLMSpec, db_url: str, programs: Programs) -> None:
            from agentopt.archive.cache import SqlCallCache
            from agentopt.archive.store import Archive

            programs.install()
            cache = SqlCallCache(Archive(db_url, create=False))
            self.llm = spec.client(cache)

        def run(self, job: Job) -> Returned:
            return run_job(self.llm, job)

    return EvalWorker


def round_robin_over_nodes(n: int) -> "list[NodeAffinitySchedulingStrategy]":
    """One placement per worker, dealt over the live nodes in turn. Hard affinity: Ray's SPREAD and
    soft affinity are best effort and were seen to stack every zero-CPU actor on one node of a fresh
    cluster. A node that leaves before its actor starts fails that actor, and ``collect`` replaces it."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    described: Callable[[], list[dict[str, Any]]] = ray.nodes  # unannotated in Ray
    nodes = sorted(node["NodeID"] for node in described() if node["Alive"])
    return [NodeAffinitySchedulingStrategy(nodes[i % len(nodes)], soft=False) for i in range(n)]


class RayEvaluator:
    """Evaluation on Ray actors spread over the cluster's nodes; ``workers * concurrency``
    examples are in flight at once, started in prefix runs over ``lanes`` endpoints (see
    :class:`PrefixRuns`; ``None``: in the order given). A dead actor is replaced and its examples
    run elsewhere."""

    def __init__(self, spec: LLMSpec, db_url: str, workers: int | None = None, concurrency: int = 2,
                 lanes: int | None = None) -> None:
        import ray

        ensure_ray()
        self._ray = ray
        programs = Programs.here()
        self._new_actor: Callable[[str | NodeAffinitySchedulingStrategy], Any] = (
            lambda strategy: _make_worker_class().options(max_concurrency=concurrency, scheduling_strategy=strategy)
            .remote(spec, db_url, programs))
        resources: Callable[[], dict[str, float]] = ray.cluster_resources  # unannotated in Ray
        n = workers or int(resources().get("CPU", 1))
        self.actors = [self._new_actor(s) for s in round_robin_over_nodes(n)]
        self.concurrency = concurrency
        self.lanes = lanes
        self._next = itertools.count()
        self._placed: dict[Any, Any] = {}

    def submit(self, job: Job) -> Any:
        """To the actor with the fewest jobs running (the first such in turn): an actor already
        running ``concurrency`` jobs would only queue it while another has a free slot."""
        busy = Counter(self._placed.values())
        start = next(self._next)
        turn = [self.actors[(start + i) % len(self.actors)] for i in range(len(self.actors))]
        actor = min(turn, key=lambda a: busy[a])
        ref = actor.run.remote(job)
        self._placed[ref] = actor
        return ref

    def wait(self, handles: list[Any]) -> list[Any]:
        done, _ = self._ray.wait(handles, num_returns=1, timeout=WAIT_S)
        return list(done)

    def collect(self, handle: Any) -> Returned | None:
        from ray.exceptions import ActorUnavailableError, RayActorError

        actor = self._placed.pop(handle)
        try:
            returned: Returned = self._ray.get(handle)  # the handle is a call of EvalWorker.run
            return returned
        except (RayActorError, ActorUnavailableError):
            if actor in self.actors:  # first news of this death: replace the worker
                self.actors[self.actors.index(actor)] = self._new_actor("SPREAD")
            return None

    def evaluate(self, jobs: Sequence[Job], on_done: OnDone) -> None:
        Pump(self, len(self.actors) * self.concurrency, self.lanes).run(jobs, on_done)

    def close(self) -> None:
        for actor in self.actors:
            self._ray.kill(actor)
        self.actors = []
