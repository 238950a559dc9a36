"""Opening an archive's database: the engine with the settings that make concurrent writers safe.

SQLite gets WAL, a busy timeout and writers that queue for the write lock; a read-only engine is
refused writes by the database itself (SQLite ``mode=ro``, PostgreSQL read-only transactions). The
store (:mod:`agentopt.archive.store`) opens every archive through :func:`make_engine`.
"""

import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from sqlalchemy import URL, Engine, create_engine, event, make_url
from sqlalchemy.exc import ArgumentError

WAL_RETRY_S = 0.01  # converting a new file to WAL takes a few milliseconds


def lock_timeout_s() -> float:
    """How long a writer waits for a locked SQLite archive (``AGENTOPT_DB_TIMEOUT``, default 60 s)."""
    return float(os.environ.get("AGENTOPT_DB_TIMEOUT", "60"))


def _use_wal(cursor: sqlite3.Cursor) -> None:
    """Switch the database to WAL, retrying while another connection holds it.

    SQLite converts a new (empty) file to WAL without calling the busy handler: a second process
    that opens the file while the first converts it gets SQLITE_BUSY at once, however long
    ``busy_timeout`` is. That was the "locked by another process" of two campaigns starting on one
    new archive (measured: the error came 0.2 ms into the pragma, inside the other's conversion).
    """
    deadline = time.monotonic() + lock_timeout_s()
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY or time.monotonic() >= deadline:
                raise
            time.sleep(WAL_RETRY_S)


SUPPORTED_BACKENDS = ("sqlite", "postgresql")


def _sqlite_read_only_url(url: str) -> URL:
    """The same file opened ``mode=ro``: SQLite itself refuses every write on it, and it never creates
    the file (``PRAGMA query_only`` alone is a setting any statement can turn off)."""
    parsed = make_url(url)
    path = Path(parsed.database or "").resolve()
    return parsed.set(database=path.as_uri(), query={**parsed.query, "mode": "ro", "uri": "true"})


def make_engine(url: str, read_only: bool = False) -> Engine:
    """The archive's engine; ``read_only``: every connection refuses writes (the dashboard's), enforced
    by the database itself rather than by the care of the code that reads."""
    backend = make_url(url).get_backend_name()
    if backend not in SUPPORTED_BACKENDS:  # before SQLAlchemy asks for a driver we would then suggest installing
        raise ArgumentError(f"{backend} is not supported")
    if read_only and backend == "postgresql":
        # Read-only by connection option, so no statement (nor a pooling proxy resetting the session)
        # can turn it off; each transaction also says so, for a proxy that drops start-up options.
        engine = create_engine(url, pool_pre_ping=True,
                               connect_args={"options": "-c default_transaction_read_only=on"})

        @event.listens_for(engine, "begin")
        def _pg_read_only(conn: Any) -> None:
            conn.exec_driver_sql("SET TRANSACTION READ ONLY")

        return engine
    engine = create_engine(_sqlite_read_only_url(url) if read_only and backend == "sqlite" else url,
                           pool_pre_ping=True)
    if backend == "sqlite":

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(conn: sqlite3.Connection, _record: Any) -> None:
            # The driver opens a transaction just before a statement's first write, so reads never
            # hold a snapshot that a later write would have to upgrade (in WAL mode, an upgrade
            # that finds a newer commit fails at once instead of waiting). IMMEDIATE makes that
            # BEGIN take the write lock itself, through the busy handler: writers queue, never deadlock.
            conn.isolation_level = "IMMEDIATE"
            cursor = conn.cursor()
            cursor.execute(f"PRAGMA busy_timeout={int(lock_timeout_s() * 1000)}")
            if not read_only:  # a reader leaves the file's journal mode as its writers set it
                _use_wal(cursor)
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            if read_only:
                cursor.execute("PRAGMA query_only=ON")
            cursor.close()

    return engine
