"""Which archive a ``--db`` value or a Python argument means, checked before SQLite touches the file."""

import sqlite3
from pathlib import Path

from agentopt.agents.errors import ArchiveError
from agentopt.archive.models import Candidate
from agentopt.archive.schema import VERSION_TABLE
from agentopt.archive.store import database_url

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
