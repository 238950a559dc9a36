"""What a stored campaign needs to run or ship again: its task, loaded the way its config named it;
whether it may be resumed (no live driver holds it); its export as a package. The library, the
command line, the dashboard and sweeps all act on stored campaigns through these."""

from datetime import datetime
from pathlib import Path

from agentopt.agents.runtime.errors import ConfigError
from agentopt.optimizer.tasks.errors import TaskError
from agentopt.archive.export import export_candidate
from agentopt.archive.lifecycle import STALE_HEARTBEAT_S, heartbeat_age
from agentopt.archive.store import Archive
from agentopt.optimizer.tasks import Task, load_task


def stored_task(archive: Archive, campaign_id: str) -> Task:
    """A stored campaign's task, loaded again the way its config named it. A task built in Python
    has no such name (its rows stay the user's), so it must be passed again instead."""
    campaign = archive.campaign(campaign_id)
    info = campaign.config.get("task", {})
    ref = info.get("ref", campaign.task)
    if ref is None:
        raise ConfigError(f"campaign {campaign_id}'s task {campaign.task!r} was built in Python (or scored by a "
                          "metric object), so it cannot be loaded again from the archive; pass the task again "
                          "from Python (agentopt.resume, agentopt.export_agent)")
    try:
        return load_task(ref, seed=campaign.config.get("task_seed", 0))
    except TaskError as exc:
        raise ConfigError(f"campaign {campaign_id}: {exc}") from None


def export_agent(archive: Archive, candidate_id: int, out: Path, task: Task | None = None) -> Path:
    """Export a candidate as a package; its inputs for the regression test come from ``task``, or
    from the task its campaign was run on (loaded again the way the config named it)."""
    if task is None:
        task = stored_task(archive, archive.candidate(candidate_id).campaign_id)
    return export_candidate(archive, candidate_id, out, task.input_and_target)


def check_resumable(archive: Archive, campaign_id: str, force: bool = False) -> None:
    """Refuse to resume a finished campaign, or one a live process still drives (unless ``force``)."""
    campaign = archive.campaign(campaign_id)
    check_driver_gone(f"campaign {campaign_id}", campaign.status, campaign.heartbeat_at, force)


def check_driver_gone(what: str, status: str, heartbeat_at: datetime | None, force: bool) -> None:
    """A campaign or sweep may be resumed: not finished, and not driven by a live process (its
    heartbeat is stale) unless ``force``."""
    if status == "finished":
        raise ConfigError(f"{what} already finished: nothing to resume")
    age = heartbeat_age(heartbeat_at)
    if status == "running" and age is not None and age < STALE_HEARTBEAT_S and not force:
        raise ConfigError(f"{what} is being run by a live process (heartbeat {age:.0f}s ago); "
                          "stop that process first, or pass force=True (--force) if it is gone")
