"""Running agents on examples: on Ray actors (default) or on threads in this process.

Each example is one unit of work, so results stream back and are committed as they finish; a crash
loses at most the examples in flight. Workers make their own LLM calls through the shared cache in
the archive, so a result computed anywhere is never paid for again.
"""

import itertools
import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Protocol

from agentopt.agents import agent_from_payload
from agentopt.agents.llm import Endpoint, LLMClient, Sampling
from agentopt.archive.store import ExampleOutcome


@dataclass(frozen=True)
class Job:
    candidate_id: int
    split: str
    example_id: str
    input: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class LLMSpec:
    """What a worker needs to build its own client: picklable, and free of secrets (keys stay in
    environment variables, read where the call is made)."""

    endpoints: tuple[Endpoint, ...]
    sampling: Sampling
    timeout_s: float
    max_attempts: int


OnDone = Callable[[Job, ExampleOutcome], None]


def run_job(llm: LLMClient, job: Job) -> ExampleOutcome:
    """Run one example. Any failure becomes an outcome with an error, never a wrong answer."""
    meter = llm.metered()
    try:
        output, error = agent_from_payload(job.payload).run(job.input, meter), None
    except Exception as exc:  # noqa: BLE001 - every failure is recorded as data with its reason
        output, error = None, f"{type(exc).__name__}: {exc}"
    usage = meter.usage.as_dict()
    usage["llm_calls"] = usage.pop("calls")
    return ExampleOutcome(job.example_id, output, None, error, usage)


class Evaluator(Protocol):
    def evaluate(self, jobs: Sequence[Job], on_done: OnDone) -> None: ...

    def close(self) -> None: ...


class ThreadEvaluator:
    """In-process evaluation on a thread pool: no Ray start-up, for small runs and tests."""

    def __init__(self, llm: LLMClient, workers: int = 2) -> None:
        self.llm = llm
        self.pool = ThreadPoolExecutor(max_workers=workers)

    def evaluate(self, jobs: Sequence[Job], on_done: OnDone) -> None:
        futures: dict[Future[ExampleOutcome], Job] = {self.pool.submit(run_job, self.llm, j): j for j in jobs}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                on_done(futures[future], future.result())

    def close(self) -> None:
        self.pool.shutdown(cancel_futures=True)


def _make_worker_class() -> Any:
    import ray

    @ray.remote(num_cpus=0)
    class EvalWorker:
        """A Ray actor holding one LLM client with the archive-backed cache."""

        def __init__(self, spec: LLMSpec, db_url: str) -> None:
            from agentopt.archive.cache import SqlCallCache
            from agentopt.archive.store import Archive

            cache = SqlCallCache(Archive(db_url, create=False))
            self.llm = LLMClient(spec.endpoints, cache, spec.sampling, spec.timeout_s, spec.max_attempts)

        def run(self, job: Job) -> ExampleOutcome:
            return run_job(self.llm, job)

    return EvalWorker


def ensure_ray(address: str | None = None) -> None:
    """Start (or join) Ray once per process, sized to this machine and quiet on the terminal."""
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR,
                              "configure_logging": True}
    if address is None:
        kwargs.update(num_cpus=os.cpu_count() or 1, object_store_memory=256 * 1024**2)
    ray.init(address=address, **kwargs)


class RayEvaluator:
    """Evaluation on Ray actors; ``workers * concurrency`` examples are in flight at once."""

    def __init__(self, spec: LLMSpec, db_url: str, workers: int | None = None, concurrency: int = 2) -> None:
        import ray

        ensure_ray()
        self._ray = ray
        worker_cls = _make_worker_class()
        n = workers or int(ray.cluster_resources().get("CPU", 1))
        self.actors = [worker_cls.options(max_concurrency=concurrency).remote(spec, db_url) for _ in range(n)]
        self.max_in_flight = n * concurrency

    def evaluate(self, jobs: Sequence[Job], on_done: OnDone) -> None:
        queue = iter(jobs)
        actors = itertools.cycle(self.actors)
        in_flight: dict[Any, Job] = {}
        while True:
            for job in itertools.islice(queue, self.max_in_flight - len(in_flight)):
                in_flight[next(actors).run.remote(job)] = job
            if not in_flight:
                return
            done, _ = self._ray.wait(list(in_flight), num_returns=1)
            for ref in done:
                on_done(in_flight.pop(ref), self._ray.get(ref))

    def close(self) -> None:
        for actor in self.actors:
            self._ray.kill(actor)
        self.actors = []
