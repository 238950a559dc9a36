"""Schema migrations and the one-line refusals: older, legacy and newer schemas, locked files; and
Optuna studies sharing the archive's database (each keeps its Alembic revision in its own table).

``agentopt archive upgrade`` and the refusals run in this process (:func:`processes.cli`): migrating
and refusing do not depend on being a separate process. A real ``agentopt`` process still gives the
refusal of an older archive (its exit code and single stderr line) and meets a lock that another
process holds.
"""

import os
import signal
import sqlite3
import threading
import time
from pathlib import Path

import optuna
import pytest
from alembic.autogenerate import compare_metadata
from alembic.command import downgrade
from alembic.runtime.migration import MigrationContext
from processes import agentopt, cli
from sqlalchemy import Engine, create_engine, inspect, text

from agentopt.archive import schema
from agentopt.archive.models import Base
from agentopt.archive.paths import checked_url
from agentopt.archive.store import Archive, ExampleOutcome, make_engine

OLD_ROWS = [
    "INSERT INTO campaigns VALUES ('c1', 'old', 'antonyms', 'ape', '{}', 'finished', '{}', "
    "'2026-01-01 00:00:00', NULL)",
    "INSERT INTO candidates VALUES (1, 'c1', 'prompt', '{\"kind\": \"prompt\", \"instruction\": \"Hi.\"}', "
    "'h1', 'ape', '', '2026-01-01 00:00:00')",
    "INSERT INTO results VALUES (1, 1, 'val', 'val-1', 'cold', 1.0, NULL, 1, 0, 30, 2, 0.5, '2026-01-01 00:00:00')",
    "INSERT INTO evaluations VALUES (1, 1, 'val', 1, 0, 1.0, 1.0, 1.0, '2026-01-01 00:00:00')",
]


def old_archive(url: str, legacy: bool = False) -> None:
    """An archive at revision 0001 with rows in it; ``legacy``: made before migrations existed."""
    engine = make_engine(url)
    schema.upgrade(engine, url, target="0001")
    with engine.begin() as conn:
        for row in OLD_ROWS:
            conn.execute(text(row))
        if legacy:
            conn.execute(text(f"DROP TABLE {schema.VERSION_TABLE}"))
    engine.dispose()


def test_a_new_archive_is_exactly_the_models(db_url: str) -> None:
    archive = Archive(db_url)
    with archive.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"version_table": schema.VERSION_TABLE})
        assert compare_metadata(context, Base.metadata) == []
    assert schema.state(archive.engine).current == schema.head_revision()


@pytest.mark.parametrize("legacy", [False, True], ids=["revision-0001", "pre-alembic"])
@pytest.mark.slow
def test_older_archive_is_refused_then_upgraded_with_every_row(db_url: str, legacy: bool) -> None:
    old_archive(db_url, legacy)
    with pytest.raises(schema.SchemaError, match="agentopt archive upgrade"):
        Archive(db_url)
    refused = agentopt("archive", "top", "--db", db_url)
    assert refused.returncode == 2 and "agentopt archive upgrade" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and "Traceback" not in refused.stderr
    done = cli("archive", "upgrade", "--db", db_url)
    assert done.returncode == 0, done.stderr
    assert f"to schema revision {schema.head_revision()}" in done.stdout
    archive = Archive(db_url)
    [result] = archive.results(1)
    assert (result.output, result.score, result.footprint_tokens) == ("cold", 1.0, 32), "old tokens carried over"
    assert archive.candidate(1).payload["instruction"] == "Hi." and archive.candidate(1).twin_id is None
    again = cli("archive", "upgrade", "--db", db_url)
    assert again.returncode == 0 and "already at" in again.stdout


def upgraded_from(db_url: str, revision: str, row: str) -> tuple[Engine, Archive]:
    """An archive at ``revision`` holding OLD_ROWS and ``row`` (SQL), refused as it is, then upgraded
    by ``agentopt archive upgrade``; the engine is for taking it back down."""
    old_archive(db_url)
    engine = make_engine(db_url)
    schema.upgrade(engine, db_url, target=revision)
    with engine.begin() as conn:
        conn.execute(text(row))
    with pytest.raises(schema.SchemaError, match=f"revision {revision}, .* run `agentopt archive upgrade"):
        Archive(db_url)
    done = cli("archive", "upgrade", "--db", db_url)
    assert done.returncode == 0 and f"upgraded from {revision} to" in done.stdout, done.stderr
    return engine, Archive(db_url)


def downgraded_to(engine: Engine, archive: Archive, revision: str) -> None:
    archive.engine.dispose()
    with engine.connect() as conn:
        downgrade(schema._config(conn), revision)
        conn.commit()
    assert schema.state(engine).current == revision


