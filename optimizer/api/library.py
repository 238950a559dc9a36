"""``optimize`` and its result: the campaign loop as a function call.

The CLI and YAML reach the same code: ``optimize`` builds a :class:`CampaignConfig` from its
arguments and hands it, with the task objects, to the runner that ``agentopt run`` uses. A task
built in Python is stored by name and description only (its rows stay the user's), so a campaign
of such a task is resumed from Python by passing the task again.
"""

import atexit
import contextlib
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from rich.console import Console

from agentopt.agents.base import Agent
from agentopt.agents.runtime.errors import ConfigError
from agentopt.agents.kinds import agent_from_payload
from agentopt.agents.models.llm import LLMClient
from agentopt.agents.models.local_model import LocalModelServers
from agentopt.agents.prompt import embeds
from agentopt.agents.runtime.prompt_runtime import Inputs
from agentopt.archive.cache import SqlCallCache
from agentopt.archive.paths import checked_url
from agentopt.archive.records import EvalSummary
from agentopt.archive.store import Archive
from agentopt.optimizer.engine.campaign import CampaignReport
from agentopt.optimizer.engine.config import (
    LOCAL,
    BudgetConfig,
    CampaignConfig,
    DedupConfig,
    EvaluationConfig,
    LocalModelConfig,
    Models,
    SeedAgentConfig,
    StrategyConfig,
    first_error,
    load_config,
    stored_config,
    task_ref,
)
from agentopt.optimizer.engine.runner import run_campaigns
from agentopt.optimizer.engine.stored import check_resumable, export_agent, stored_task
from agentopt.optimizer.tasks import Task, load_task
from agentopt.optimizer.engine.ui import Reporter, RichReporter, SilentReporter

if TYPE_CHECKING:
    from langchain_core.runnables import Runnable


def open_store(archive: "str | Archive | None", create: bool = True) -> Archive:
    """An archive from a URL or a bare path (a path means SQLite; ``None``: ``$AGENTOPT_DB`` or
    ``./agentopt.db``), checked as ``agentopt run`` checks ``--db``: a folder, a non-SQLite file or
    another program's database is refused before SQLite touches it."""
    from agentopt.archive.facade import Archive as Checked

    return archive if isinstance(archive, Archive) else Checked(archive, create=create)


@dataclass
class _Served:
    """The task model (and the embedder, for an agent retrieving by embeddings), each started on
    first use after a campaign (for :meth:`Best.run`), stopped at exit."""

    models: Models
    local_model: LocalModelConfig
    archive: Archive
    _clients: dict[str, LLMClient] = field(default_factory=dict)
    _servers: list[LocalModelServers] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def client(self, agent: Agent) -> LLMClient:
        """The task model's client, carrying the embedder's when ``agent`` retrieves by embeddings."""
        with self._lock:
            task = self._role("task")
            return task.with_embedder(self._role("embedder")) if embeds(agent) else task

    def _role(self, name: str) -> LLMClient:
        if name not in self._clients:
            role, local = getattr(self.models, name), []
            if role.model == LOCAL:
                embedding = name == "embedder"  # one thread: its calls are few, the task model's are not
                servers = LocalModelServers(1, 1 if embedding else None, self.local_model.ctx_size,
                                            embedding=embedding).__enter__()
                if not self._servers:
                    atexit.register(self.close)
                self._servers.append(servers)
                local = servers.endpoints
            self._clients[name] = LLMClient(role.pool(local), SqlCallCache(self.archive), role.sampling, role.timeout_s,
                                            role.max_attempts, role=name)
        return self._clients[name]

    def close(self) -> None:
        with self._lock:
            for servers in self._servers:
                servers.__exit__(None, None, None)
            self._servers.clear()
            self._clients.clear()


