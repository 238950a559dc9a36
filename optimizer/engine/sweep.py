"""Running a sweep: its campaigns at once, each driven by a Ray actor, all sharing one gate and one archive.

The sweep driver starts what every cell needs once (the bundled model servers, Ray, the gate over
every endpoint), records the sweep in the archive, and keeps up to ``sweep.concurrency`` campaign
drivers running: Ray actors placed over the cluster's nodes, each running one campaign with its
examples on threads (the endpoints are the bottleneck, and a campaign's own worker processes would
cost each actor a second start-up). The gate holds every endpoint's limits across all of them,
each campaign's budget on its own ledger, and the sweep's budget over all of them.

Crash safety is the campaigns' own: each cell's campaign carries the sweep id and the cell's key,
so ``agentopt sweep resume ID`` skips finished cells, resumes interrupted ones (their finished
examples and paid calls come from the archive) and starts the rest. A failing campaign is marked
failed with its reason and the others go on.
"""

import json
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from agentopt.agents.models.gate import Endpoint
from agentopt.archive.store import Archive
from agentopt.agents.models.budget import Spend
from agentopt.optimizer.engine.budgets import spend_of
from agentopt.optimizer.engine.campaign import CampaignStopped, Heartbeat
from agentopt.optimizer.engine.cluster import remote_call
from agentopt.optimizer.engine.config import ROLES, task_ref
from agentopt.optimizer.engine.evaluation import Programs, ThreadEvaluator, round_robin_over_nodes
from agentopt.optimizer.engine.runner import RunGate, Services, check_campaign, role_clients, run_campaign, shared_services
from agentopt.optimizer.engine.sweep_config import Cell, Sweep
from agentopt.optimizer.tasks import Task, load_task
from agentopt.optimizer.tasks.metrics import Judged
from agentopt.optimizer.engine.ui import Reporter, SilentReporter

if TYPE_CHECKING:
    from ray import ObjectRef
    from ray.actor import ActorClass, ActorHandle


@dataclass(frozen=True)
class CellOutcome:
    key: str
    campaign_id: str | None
    status: str  # finished, stopped or failed
    error: str | None = None


@dataclass(frozen=True)
class SweepResult:
    sweep_id: str
    status: str  # finished, failed (some cell did), stopped (the sweep's budget)
    outcomes: tuple[CellOutcome, ...]
    skipped: int  # cells already finished before this run (a resume)
    wall_s: float


def _load(cell: Cell) -> Task:
    return load_task(task_ref(cell.config.tasks[0]), seed=cell.config.task_seed)


def drive_cell(cell: Cell, db_url: str, gate: RunGate, local: Sequence[Endpoint], embedding: Sequence[Endpoint],
               sweep_id: str, resume: str, programs: Programs) -> CellOutcome:
    """One campaign of a sweep, start to finish (in a campaign-driver actor, with the sweep
    driver's import path, so a metric or program module next to the sweep file imports); every
    failure is an outcome."""
    programs.install()
    archive = Archive(db_url, create=False)
    try:
        services = Services(archive, gate, tuple(local), tuple(embedding))
        task = _load(cell)
        clients = role_clients(cell.config, services, isinstance(task.metric, Judged))
        ev = cell.config.evaluation
        evaluator = ThreadEvaluator(clients.task, (ev.workers or 1) * ev.concurrency,
                                    len(clients.task.endpoints) if ev.prefix_affinity else None)
        try:
            report = run_campaign(cell.config, task, services, clients, evaluator, SilentReporter(),
                                  resume=resume, sweep=(sweep_id, cell.key))
        finally:
            evaluator.close()
        return CellOutcome(cell.key, report.campaign_id, "finished")
    except CampaignStopped as exc:
        return CellOutcome(cell.key, exc.campaign_id, "stopped", str(exc))
    except Exception as exc:  # noqa: BLE001 - a failing campaign is recorded, the others go on
        return CellOutcome(cell.key, archive.sweep_campaign(sweep_id, cell.key), "failed",
                           f"{type(exc).__name__}: {exc}")
    finally:
        archive.engine.dispose()


class CampaignDriver:
    """Drives one campaign of a sweep, wherever Ray placed it (a Ray actor: :func:`_driver_class`)."""

    def run(self, cell: Cell, db_url: str, gate: RunGate, local: Sequence[Endpoint], embedding: Sequence[Endpoint],
            sweep_id: str, resume: str, programs: Programs) -> CellOutcome:
        return drive_cell(cell, db_url, gate, local, embedding, sweep_id, resume, programs)


def _driver_class() -> "ActorClass[CampaignDriver]":
    import ray

    return ray.remote(num_cpus=0, max_restarts=0)(CampaignDriver)


