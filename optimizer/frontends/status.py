"""Where a campaign stands (``agentopt status``, ``agentopt.status``): progress, spend against its
budgets, endpoint health and whether its driver is still alive."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from agentopt.archive import queries
from agentopt.archive.lifecycle import STALE_HEARTBEAT_S, heartbeat_age
from agentopt.archive.records import LOST_NOTE
from agentopt.archive.store import Archive
from agentopt.optimizer.engine.budgets import stored_ledger
from agentopt.optimizer.engine.config import stored_config

if TYPE_CHECKING:
    from agentopt.archive.sweep_stats import Cell, SweepComparison

def ago(seconds: float | None) -> str:
    if seconds is None:
        return "ever"
    return f"{seconds / 60:.0f} min" if seconds >= 120 else f"{seconds:.0f}s"


@dataclass(frozen=True)
class Status(queries.Record):
    id: str
    task: str
    strategy: str
    status: str  # the stored status, or "running (heartbeat 3s ago)" / "driver lost (...)"
    created_at: datetime
    active_s: float
    wall_time_limit_s: float | None
    stopped_by: str | None
    stop_detail: str | None
    progress: queries.Progress
    endpoints: dict[str, Any] | None  # the latest endpoint-health note
    proposals_lost: int  # proposer calls that failed for good, so their proposals never existed
    spend: dict[str, dict[str, float]]  # role -> calls, tokens, usd
    limits: dict[str, dict[str, float | None]]

    def as_dict(self) -> dict[str, Any]:
        """The JSON of ``agentopt status --json``: progress's fields at the top level."""
        plain = super().as_dict()
        plain.pop("progress")
        plain["active_s"] = round(self.active_s, 1)
        return {**plain, **self.progress.as_dict(), "errors": self.progress.errors}


def _health_as_of(note: dict[str, Any], heartbeat: datetime | None) -> dict[str, Any]:
    """The latest endpoint-health note with its outages carried to the driver's last heartbeat. The
    note is written when an endpoint goes down or comes back, so the length it holds is the outage's
    first moment; the heartbeat says how long the driver saw it go on."""
    age, noted = heartbeat_age(heartbeat), heartbeat_age(datetime.fromisoformat(note["at"]))
    if age is None or noted is None or noted <= age:
        return note
    later = noted - age
    endpoints = {url: h if h["up"] or h.get("down_for_s") is None
                 else {**h, "down_for_s": round(h["down_for_s"] + later, 1)} for url, h in note["endpoints"].items()}
    at = datetime.now(UTC) - timedelta(seconds=age)
    return {**note, "at": at.isoformat(timespec="seconds"), "endpoints": endpoints}


def status(archive: Archive, campaign_id: str) -> Status:
    campaign = archive.campaign(campaign_id)
    config = stored_config(archive, campaign_id)
    age = heartbeat_age(campaign.heartbeat_at)
    state = campaign.status
    if state == "running":
        state = (f"running (heartbeat {age:.0f}s ago)" if age is not None and age < STALE_HEARTBEAT_S else
                 f"driver lost (no heartbeat for {ago(age)}): agentopt resume {campaign_id}")
    spend = stored_ledger(archive, campaign_id, config)
    health = archive.notes(campaign_id, kind="endpoints")
    lost = archive.notes(campaign_id, kind=LOST_NOTE)
    return Status(campaign_id, campaign.task, campaign.strategy, state, campaign.created_at, campaign.active_s,
                  config.budget.wall_time_s, campaign.summary.get("stopped_by"), campaign.summary.get("stop_detail"),
                  queries.progress(archive, campaign_id), _health_as_of(health[-1].data, campaign.heartbeat_at)
                  if health else None,
                  int(lost[-1].data["lost"]) if lost else 0, spend, config.budget.limits())


@dataclass(frozen=True)
class SweepCell(queries.Record):
    key: str
    task: str
    arm: str
    seed: int
    campaign_id: str | None
    status: str  # finished, running, stopped, failed, interrupted, or queued (no campaign yet)
    best_val: float | None
    best_test: float | None


@dataclass(frozen=True)
class SweepStatus(queries.Record):
    id: str
    name: str
    status: str
    created_at: datetime
    counts: dict[str, int]  # campaigns per status, queued included
    cells: tuple[SweepCell, ...]
    spend: dict[str, dict[str, float]]  # role -> calls, tokens, usd over all the sweep's campaigns
    limits: dict[str, dict[str, float | None]]  # the sweep's own budget, per role
    active_s: float  # the sweep's driven time, over every run
    wall_time_limit_s: float | None
    best: dict[str, SweepCell]  # per task, the best campaign so far (test when finished, else val)
    failures: dict[str, str]


