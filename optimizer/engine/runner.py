"""From a validated config to finished campaigns: start what is needed, run, always clean up.

Every endpoint is checked before the archive is opened, so a start that fails writes nothing.
"""

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Protocol

from agentopt.agents.base import Checked, Rendered
from agentopt.agents.runtime.errors import ConfigError
from agentopt.agents.models.gate import Endpoint, LocalGate
from agentopt.agents.models.llm import Gate, LLMClient, MemoryCache
from agentopt.agents.models.local_model import LocalModelServers
from agentopt.agents.prompt import embeds
from agentopt.archive.cache import SqlCallCache
from agentopt.archive.store import Archive
from agentopt.optimizer.engine.budgets import (
    CampaignBudget,
    GateControl,
    judge_cost,
    role_prices,
    test_examples,
    test_reserve,
)
from agentopt.optimizer.engine.campaign import CampaignReport, CampaignRun
from agentopt.optimizer.engine.cluster import RemoteGate, ensure_ray
from agentopt.optimizer.engine.config import LOCAL, CampaignConfig, RoleConfig, task_ref
from agentopt.optimizer.engine.evaluation import Evaluator, LLMSpec, RayEvaluator, ThreadEvaluator
from agentopt.optimizer.strategies import STRATEGIES
from agentopt.optimizer.tasks import Task, load_task
from agentopt.optimizer.tasks.base import preflight
from agentopt.optimizer.tasks.metrics import Judged
from agentopt.optimizer.engine.ui import Reporter


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


def check_campaign(config: CampaignConfig, task: Task) -> None:
    """Everything about one campaign that can be checked before a model starts."""
    preflight(task)
    _check_seed(config, task)


@contextmanager
def _gate(config: CampaignConfig, endpoints: Sequence[Endpoint], remote: bool) -> Iterator[RunGate]:
    """One gate for every endpoint of every role: a Ray actor when workers run on Ray."""
    affinity = config.evaluation.prefix_affinity
    if not remote:
        yield LocalGate(endpoints, config.health, affinity)
        return
    actor = RemoteGate(endpoints, config.health, affinity)
    try:
        yield actor
    finally:
        actor.close()


def _evaluator(config: CampaignConfig, task_llm: LLMClient, archive: Archive) -> Evaluator:
    ev = config.evaluation
    lanes = len(task_llm.endpoints) if ev.prefix_affinity else None
    if ev.backend == "threads":
        return ThreadEvaluator(task_llm, (ev.workers or 1) * ev.concurrency, lanes)
    return RayEvaluator(LLMSpec.of(task_llm), archive.url, ev.workers, ev.concurrency, lanes)


@dataclass(frozen=True)
class Services:
    """What the campaigns of one run share: the archive, the gate over every endpoint, and the
    bundled model's chat and embedding servers when a campaign uses them."""

    archive: Archive
    gate: RunGate
    local: tuple[Endpoint, ...] = ()
    embedding: tuple[Endpoint, ...] = ()


@dataclass(frozen=True)
class RoleClients:
    task: LLMClient
    proposer: LLMClient
    embedder: LLMClient | None
    judge: LLMClient | None


def _needs_embedder(config: CampaignConfig) -> bool:
    """A strategy that works on embeddings, or a seed that retrieves its demonstrations by them."""
    return (STRATEGIES[config.strategy.name].uses_embeddings(config.strategy.params)
            or embeds(config.seed_agent.agent()))


def role_clients(config: CampaignConfig, services: Services, judged: bool = False) -> RoleClients:
    """The campaign's LLM clients, on the shared gate and the archive's call cache; the judge's
    only when a task's metric grades with it (``judged``). The task model's client carries the
    embedder's, for agents that retrieve by embeddings."""
    local, archive, gate = list(services.local), services.archive, services.gate
    models = config.models
    embedder = (_client(models.embedder, "embedder", list(services.embedding), archive, gate)
                if _needs_embedder(config) else None)
    return RoleClients(
        _client(models.task, "task", local, archive, gate).with_embedder(embedder),
        _client(models.proposer, "proposer", local, archive, gate), embedder,
        _client(models.judge, "judge", local, archive, gate) if judged else None)


