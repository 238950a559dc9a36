"""What every ``agentopt`` command shares: the consoles, common options and archive opening."""

import json
import signal
import sqlite3
import sys
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer
from rich.console import Console

from agentopt.agents.errors import ArchiveError
from agentopt.archive.models import Candidate
from agentopt.archive.schema import VERSION_TABLE
from agentopt.archive.store import Archive, database_url

out = Console(width=None if sys.stdout.isatty() else 150)
err = Console(stderr=True, soft_wrap=True)

DbOption = Annotated[str | None, typer.Option("--db", help="Archive: a SQLite path or SQLAlchemy URL "
                                                            "\\[default: $AGENTOPT_DB or ./agentopt.db]")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


SQLITE_HEADER = b"SQLite format 3\x00"
ARCHIVE_TABLES = (VERSION_TABLE, Candidate.__tablename__)  # either marks an archive, as schema.ensure reads it


def _tables(path: Path) -> set[str]:
    """The tables of a SQLite file, read without a write (no journal-mode switch, no lock file left)."""
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return {row[0] for row in conn.execute("select name from sqlite_master where type = 'table'")}
    finally:
        conn.close()


def sqlite_problem(path: Path, must_exist: bool) -> str | None:
    """Why ``path`` cannot be used as an archive, decided before SQLite opens it.

    SQLite turns any file it opens into a database (WAL mode, and tables when creating), so an empty
    or foreign file given by mistake would be changed even by a read-only command. Only a campaign
    (``must_exist`` false) may start an archive in a missing, empty or table-less SQLite file.
    """
    if path.is_dir():
        return f"{path} is a directory, not an archive file (pass --db {path / 'agentopt.db'})"
    if not path.is_file():
        return f"no archive at {path} (run a campaign first, or pass --db)" if must_exist else None
    with path.open("rb") as handle:
        header = handle.read(len(SQLITE_HEADER))
    if not header:
        return f"{path} is an empty file, not an archive (nothing was changed)" if must_exist else None
    if header != SQLITE_HEADER:
        return f"{path} is not an agentopt archive: not a SQLite database (nothing was changed)"
    try:
        tables = _tables(path)
    except sqlite3.Error as exc:
        if "locked" in str(exc):
            return None  # a busy archive is still one: opening it waits for the lock and says so if it must
        return f"{path} cannot be read as an archive: {exc} (nothing was changed)"
    if (tables or must_exist) and not tables.intersection(ARCHIVE_TABLES):
        return f"{path} is a SQLite database but not an agentopt archive (nothing was changed)"
    return None


def checked_url(db: str | None, must_exist: bool = True) -> str:
    """The archive URL; a SQLite path is checked by :func:`sqlite_problem` first."""
    url = database_url(db)
    if url.startswith("sqlite:///") and (problem := sqlite_problem(Path(url.removeprefix("sqlite:///")), must_exist)):
        raise ArchiveError(problem)
    return url


def open_archive(db: str | None, must_exist: bool = True) -> Archive:
    return Archive(checked_url(db, must_exist), create=not must_exist)


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def sigterm_as_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def stop_on_signals() -> None:
    """SIGTERM and SIGINT both unwind through ``finally`` blocks, so model servers and Ray stop.

    SIGINT is set explicitly because a shell starts background jobs with it ignored, and
    ``kill -INT`` must still stop ``agentopt model serve &``.
    """
    signal.signal(signal.SIGTERM, sigterm_as_interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)
