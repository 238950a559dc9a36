"""The lease a driver holds on a campaign or a sweep: claim it, beat while working, finish it.

Both tables carry the same lifecycle columns (``status``, ``summary``, ``heartbeat_at``, ``active_s``,
``finished_at``), and a reader tells a live driver from a dead one by them alone (a heartbeat gone
stale), so the transitions are written once, here, for either table.
"""

from collections.abc import Callable
from datetime import UTC, datetime
from contextlib import AbstractContextManager
from typing import Any, Generic, TypeVar

from sqlalchemy.orm import Session

from agentopt.archive.models import Campaign, Sweep, utcnow

STALE_HEARTBEAT_S = 30.0  # six missed heartbeats: the driver is gone


def heartbeat_age(heartbeat: datetime | None) -> float | None:
    if heartbeat is None:
        return None
    if heartbeat.tzinfo is None:  # SQLite hands back naive datetimes; they are stored in UTC
        heartbeat = heartbeat.replace(tzinfo=UTC)
    return (datetime.now(UTC) - heartbeat).total_seconds()


_Driven = TypeVar("_Driven", Campaign, Sweep)  # the tables with a lifecycle


class Lease(Generic[_Driven]):
    """The lifecycle of the rows of ``table``, each change one transaction of ``session``."""

    def __init__(self, session: Callable[[], AbstractContextManager[Session]], table: type[_Driven]) -> None:
        self._session = session
        self._table: type[_Driven] = table

    def claim(self, row_id: str) -> None:
        """This process drives the row (again, on a resume): running, beating now, not finished."""
        with self._session() as s:
            row = s.get_one(self._table, row_id)
            row.status, row.heartbeat_at, row.finished_at = "running", utcnow(), None

    def beat(self, row_id: str, active_s: float) -> None:
        """The driver is alive and has worked ``active_s`` more seconds on the row."""
        with self._session() as s:
            row = s.get_one(self._table, row_id)
            row.heartbeat_at, row.active_s = utcnow(), row.active_s + active_s

    def finish(self, row_id: str, status: str, summary: dict[str, Any]) -> None:
        with self._session() as s:
            row = s.get_one(self._table, row_id)
            row.status, row.summary, row.finished_at = status, summary, utcnow()