@contextmanager
def shared_services(configs: Sequence[CampaignConfig], tasks: Sequence[Task],
                    archive: Archive | Callable[[], Archive], reporter: Reporter, address: str | None = None,
                    remote: bool | None = None) -> Iterator[Services]:
    """Start what the campaigns of ``configs`` need, once, and stop it afterwards: the bundled
    model servers, Ray, the gate (a Ray actor if ``remote``; default: when a config evaluates on
    Ray). Every endpoint is checked before ``archive`` (a function that opens it) is called."""
    base = configs[0]
    remote = any(c.evaluation.backend == "ray" for c in configs) if remote is None else remote
    if address is not None and not remote:
        raise ConfigError("--address joins a Ray cluster, but this config evaluates on threads "
                          "(set evaluation.backend: ray)")
    needs_judge = any(isinstance(task.metric, Judged) for task in tasks)
    gates: list[RunGate] = []

    def give_up(detail: str) -> None:
        for gate in gates:
            gate.halt("endpoint_down", detail)

    with ExitStack() as stack:
        local: list[Endpoint] = []
        if any(c.models.uses_local(needs_judge) for c in configs):
            lm = base.local_model
            reporter.phase("starting the bundled local model", 0)
            local = stack.enter_context(LocalModelServers(lm.servers, lm.threads, lm.ctx_size,
                                                          max_concurrency=lm.max_concurrency,
                                                          on_give_up=give_up)).endpoints
        if remote:
            reporter.phase("starting Ray" if address is None else f"joining the Ray cluster at {address}", 0)
            ensure_ray(address)
        embedding: list[Endpoint] = []
        embedders = [c for c in configs if _needs_embedder(c)]
        if any(c.models.embedder.model == LOCAL for c in embedders):
            reporter.phase("starting the bundled model's embedding server", 0)
            embedding = stack.enter_context(LocalModelServers(1, 1, base.local_model.ctx_size,
                                                              embedding=True, on_give_up=give_up)).endpoints
        roles = {(id(c), name): (getattr(c.models, name), getattr(c.models, name).pool(local)) for c in configs
                 for name in ("task", "proposer")}
        roles |= {(id(c), "embedder"): (c.models.embedder, c.models.embedder.pool(embedding)) for c in embedders}
        if needs_judge:
            roles |= {(id(c), "judge"): (c.models.judge, c.models.judge.pool(local)) for c in configs}
        checked = {json.dumps([role.model_dump(mode="json"), [e.base_url for e in pool]], sort_keys=True):
                   (role, pool) for role, pool in roles.values()}
        _check_reachable(list(checked.values()))
        archive = archive if isinstance(archive, Archive) else archive()
        endpoints = list({e.base_url: e for _, pool in roles.values() for e in pool}.values())
        gate = stack.enter_context(_gate(base, endpoints, remote))
        gates.append(gate)
        yield Services(archive, gate, tuple(local), tuple(embedding))


def run_campaign(config: CampaignConfig, task: Task, services: Services, clients: RoleClients,
                 evaluator: Evaluator, reporter: Reporter, resume: str = "",
                 sweep: tuple[str, str] | None = None) -> CampaignReport:
    """One campaign on shared services; ``sweep`` is the (sweep id, cell key) it belongs to."""
    policy = config.dedup.functional
    if policy != "off" and config.models.task.temperature > 0:
        reporter.phase("functional dedup is off: the task model samples at temperature > 0", 0)
        policy = "off"
    seed_agent = config.seed_agent.agent()
    budget = CampaignBudget(services.gate, config.budget, role_prices(config), test_reserve(config, task, seed_agent),
                            judge_cost(config, task, test_examples(config, task)))
    run = CampaignRun(
        archive=services.archive, task=task, strategy_name=config.strategy.name,
        strategy_params=config.strategy.params, seed_agent=seed_agent, proposer=clients.proposer,
        evaluator=evaluator, reporter=reporter, config=config.model_dump(mode="json"),
        name=config.name, seed=config.seed, val_size=config.evaluation.val_size,
        test_size=config.evaluation.test_size, test_top=config.evaluation.test_top, dedup_policy=policy,
        probe_size=config.dedup.probe_size, budget=budget, campaign_id=resume, embedder=clients.embedder,
        judge=clients.judge, gate=services.gate, health=config.health, sweep=sweep,
    )
    return run.run()


def run_campaigns(config: CampaignConfig, archive: Archive | Callable[[], Archive], reporter: Reporter,
                  address: str | None = None, resume: str = "", tasks: Sequence[Task] = ()) -> list[CampaignReport]:
    """Run one campaign per task, one after another, sharing model servers, workers, the gate and
    the cache; with ``resume``, finish that one campaign (its config names its single task).

    ``tasks`` are the tasks as objects (from Python); by default the config's entries are loaded.
    Every task's metric is checked before anything starts. ``archive`` may be a function that
    opens it: it is called once every endpoint answered. A local model server that keeps dying
    halts the gate, which stops the campaign as ``endpoint_down`` with the server's exit signal and
    log tail."""
    tasks = list(tasks) or [load_task(task_ref(ref), seed=config.task_seed) for ref in config.tasks]
    for task in tasks:
        check_campaign(config, task)
    with shared_services([config], tasks, archive, reporter, address) as services:
        clients = role_clients(config, services, any(isinstance(task.metric, Judged) for task in tasks))
        reporter.phase("starting evaluation workers", 0)
        evaluator = _evaluator(config, clients.task, services.archive)
        try:
            return [run_campaign(config, task, services, clients, evaluator, reporter, resume) for task in tasks]
        finally:
            evaluator.close()
