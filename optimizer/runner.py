"""From a validated config to finished campaigns: start what is needed, run, always clean up.

Every endpoint is checked before the archive is opened, so a start that fails writes nothing.
"""

from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Protocol

from agentopt.agents.base import Checked, Rendered
from agentopt.agents.errors import ConfigError
from agentopt.agents.gate import LocalGate
from agentopt.agents.llm import Endpoint, Gate, LLMClient, MemoryCache
from agentopt.agents.local_model import LocalModelServers
from agentopt.archive.cache import SqlCallCache
from agentopt.archive.store import Archive
from agentopt.optimizer.budgets import (
    CampaignBudget,
    GateControl,
    judge_cost,
    role_prices,
    test_examples,
    test_reserve,
)
from agentopt.optimizer.campaign import CampaignReport, CampaignRun
from agentopt.optimizer.cluster import RemoteGate, ensure_ray
from agentopt.optimizer.config import LOCAL, CampaignConfig, RoleConfig, task_ref
from agentopt.optimizer.evaluation import Evaluator, LLMSpec, RayEvaluator, ThreadEvaluator
from agentopt.optimizer.strategies import STRATEGIES
from agentopt.optimizer.tasks import Task, load_task
from agentopt.optimizer.tasks.metrics import Judged
from agentopt.optimizer.tasks.scoring import preflight
from agentopt.optimizer.ui import Reporter


class RunGate(GateControl, Gate, Protocol):
    """A gate both the LLM clients and the campaign's budget use."""


def _client(role: RoleConfig, name: str, local: list[Endpoint], archive: Archive, gate: Gate) -> LLMClient:
    return LLMClient(role.pool(local), SqlCallCache(archive), role.sampling, role.timeout_s, role.max_attempts,
                     gate, name)


def _check_reachable(roles: Sequence[tuple[RoleConfig, list[Endpoint]]]) -> None:
    """Fail fast with one clear line when an endpoint is down, before anything is written."""
    for role, pool in roles:
        LLMClient(pool, MemoryCache(), role.sampling, role.timeout_s).check_reachable()


def _check_seed(config: CampaignConfig, task: Task) -> None:
    """The seed renders a train example (a template reading a field the task lacks), and a program
    imports and matches its params: one line now, not an error on every example after the proposer
    was paid."""
    seed = config.seed_agent.agent()
    if isinstance(seed, Checked):
        seed.check(task.train[0].input)
    if isinstance(seed, Rendered):
        try:
            seed.messages(task.train[0].input)
        except KeyError as exc:
            raise ConfigError(f"seed_agent.template: {exc.args[0]} (task {task.name})") from None


@contextmanager
def _gate(config: CampaignConfig, endpoints: Sequence[Endpoint]) -> Iterator[RunGate]:
    """One gate for every endpoint of every role: a Ray actor when workers run on Ray."""
    affinity = config.evaluation.prefix_affinity
    if config.evaluation.backend == "threads":
        yield LocalGate(endpoints, config.health, affinity)
        return
    remote = RemoteGate(endpoints, config.health, affinity)
    try:
        yield remote
    finally:
        remote.close()


@contextmanager
def _evaluator(config: CampaignConfig, task_llm: LLMClient, archive: Archive) -> Iterator[Evaluator]:
    ev = config.evaluation
    lanes = len(task_llm.endpoints) if ev.prefix_affinity else None
    if ev.backend == "threads":
        evaluator: Evaluator = ThreadEvaluator(task_llm, (ev.workers or 1) * ev.concurrency, lanes)
    else:
        role = config.models.task
        spec = LLMSpec(task_llm.endpoints, role.sampling, role.timeout_s, role.max_attempts, task_llm.gate)
        evaluator = RayEvaluator(spec, archive.url, ev.workers, ev.concurrency, lanes)
    try:
        yield evaluator
    finally:
        evaluator.close()