def test_revision_0004_archive_gains_notes_and_traces_keeping_every_row(db_url: str) -> None:
    # a row only a 0004 archive can hold: the worker column is rebuilt with the table
    engine, archive = upgraded_from(db_url, "0004", (
        "INSERT INTO results (id, candidate_id, split, example_id, output, score, llm_calls, cache_hits, "
        "prompt_tokens, completion_tokens, footprint_tokens, latency_s, worker, created_at) "
        "VALUES (2, 1, 'val', 'val-2', 'hot', 0.0, 1, 0, 30, 2, 40, 0.5, 'node/7', '2026-01-01 00:00:00')"))
    rows = archive.results(1)
    assert [(r.output, r.worker, r.footprint_tokens, r.trace) for r in rows] == [("cold", None, 32, None),
                                                                                 ("hot", "node/7", 40, None)]
    archive.add_note("c1", "language_loss", {"loss": "too cold"}, 1)
    [note] = archive.notes("c1")
    assert (note.kind, note.candidate_id, note.data) == ("language_loss", 1, {"loss": "too cold"})
    downgraded_to(engine, archive, "0004")  # and back: the downgrade drops only what 0005 added
    assert not inspect(engine).has_table("notes")
    assert "trace" not in {c["name"] for c in inspect(engine).get_columns("results")}
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM results")).scalar() == 2
    engine.dispose()


def test_revision_0005_archive_gains_feedback_keeping_every_row(db_url: str) -> None:
    # a row only a 0005 archive can hold: a failed example's trace
    engine, archive = upgraded_from(db_url, "0005", (
        "INSERT INTO results (id, candidate_id, split, example_id, output, score, error, llm_calls, cache_hits, "
        "prompt_tokens, completion_tokens, footprint_tokens, latency_s, trace, created_at) VALUES (2, 1, 'val', "
        "'val-2', NULL, NULL, 'LLMUnavailable: down', 1, 0, 30, 2, 40, 0.5, '[{\"node\": \"think\"}]', "
        "'2026-01-01 00:00:00')"))
    assert [(r.output, r.trace, r.feedback) for r in archive.results(1)] == [("cold", None, None),
                                                                             (None, [{"node": "think"}], None)]
    archive.add_result(1, "val", ExampleOutcome("val-2", "warm", 0.5, None, {}, feedback="close: lukewarm"))
    assert [(r.output, r.score, r.feedback) for r in archive.results(1)] == [("cold", 1.0, None),
                                                                             ("warm", 0.5, "close: lukewarm")]
    downgraded_to(engine, archive, "0005")  # and back: the downgrade drops only the feedback column
    assert "feedback" not in {c["name"] for c in inspect(engine).get_columns("results")}
    with engine.connect() as conn:
        assert conn.execute(text("SELECT output, score FROM results ORDER BY id")).all() == [("cold", 1.0),
                                                                                            ("warm", 0.5)]
    engine.dispose()


def test_revision_0008_archive_gains_sweep_driven_time_keeping_every_row(db_url: str) -> None:
    # a sweep stored before its driven time was kept: it starts from 0 s
    engine, archive = upgraded_from(db_url, "0008", (
        "INSERT INTO sweeps (id, name, config, status, summary, created_at) VALUES ('s1', 'old', "
        "'{\"source\": {}, \"cells\": []}', 'interrupted', '{}', '2026-01-01 00:00:00')"))
    assert (archive.sweep("s1").name, archive.sweep("s1").active_s) == ("old", 0.0)
    archive.beat_sweep("s1", 12.5)
    assert archive.sweep("s1").active_s == 12.5
    downgraded_to(engine, archive, "0008")  # and back: the downgrade drops only the driven time
    assert "active_s" not in {c["name"] for c in inspect(engine).get_columns("sweeps")}
    with engine.connect() as conn:
        assert conn.execute(text("SELECT id, status FROM sweeps")).all() == [("s1", "interrupted")]
    engine.dispose()


def test_newer_archive_is_refused_and_left_untouched(db_url: str) -> None:
    old_archive(db_url)
    engine = create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text(f"UPDATE {schema.VERSION_TABLE} SET version_num = '9999'"))
    for command in (["archive", "top"], ["archive", "upgrade"]):
        refused = cli(*command, "--db", db_url)
        assert refused.returncode == 2, refused.stderr
        assert "newer than this agentopt" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    with engine.connect() as conn:
        assert conn.execute(text(f"SELECT version_num FROM {schema.VERSION_TABLE}")).scalar() == "9999"
        assert conn.execute(text("SELECT count(*) FROM results")).scalar() == 1
    engine.dispose()


