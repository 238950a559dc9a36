"""Which archive a ``--db`` value or a Python argument means, checked before SQLite touches the file.

Every look at the file goes through SQLite (or ``stat``, which opens nothing). POSIX advisory locks
belong to a process, and closing *any* descriptor of a file drops every lock the process holds on it,
including those its live SQLite connections rely on. A header read with ``open()`` here, in a process
with a campaign writing (a second ``optimize``, an ``Archive(...)`` beside a running campaign, a
sweep, the dashboard), let another process believe it was the archive's last user, checkpoint and
delete the WAL under the writer: rows vanished silently, and then the file's first page was
overwritten (SQLite's "how to corrupt your database", case 2.2). SQLite's own unix VFS knows every
descriptor it has on a file and defers closing one while another connection holds locks, so a
connection opened and closed through it is safe.
"""

import sqlite3
from pathlib import Path

from agentopt.archive.errors import ArchiveError
from agentopt.archive.models import Candidate
from agentopt.archive.schema import VERSION_TABLE
from agentopt.archive.store import database_url

ARCHIVE_TABLES = (VERSION_TABLE, Candidate.__tablename__)  # either marks an archive, as schema.ensure reads it


def _tables(path: Path) -> set[str]:
    """The tables of a SQLite file, read without a write (no journal-mode switch, no lock file left);
    a file that is not SQLite fails here with SQLITE_NOTADB, so its header needs no read of its own."""
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return {row[0] for row in conn.execute("select name from sqlite_master where type = 'table'")}
    finally:
        conn.close()


def sqlite_problem(path: Path, must_exist: bool) -> str | None:
    """Why ``path`` cannot be used as an archive, decided before SQLite opens it for writing.

    SQLite turns any file it opens read-write into a database (WAL mode, and tables when creating),
    so an empty or foreign file given by mistake would be changed even by a read-only command. Only a
    campaign (``must_exist`` false) may start an archive in a missing, empty or table-less SQLite file.
    """
    if path.is_dir():
        return f"{path} is a directory, not an archive file (pass --db {path / 'agentopt.db'})"
    if not path.is_file():
        return f"no archive at {path} (run a campaign first, or pass --db)" if must_exist else None
    if path.stat().st_size == 0:
        return f"{path} is an empty file, not an archive (nothing was changed)" if must_exist else None
    try:
        tables = _tables(path)
    except sqlite3.DatabaseError as exc:
        if exc.sqlite_errorcode == sqlite3.SQLITE_NOTADB:
            return f"{path} is not an agentopt archive: not a SQLite database (nothing was changed)"
        if exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY:
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