@dataclass(frozen=True)
class Best:
    """The winning candidate: its agent, its archive id and its sealed test score."""

    candidate_id: int
    agent: Agent
    test: EvalSummary
    _served: _Served = field(repr=False, compare=False)

    def run(self, inputs: Inputs) -> str:
        """Answer one input with the task model (cached: an input it was scored on costs nothing);
        the bundled model, if it is the task model, is started on first use."""
        return self.agent.run(inputs, self._served.client(self.agent))

    def as_langchain(self) -> "Runnable[Any, Any]":
        """The winner as a langchain-core Runnable on the task model (``invoke``, ``batch``, ``|``):
        for an optimised chain, the same chain with the winning templates."""
        return self.agent.as_runnable(  # type: ignore[attr-defined, no-any-return]  # every built-in kind has it
            self._served.client(self.agent))


@dataclass
class Result:
    """One finished campaign. ``best.run(...)`` answers new inputs; ``export`` writes a package and
    ``report`` an HTML report. A context manager: leaving it stops a model started by ``best.run``."""

    summary: CampaignReport
    task: Task
    archive: Archive
    config: CampaignConfig
    _served: _Served = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._served = _Served(self.config.models, self.config.local_model, self.archive)

    @property
    def campaign_id(self) -> str:
        return self.summary.campaign_id

    @property
    def best(self) -> Best:
        agent = agent_from_payload(self.summary.best_agent)
        return Best(self.summary.best_candidate_id, agent, self.summary.best_test, self._served)

    @property
    def seed_test(self) -> EvalSummary:
        return self.summary.seed_test

    @property
    def stats(self) -> dict[str, Any]:
        return self.summary.stats

    def export(self, out: str | Path, candidate_id: int | None = None) -> Path:
        """A pip-installable package of the best candidate (or ``candidate_id``) in ``out``."""
        return export_agent(self.archive, candidate_id or self.summary.best_candidate_id, Path(out), self.task)

    def report(self, out: str | Path) -> Path:
        """Write the campaign's HTML report (``index.html`` and its plots) into ``out``."""
        return report(self.archive, self.campaign_id, out)

    def close(self) -> None:
        self._served.close()

    def __enter__(self) -> "Result":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def report(archive: Archive, campaign_id: str, out: str | Path) -> Path:
    """``agentopt report``: a campaign's static HTML report (``index.html`` and its scripts) in ``out``:
    the dashboard's campaign page, frozen."""
    from agentopt.optimizer.frontends.report import write_report

    return write_report(archive, campaign_id, Path(out))


def dashboard_app(archive: "str | Archive | None" = None) -> Any:
    """``agentopt dashboard`` as an ASGI app, to serve with any ASGI server or mount in your own: the
    archive (a URL, a path, or an open archive whose URL is used) is opened again on a read-only session."""
    from agentopt.archive.paths import checked_url
    from agentopt.optimizer.frontends.dashboard.app import create_app

    url = archive.url if isinstance(archive, Archive) else checked_url(archive)
    return create_app(Archive(url, create=False, read_only=True))


@contextlib.contextmanager
def _reporting(progress: bool) -> Iterator[Reporter]:
    """Rich progress bars on stderr (as the CLI shows them), or nothing."""
    reporter: Reporter = RichReporter(Console(stderr=True)) if progress else SilentReporter()
    with contextlib.closing(reporter):
        yield reporter


def _seed(seed: "Agent | str | SeedAgentConfig | None") -> SeedAgentConfig:
    if seed is None:
        return SeedAgentConfig()
    if isinstance(seed, SeedAgentConfig):
        return seed
    if isinstance(seed, str):
        return SeedAgentConfig(instruction=seed)
    if isinstance(seed, Agent):
        return SeedAgentConfig.model_validate(seed.payload())
    raise ConfigError(f"the seed is an agent (PromptAgent, ProgramAgent, ...) or an instruction, not "
                      f"{type(seed).__name__}")


def _task(task: "Task | str") -> Task:
    return load_task(task) if isinstance(task, str) else task


