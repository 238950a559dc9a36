"""Schema versions: Alembic migrations, checked every time an archive is opened.

An archive is created by running every migration, so a new database and an upgraded one are the
same schema. A database at an older revision is refused until ``agentopt archive upgrade`` runs
(explicitly, because a shared PostgreSQL archive may still be in use by an older agentopt); a
database from a newer agentopt is refused and never touched.

Our revision lives in its own table, ``agentopt_version``: Optuna's RDBStorage keeps its Alembic
revision in Alembic's default ``alembic_version``, and studies share the archive's database so that
optuna-dashboard can open it. Releases before revision 0004 kept ours in ``alembic_version``; such an
archive reads as older, and upgrading it moves the revision over (see ``_migrate``).
"""

from dataclasses import dataclass
from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, text

from agentopt.archive.errors import ArchiveError

MIGRATIONS = Path(__file__).parent / "migrations"
LEGACY_REVISION = "0001"  # archives made before migrations existed have exactly this schema
VERSION_TABLE = "agentopt_version"  # not Alembic's default, which Optuna's studies use
OLD_VERSION_TABLE = "alembic_version"  # where releases before revision 0004 kept ours


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


def _revision(connection: Connection, table: str = VERSION_TABLE) -> str | None:
    return MigrationContext.configure(connection, opts={"version_table": table}).get_current_revision()


def _current(connection: Connection) -> str | None:
    """Our revision: in our table, else in the old one if it is ours there (not Optuna's), else legacy or empty."""
    revision = _revision(connection)
    if revision is None and (old := _revision(connection, OLD_VERSION_TABLE)) in _revisions():
        revision = old
    if revision is None and inspect(connection).has_table("candidates"):
        return LEGACY_REVISION
    return revision


def state(engine: Engine) -> SchemaState:
    with engine.connect() as connection:
        current = _current(connection)
    return SchemaState(current, head_revision())


@cache
def _revisions() -> frozenset[str]:
    return frozenset(script.revision for script in _scripts().walk_revisions())


def _is_known(revision: str | None) -> bool:
    """Exact ids only: Alembic would also resolve a prefix, and Optuna's revisions must never pass as ours."""
    return revision is None or revision in _revisions()


def _too_new(url: str, current: str | None) -> SchemaError:
    return SchemaError(f"archive {url} has schema revision {current}, newer than this agentopt knows "
                       f"(newest: {head_revision()}); upgrade agentopt to use it (nothing was changed)")


def check(engine: Engine, url: str) -> None:
    """What :func:`ensure` says of an archive that is not at this agentopt's revision, without taking
    the migration lock (a read-only session cannot): for readers such as the dashboard."""
    current = state(engine).current
    if current is None:
        raise ArchiveError(f"archive {url} is empty (run a campaign first, or pass --db)")
    if not _is_known(current):
        raise _too_new(url, current)
    if current != head_revision():
        raise _old(url, current)


def _old(url: str, current: str) -> SchemaError:
    return SchemaError(f"archive {url} has schema revision {current}, this agentopt needs {head_revision()}: "
                       f"run `agentopt archive upgrade --db {url}` (back it up first)")


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
            raise _old(url, current)


def _locked(connection: Connection) -> None:
    """Serialise migrations: two campaigns creating one archive at once must not both migrate it."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(7419)"))
    elif connection.dialect.name == "sqlite":
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _migrate(connection: Connection, url: str, current: str | None, target: str) -> None:
    """Run the migrations to ``target`` on a connection that holds the migration lock, and commit.

    A revision that ``_current`` found outside our table (a pre-migrations archive, or one kept in
    ``alembic_version`` by an older release) is stamped into our table first, so Alembic starts there;
    migration 0004 then drops the old table.
    """
    if not _is_known(current):
        raise _too_new(url, current)
    config = _config(connection)
    if current is not None and _revision(connection) is None:
        command.stamp(config, current)
    command.upgrade(config, target)
    connection.commit()


def upgrade(engine: Engine, url: str, target: str = "head") -> tuple[str | None, str]:
    """Migrate the archive to ``target`` (creating it when empty); returns (from, to) revisions."""
    with engine.connect() as connection:
        _locked(connection)
        current = _current(connection)
        _migrate(connection, url, current, target)
    return current, head_revision() if target == "head" else target