def run_campaigns(config: CampaignConfig, archive: Archive | Callable[[], Archive], reporter: Reporter,
                  address: str | None = None, resume: str = "", tasks: Sequence[Task] = ()) -> list[CampaignReport]:
    """Run one campaign per task, sharing model servers, workers, the gate and the cache; with
    ``resume``, finish that one campaign (its config names its single task).

    ``tasks`` are the tasks as objects (from Python); by default the config's entries are loaded.
    Every task's metric is checked before anything starts. ``archive`` may be a function that
    opens it: it is called once every endpoint answered. A local model server that keeps dying
    halts the gate, which stops the campaign as ``endpoint_down`` with the server's exit signal and
    log tail."""
    if address is not None and config.evaluation.backend != "ray":
        raise ConfigError("--address joins a Ray cluster, but this config evaluates on threads "
                          "(set evaluation.backend: ray)")
    tasks = list(tasks) or [load_task(task_ref(ref), seed=config.task_seed) for ref in config.tasks]
    for task in tasks:
        preflight(task)
        _check_seed(config, task)
    needs_judge = any(isinstance(task.metric, Judged) for task in tasks)
    gates: list[RunGate] = []

    def give_up(detail: str) -> None:
        for gate in gates:
            gate.halt("endpoint_down", detail)

    with ExitStack() as stack:
        local: list[Endpoint] = []
        if config.models.uses_local(needs_judge):
            lm = config.local_model
            reporter.phase("starting the bundled local model", 0)
            local = stack.enter_context(LocalModelServers(lm.servers, lm.threads, lm.ctx_size,
                                                          max_concurrency=lm.max_concurrency,
                                                          on_give_up=give_up)).endpoints
        if config.evaluation.backend == "ray":
            reporter.phase("starting Ray" if address is None else f"joining the Ray cluster at {address}", 0)
            ensure_ray(address)
        embedding: list[Endpoint] = []
        needs_embedder = STRATEGIES[config.strategy.name].uses_embeddings(config.strategy.params)
        if needs_embedder and config.models.embedder.model == LOCAL:
            reporter.phase("starting the bundled model's embedding server", 0)
            embedding = stack.enter_context(LocalModelServers(1, 1, config.local_model.ctx_size,
                                                              embedding=True, on_give_up=give_up)).endpoints
        roles = [(config.models.task, config.models.task.pool(local)),
                 (config.models.proposer, config.models.proposer.pool(local))]
        if needs_embedder:
            roles.append((config.models.embedder, config.models.embedder.pool(embedding)))
        if needs_judge:
            roles.append((config.models.judge, config.models.judge.pool(local)))
        _check_reachable(roles)
        archive = archive if isinstance(archive, Archive) else archive()
        endpoints = list({e.base_url: e for _, pool in roles for e in pool}.values())
        gate = stack.enter_context(_gate(config, endpoints))
        gates.append(gate)
        task_llm = _client(config.models.task, "task", local, archive, gate)
        proposer = _client(config.models.proposer, "proposer", local, archive, gate)
        embedder = _client(config.models.embedder, "embedder", embedding, archive, gate) if needs_embedder else None
        judge = _client(config.models.judge, "judge", local, archive, gate) if needs_judge else None
        reporter.phase("starting evaluation workers", 0)
        evaluator = stack.enter_context(_evaluator(config, task_llm, archive))
        policy = config.dedup.functional
        if policy != "off" and config.models.task.temperature > 0:
            reporter.phase("functional dedup is off: the task model samples at temperature > 0", 0)
            policy = "off"
        reports = []
        for task in tasks:
            seed_agent = config.seed_agent.agent()
            budget = CampaignBudget(gate, config.budget, role_prices(config), test_reserve(config, task, seed_agent),
                                    judge_cost(config, task, test_examples(config, task)))
            run = CampaignRun(
                archive=archive, task=task, strategy_name=config.strategy.name,
                strategy_params=config.strategy.params, seed_agent=seed_agent, proposer=proposer,
                evaluator=evaluator, reporter=reporter, config=config.model_dump(mode="json"),
                name=config.name, seed=config.seed, val_size=config.evaluation.val_size,
                test_size=config.evaluation.test_size, test_top=config.evaluation.test_top, dedup_policy=policy,
                probe_size=config.dedup.probe_size,
                budget=budget, campaign_id=resume, embedder=embedder, judge=judge, gate=gate,
            )
            reports.append(run.run())
        return reports