def optimize(task: "Task | str", seed: "Agent | str | None" = None, strategy: "StrategyConfig | str" = "ape",
             models: Models | None = None, archive: "str | Archive | None" = None,
             budget: BudgetConfig | None = None, *, name: str = "campaign", random_seed: int = 0,
             evaluation: EvaluationConfig | None = None, dedup: DedupConfig | None = None,
             local_model: LocalModelConfig | None = None, progress: bool = True, **settings: Any) -> Result:
    """Search for a better agent for ``task``, starting from ``seed``; the winner is scored on the
    sealed test split. Everything is stored in ``archive`` as it happens (a crash loses nothing, and
    :func:`resume` finishes the campaign); by default that is ``$AGENTOPT_DB`` or ``./agentopt.db``,
    as for the CLI. ``strategy`` is an ``agentopt.strategies`` object or a
    name; other campaign settings (``health``, ``prices``, ``task_seed``) pass through ``settings``.
    A progress bar goes to stderr unless ``progress=False``."""
    the_task = _task(task)
    if settings.setdefault("task_seed", the_task.seed) != the_task.seed:
        raise ConfigError(f"task_seed={settings['task_seed']} differs from the seed task {the_task.name!r} was split "
                          f"with ({the_task.seed}); build the task with that seed instead")
    try:
        config = CampaignConfig(
            name=name, tasks=(the_task.ref or the_task.name,), seed=random_seed, models=models or Models(),
            strategy=StrategyConfig(name=strategy) if isinstance(strategy, str) else strategy,
            seed_agent=_seed(seed), budget=budget or BudgetConfig(), evaluation=evaluation or EvaluationConfig(),
            dedup=dedup or DedupConfig(), local_model=local_model or LocalModelConfig(), **settings)
    except ValidationError as exc:
        raise ConfigError(first_error(exc)) from None
    return _run(config, archive, [the_task], progress=progress)[0]


def resume(campaign_id: str, task: Task | None = None, archive: "str | Archive | None" = None,
           progress: bool = True, force: bool = False) -> Result:
    """Finish an interrupted campaign: finished examples and LLM calls are reused, never paid twice.
    ``task`` is needed for a task built in Python; ``force`` resumes one whose driver seems alive."""
    store = open_store(archive, create=False)  # never creates an archive to resume in
    check_resumable(store, campaign_id, force)
    the_task = task or stored_task(store, campaign_id)
    stored_name = store.campaign(campaign_id).task
    if the_task.name != stored_name:
        raise ConfigError(f"campaign {campaign_id} ran on task {stored_name!r}, not {the_task.name!r}")
    return _run(stored_config(store, campaign_id), store, [the_task], resume=campaign_id, progress=progress)[0]


def run_config(config: "CampaignConfig | str | Path", archive: "str | Archive | None" = None,
               progress: bool = True) -> list[Result]:
    """``agentopt run CONFIG`` from Python: one result per task of a YAML file (or config object)."""
    if not isinstance(config, CampaignConfig):
        config = load_config(config)
    tasks = [load_task(task_ref(ref), seed=config.task_seed) for ref in config.tasks]
    return _run(config, archive or config.db, tasks, progress=progress)


def _run(config: CampaignConfig, archive: "str | Archive | None", tasks: Sequence[Task], resume: str = "",
         progress: bool = True) -> list[Result]:
    """Run through the CLI's runner; an archive given by URL is created only once every endpoint
    answered, so a run that cannot start writes nothing."""
    if not isinstance(archive, Archive):
        checked_url(archive, must_exist=False)  # a bad path is refused before a model starts
    opened: list[Archive] = []

    def open_once() -> Archive:
        opened.append(open_store(archive))
        return opened[0]

    with _reporting(progress) as reporter:
        reports = run_campaigns(config, archive if isinstance(archive, Archive) else open_once, reporter,
                                resume=resume, tasks=tasks)
    store = archive if isinstance(archive, Archive) else opened[0]
    return [Result(report, task, store, config) for report, task in zip(reports, tasks, strict=True)]
