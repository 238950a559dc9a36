"""Where a campaign stands (``agentopt status``, ``agentopt.status``): progress, spend against its
budgets, endpoint health and whether its driver is still alive."""

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from agentopt.archive import queries
from agentopt.archive.store import Archive
from agentopt.optimizer.budgets import ledger, role_prices
from agentopt.optimizer.library import stored_config

STALE_HEARTBEAT_S = 30.0  # six missed heartbeats: the driver is gone


def heartbeat_age(heartbeat: datetime | None) -> float | None:
    if heartbeat is None:
        return None
    if heartbeat.tzinfo is None:  # SQLite hands back naive datetimes; they are stored in UTC
        heartbeat = heartbeat.replace(tzinfo=UTC)
    return (datetime.now(UTC) - heartbeat).total_seconds()


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
    spend: dict[str, dict[str, float]]  # role -> calls, tokens, usd
    limits: dict[str, dict[str, float | None]]

    def as_dict(self) -> dict[str, Any]:
        """The JSON of ``agentopt status --json``: progress's fields at the top level."""
        plain = super().as_dict()
        plain.pop("progress")
        plain["active_s"] = round(self.active_s, 1)
        return {**plain, **self.progress.as_dict(), "errors": self.progress.errors}


def status(archive: Archive, campaign_id: str) -> Status:
    campaign = archive.campaign(campaign_id)
    config = stored_config(archive, campaign_id)
    age = heartbeat_age(campaign.heartbeat_at)
    state = campaign.status
    if state == "running":
        state = (f"running (heartbeat {age:.0f}s ago)" if age is not None and age < STALE_HEARTBEAT_S else
                 f"driver lost (no heartbeat for {ago(age)}): agentopt resume {campaign_id}")
    spend = ledger(archive, campaign_id, role_prices(config))
    health = archive.notes(campaign_id, kind="endpoints")
    return Status(campaign_id, campaign.task, campaign.strategy, state, campaign.created_at, campaign.active_s,
                  config.budget.wall_time_s, campaign.summary.get("stopped_by"), campaign.summary.get("stop_detail"),
                  queries.progress(archive, campaign_id), health[-1].data if health else None, spend,
                  {role: getattr(config.budget, role).model_dump() for role in spend})