def _score(cell: SweepCell) -> float | None:
    return cell.best_test if cell.best_test is not None else cell.best_val


def sweep_status(archive: Archive, sweep_id: str) -> SweepStatus:
    """Campaigns done, running and queued, spend, and the best per task so far."""
    from agentopt.optimizer.engine.sweep_config import SweepSettings, labels

    row = archive.sweep(sweep_id)
    budget = SweepSettings.model_validate(row.config["source"].get("sweep") or {}).budget
    campaigns = {c.cell: c for c in archive.sweep_campaigns(sweep_id)}
    rows = {r.id: r for r in queries.campaigns(archive, ids=[c.id for c in campaigns.values()])} if campaigns else {}
    cells = []
    for cell in labels(row.config):
        stored = campaigns.get(cell.key)
        found = rows.get(stored.id) if stored else None
        state = found.status if found else "queued"
        if state == "running" and (age := heartbeat_age(stored.heartbeat_at if stored else None)) is not None \
                and age >= STALE_HEARTBEAT_S:
            state = "driver lost"
        cells.append(SweepCell(cell.key, cell.task, cell.arm, cell.seed, found.id if found else None, state,
                               found.best_val if found else None, found.best_test if found else None))
    counts: dict[str, int] = {}
    for c in cells:
        counts[c.status] = counts.get(c.status, 0) + 1
    scored = sorted(((s, c) for c in cells if (s := _score(c)) is not None), key=lambda pair: pair[0])
    best = {c.task: c for _, c in scored}  # the last, highest, wins
    spend: dict[str, dict[str, float]] = {}
    for campaign_id in rows:
        for role, figures in stored_ledger(archive, campaign_id).items():
            total = spend.setdefault(role, {"calls": 0, "tokens": 0, "usd": 0.0})
            for what in total:
                total[what] += figures[what]
    state = row.status
    age = heartbeat_age(row.heartbeat_at)
    if state == "running":
        state = (f"running (heartbeat {age:.0f}s ago)" if age is not None and age < STALE_HEARTBEAT_S else
                 f"driver lost (no heartbeat for {ago(age)}): agentopt sweep resume {sweep_id}")
    return SweepStatus(sweep_id, row.name, state, row.created_at, counts, tuple(cells), spend, budget.limits(),
                       row.active_s, budget.wall_time_s, best, dict(row.summary.get("failures") or {}))


def sweep_cells(archive: Archive, sweep_id: str) -> tuple[list["Cell"], list[str]]:
    """The sweep's finished campaigns as cells (the winner's per-example test scores, cost), and the
    rest as "id (status)": what a comparison pools, within one sweep or over several."""
    from agentopt.archive.sweep_stats import Cell
    from agentopt.optimizer.engine.sweep_config import labels

    plan = {cell.key: cell for cell in labels(archive.sweep(sweep_id).config)}
    cells, left_out = [], []
    for stored in archive.sweep_campaigns(sweep_id):
        campaign, cell = archive.campaign(stored.id), plan.get(stored.cell)
        winner = campaign.summary.get("best_candidate_id")
        if cell is None or campaign.status != "finished" or winner is None:
            left_out.append(f"{stored.id} ({campaign.status})")
            continue
        scores = sorted((example, score) for (split, example), score in queries.example_scores(archive, winner).items()
                        if split == "test")
        spent = stored_ledger(archive, stored.id)
        cells.append(Cell(cell.task, cell.arm, cell.seed, stored.id, tuple(e for e, _ in scores),
                          tuple(s for _, s in scores), int(sum(r["calls"] for r in spent.values())),
                          int(sum(r["tokens"] for r in spent.values())), float(sum(r["usd"] for r in spent.values())),
                          float(campaign.summary.get("wall_s") or 0.0)))
    return cells, left_out


def compare_sweep(archive: Archive, sweep_id: str) -> "SweepComparison":
    """The sweep's finished campaigns compared by :func:`agentopt.archive.sweep_stats.compare_cells`;
    the rest are listed as left out."""
    from agentopt.archive.sweep_stats import compare_cells

    return compare_cells(sweep_id, *sweep_cells(archive, sweep_id))
