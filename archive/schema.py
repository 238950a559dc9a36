"""Schema versions: Alembic migrations, checked every time an archive is opened.

An archive is created by running every migration, so a new database and an upgraded one are the
same schema. A database at an older revision is refused until ``agentopt archive upgrade`` runs
(explicitly, because a shared PostgreSQL archive may still be in use by an older agentopt); a
database from a newer agentopt is refused and never touched.
"""

from dataclasses import dataclass
from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Connection, Engine, inspect, text

from agentopt.agents.errors import ArchiveError

MIGRATIONS = Path(__file__).parent / "migrations"
LEGACY_REVISION = "0001"  # archives made before migrations existed have exactly this schema


class SchemaError(ArchiveError):
    """The archive's schema is not the one this agentopt reads and writes."""


@dataclass(frozen=True)
class SchemaState:
    current: str | None  # None: an empty database
    head: str

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


@cache
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(_config())


def head_revision() -> str:
    head = _scripts().get_current_head()
    assert head is not None
    return head


def _current(connection: Connection) -> str | None:
    revision = MigrationContext.configure(connection).get_current_revision()
    if revision is None and inspect(connection).has_table("candidates"):
        return LEGACY_REVISION
    return revision


def state(engine: Engine) -> SchemaState:
    with engine.connect() as connection:
        current = _current(connection)
    return SchemaState(current, head_revision())


def _is_known(revision: str | None) -> bool:
    if revision is None:
        return True
    try:
        return _scripts().get_revision(revision) is not None
    except CommandError:
        return False


def _too_new(url: str, current: str | None) -> SchemaError:
    return SchemaError(f"archive {url} has schema revision {current}, newer than this agentopt knows "
                       f"(newest: {head_revision()}); upgrade agentopt to use it (nothing was changed)")


def ensure(engine: Engine, url: str, create: bool) -> None:
    """Make sure the archive is at this agentopt's revision, or raise one line saying why not.

    ``create`` turns an empty database into an archive; without it an empty database is an error,
    so a mistyped URL never silently shows an empty archive. Anything but the up-to-date case is
    decided again under the migration lock: another process may be creating the archive right now,
    and reading its half-visible state would look like an old schema.
    """
    if state(engine).up_to_date:
        return
    with engine.connect() as connection:
        _locked(connection)
        current = _current(connection)
        if current is None:
            if not create:
                raise ArchiveError(f"archive {url} is empty (run a campaign first, or pass --db)")
            _migrate(connection, url, current, "head")
        elif not _is_known(current):
            raise _too_new(url, current)
        elif current != head_revision():
            raise SchemaError(f"archive {url} has schema revision {current}, this agentopt needs {head_revision()}: "
                              f"run `agentopt archive upgrade --db {url}` (back it up first)")


def _locked(connection: Connection) -> None:
    """Serialise migrations: two campaigns creating one archive at once must not both migrate it."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(7419)"))
    elif connection.dialect.name == "sqlite":
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _migrate(connection: Connection, url: str, current: str | None, target: str) -> None:
    """Run the migrations to ``target`` on a connection that holds the migration lock, and commit."""
    if not _is_known(current):
        raise _too_new(url, current)
    config = _config(connection)
    if current == LEGACY_REVISION and MigrationContext.configure(connection).get_current_revision() is None:
        command.stamp(config, LEGACY_REVISION)
    command.upgrade(config, target)
    connection.commit()


def upgrade(engine: Engine, url: str, target: str = "head") -> tuple[str | None, str]:
    """Migrate the archive to ``target`` (creating it when empty); returns (from, to) revisions."""
    with engine.connect() as connection:
        _locked(connection)
        current = _current(connection)
        _migrate(connection, url, current, target)
    return current, head_revision() if target == "head" else target
