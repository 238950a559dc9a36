"""Archives for tests on either backend: a fresh one, or a copy of a reference built once.

A reference archive costs a campaign or hundreds of writes; a copy costs milliseconds. SQLite is copied
with its online backup API (a consistent snapshot whatever other connections do; never a copy of the
file's bytes), PostgreSQL with ``CREATE DATABASE ... TEMPLATE``, which refuses a source that has open
sessions: dispose the reference's engines first, or copy from a pristine copy no test connects to.
"""

import os
import sqlite3
import uuid
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, make_url, text

PG_SERVER = "AGENTOPT_TEST_PG"
KINDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def skip_without_postgres(kind: str) -> None:
    if kind == "postgresql" and not os.environ.get(PG_SERVER):
        pytest.skip(f"{PG_SERVER} is not set (make test starts a PostgreSQL server and sets it)")


def _admin() -> Engine:
    return create_engine(os.environ[PG_SERVER], isolation_level="AUTOCOMMIT")


def new_pg_database(template: str | None = None, prefix: str = "t") -> str:
    """A new database on the test server, empty or a copy of the database named ``template``; its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = _admin()
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")))
    admin.dispose()
    return make_url(os.environ[PG_SERVER]).set(database=name).render_as_string(hide_password=False)


def drop_archive(url: str) -> None:
    """Drop a PostgreSQL archive, sessions left open included (a read-only reader keeps its engine, as a
    dashboard would); a SQLite file goes with its test's temporary folder."""
    if not url.startswith("postgresql"):
        return
    admin = _admin()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))
    admin.dispose()


def new_archive(kind: str, folder: Path, prefix: str = "t") -> str:
    """The URL of an empty archive of ``kind``: a file in ``folder``, or a new database."""
    return f"sqlite:///{folder / 'archive.db'}" if kind == "sqlite" else new_pg_database(prefix=prefix)


def copy_archive(url: str, folder: Path, prefix: str = "t") -> str:
    """A copy of the archive at ``url`` (a file in ``folder`` for SQLite); the copy's URL."""
    if not url.startswith("sqlite"):
        return new_pg_database(template=make_url(url).database, prefix=prefix)
    copy = folder / "archive.db"
    source, target = sqlite3.connect(str(make_url(url).database)), sqlite3.connect(copy)
    try:
        with target:
            source.backup(target)
    finally:
        source.close()
        target.close()
    return f"sqlite:///{copy}"