def run_sweep(sweep: Sweep, archive: Archive | Callable[[], Archive], reporter: Reporter,
              address: str | None = None, sweep_id: str = "") -> SweepResult:
    """Run (or, with ``sweep_id``, resume) a sweep's campaigns, ``sweep.settings.concurrency`` at a time."""
    import ray
    from ray.exceptions import RayError

    started = time.perf_counter()
    tasks: dict[str, Task] = {}
    for cell in sweep.cells:
        key = json.dumps([task_ref(cell.config.tasks[0]), cell.config.task_seed], sort_keys=True, default=str)
        task = tasks.setdefault(key, _load(cell))
        check_campaign(cell.config, task)
    configs = [cell.config for cell in sweep.cells]
    with shared_services(configs, list(tasks.values()), archive, reporter, address, remote=True) as services:
        store = services.archive
        sweep_id = sweep_id or store.create_sweep(sweep.name, sweep.record())
        store.claim_sweep(sweep_id)
        before = {row.cell: row for row in store.sweep_campaigns(sweep_id)}
        configs_by_key = {cell.key: cell.config for cell in sweep.cells}
        for role in ROLES:  # the total so far: each campaign's spend at its own model's price
            spent = sum((spend_of(store.spend(row.id).get(role), configs_by_key[key].price(role))
                         for key, row in before.items() if key in configs_by_key), Spend())
            services.gate.configure(role, getattr(sweep.settings.budget, role), configs[0].price(role), spent)
        wall = sweep.settings.budget.wall_time_s
        # driven time over every run of the sweep (existing sweeps start at 0 after migration 0009)
        deadline = None if wall is None else time.time() + wall - store.sweep(sweep_id).active_s
        services.gate.set_deadline(deadline)
        queue = deque(c for c in sweep.cells if getattr(before.get(c.key), "status", "") != "finished")
        skipped = len(sweep.cells) - len(queue)
        reporter.phase(f"sweep {sweep_id}: campaigns ({skipped} already finished)", len(sweep.cells))
        reporter.advance(skipped)
        driver, programs = _driver_class(), Programs.here()
        places = iter(round_robin_over_nodes(len(queue)))  # SPREAD was seen to stack zero-CPU actors on one node
        running: dict[ObjectRef[CellOutcome], tuple[Cell, ActorHandle[CampaignDriver]]] = {}
        outcomes: list[CellOutcome] = []
        try:
            with Heartbeat(lambda seconds: store.beat_sweep(sweep_id, seconds)):
                while queue or running:
                    while (queue and len(running) < sweep.settings.concurrency and services.gate.stopped() is None
                           and not _past(deadline)):
                        cell = queue.popleft()
                        resume = before[cell.key].id if cell.key in before else ""
                        # creating an actor answers its handle (Ray's stubs: "handle or the class itself")
                        actor = cast("ActorHandle[CampaignDriver]",
                                     driver.options(scheduling_strategy=next(places)).remote())
                        ref = remote_call(actor, CampaignDriver.run, cell, store.url, services.gate, services.local,
                                          services.embedding, sweep_id, resume, programs)
                        running[ref] = (cell, actor)
                    if not running:
                        break
                    # ray.wait answers some of the references it was given, typed loosely by its stubs
                    ready, _ = ray.wait(list(running), num_returns=1)
                    for ref in cast("list[ObjectRef[CellOutcome]]", ready):
                        cell, actor = running.pop(ref)
                        try:
                            outcome = ray.get(ref)
                        except RayError as exc:
                            outcome = CellOutcome(cell.key, store.sweep_campaign(sweep_id, cell.key), "failed",
                                                  f"campaign driver lost: {type(exc).__name__}: {exc}")
                        ray.kill(actor)
                        outcomes.append(outcome)
                        reporter.advance(1, errors=int(outcome.status == "failed"))
        except KeyboardInterrupt:  # after the heartbeat's last beat, so the status stays "interrupted"
            store.finish_sweep(sweep_id, "interrupted", {"failures": _failures(outcomes)})
            raise
        finally:
            for _, actor in running.values():
                ray.kill(actor)
        stopped = services.gate.stopped() or ("wall_time_s" if queue and _past(deadline) else None)
        status = ("stopped" if stopped or queue or any(o.status == "stopped" for o in outcomes) else
                  "failed" if any(o.status == "failed" for o in outcomes) else "finished")
        store.finish_sweep(sweep_id, status, {"stopped_by": stopped, "failures": _failures(outcomes),
                                              "wall_s": round(time.perf_counter() - started, 1)})
        return SweepResult(sweep_id, status, tuple(outcomes), skipped, time.perf_counter() - started)


def _past(deadline: float | None) -> bool:
    """The sweep's wall time is spent: the gate stops calls at its deadline, and no cell starts after it."""
    return deadline is not None and time.time() >= deadline


def _failures(outcomes: Sequence[CellOutcome]) -> dict[str, str | None]:
    return {o.key: o.error for o in outcomes if o.status != "finished"}


def check_sweep_resumable(archive: Archive, sweep_id: str, force: bool = False) -> None:
    from agentopt.optimizer.engine.stored import check_driver_gone

    row = archive.sweep(sweep_id)
    check_driver_gone(f"sweep {sweep_id}", row.status, row.heartbeat_at, force)