def test_previous_release_archive_is_refused_then_moved_to_its_own_version_table(db_url: str) -> None:
    old_archive(db_url)
    engine = create_engine(db_url)
    schema.upgrade(engine, db_url, target="0003")
    with engine.begin() as conn:  # the layout releases before 0004 left: our revision in Alembic's default table
        conn.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)"))
        conn.execute(text("INSERT INTO alembic_version VALUES ('0003')"))
        conn.execute(text(f"DROP TABLE {schema.VERSION_TABLE}"))
    with pytest.raises(schema.SchemaError, match="revision 0003, .* run `agentopt archive upgrade"):
        Archive(db_url)
    done = cli("archive", "upgrade", "--db", db_url)
    assert done.returncode == 0 and "upgraded from 0003 to" in done.stdout, done.stderr
    assert Archive(db_url).campaign("c1").name == "old"
    assert not inspect(engine).has_table("alembic_version")
    assert schema.state(engine).current == schema.head_revision()
    engine.dispose()


@pytest.mark.parametrize("archive_first", [True, False], ids=["archive-first", "optuna-first"])
def test_optuna_studies_share_the_archive_database(db_url: str, archive_first: bool) -> None:
    if archive_first:
        Archive(db_url).engine.dispose()
    study = optuna.create_study(storage=db_url, study_name="s")
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=3)
    archive = Archive(db_url)
    assert schema.state(archive.engine).current == schema.head_revision()
    archive.create_campaign("c", "antonyms", "ape", {})
    again = cli("archive", "upgrade", "--db", db_url)
    assert again.returncode == 0 and "already at" in again.stdout, again.stderr
    assert len(optuna.load_study(study_name="s", storage=db_url).trials) == 3


@pytest.mark.slow
def test_locked_sqlite_archive_is_one_line_and_loses_nothing(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    archive = Archive(f"sqlite:///{db}")
    archive.create_campaign("c", "antonyms", "ape", {})
    archive.engine.dispose()
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        blocked = agentopt("archive", "campaigns", "--db", str(db), env={"AGENTOPT_DB_TIMEOUT": "1"})
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert blocked.returncode == 2
    assert "is locked by another process" in blocked.stderr and len(blocked.stderr.strip().splitlines()) == 1
    assert cli("archive", "campaigns", "--db", str(db), "--json").returncode == 0


@pytest.mark.parametrize("url, message", [
    ("foo://nowhere", "not a usable database URL"),
    ("mysql://agentopt@127.0.0.1/x", "an archive is SQLite or PostgreSQL"),
    ("postgresql+psycopg://agentopt@127.0.0.1:1/x", "Connection refused"),
    ("postgresql+psycopg2://agentopt@127.0.0.1/x", "use a postgresql+psycopg:// URL"),
])
def test_bad_database_urls_are_one_line(url: str, message: str) -> None:
    for command in (["archive", "campaigns"], ["archive", "upgrade"]):
        result = cli(*command, "--db", url)
        assert result.returncode == 2 and message in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_opening_a_new_sqlite_archive_waits_while_another_process_converts_it(tmp_path: Path) -> None:
    """SQLite refuses a WAL switch at once, without its busy handler, while another connection holds
    the new file; the archive must wait that out like any other lock instead of calling it locked."""
    db = tmp_path / "a.db"
    holder = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")  # the new file, held the way a converting process holds it
    release = threading.Timer(0.5, holder.rollback)
    release.start()
    started = time.monotonic()
    try:
        archive = Archive(f"sqlite:///{db}")
    finally:
        release.join()
        holder.close()
    assert time.monotonic() - started >= 0.5, "it waited for the holder"
    assert schema.state(archive.engine).current == schema.head_revision()
    with archive.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    archive.engine.dispose()


def test_ctrl_c_while_a_new_archive_is_created_leaves_a_whole_archive(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A Ctrl-C that lands after SQLite created the file but before the schema is in used to leave a
    table-less file that every read command refused; the interrupt now waits the few milliseconds
    until the archive is whole.

    The test process gets the SIGINT handler every ``agentopt`` command installs (``stop_on_signals``):
    the archive hands a deferred Ctrl-C to whatever handler was there before, and pytest started as a
    background job of a script inherits SIGINT ignored, where the deferred Ctrl-C is rightly dropped
    and nothing raises ("DID NOT RAISE KeyboardInterrupt" in a suite launched that way)."""
    real_ensure = schema.ensure

    def interrupted(engine: Engine, where: str, create: bool) -> None:
        with engine.connect():
            pass  # the file exists from here on
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.2)  # the signal arrives here
        real_ensure(engine, where, create)

    monkeypatch.setattr(schema, "ensure", interrupted)
    db = tmp_path / "a.db"
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            Archive(f"sqlite:///{db}")
    finally:  # None: a handler set outside Python, which cannot be put back from here
        signal.signal(signal.SIGINT, signal.SIG_DFL if inherited is None else inherited)
    monkeypatch.setattr(schema, "ensure", real_ensure)
    assert checked_url(str(db)) == f"sqlite:///{db}", "read commands accept it"
    reopened = Archive(f"sqlite:///{db}", create=False)
    assert schema.state(reopened.engine).current == schema.head_revision()
    reopened.engine.dispose()
