"""The Archive: the single place campaigns write to and users query.

Writes are small transactions committed at once (one example's result, one cache entry), so a
crash loses at most the call in flight. Inserts are idempotent on their natural keys, which is
what makes re-runs and concurrent writers safe.
"""

import hashlib
import json
import os
import signal
import threading
import uuid
from pathlib import Path
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import FrameType
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, make_url, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import ArgumentError, IntegrityError, NoSuchModuleError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from agentopt.archive.errors import ArchiveError
from agentopt.agents.runtime.sandbox import register_secret
from agentopt.archive import schema
from agentopt.archive.engine import lock_timeout_s
from agentopt.archive.engine import make_engine as make_engine  # where callers have always found it
from agentopt.archive.lifecycle import Lease
from agentopt.archive.models import (Base, Campaign, Candidate, Evaluation, Lineage, LLMCall, Note, Result, Sweep,
                                     utcnow)
# The value records live in records; named here too (``as``: an explicit re-export), since callers have
# always imported them from the store.
from agentopt.archive.records import EvalSummary as EvalSummary
from agentopt.archive.records import ExampleOutcome as ExampleOutcome
from agentopt.archive.records import Paid as Paid
from agentopt.archive.records import SweepCampaign as SweepCampaign

if TYPE_CHECKING:
    from agentopt.agents.base import Agent

DEFAULT_DB = "agentopt.db"
PLANNED_TABLES = ("campaigns", "candidates", "evaluations", "lineage")  # what archive queries filter and rank
USAGE_COLUMNS = ("llm_calls", "cache_hits", "prompt_tokens", "completion_tokens", "footprint_tokens", "latency_s")


def database_url(db: str | None = None) -> str:
    """``--db`` wins, then ``AGENTOPT_DB``, then ``./agentopt.db``; a bare path means SQLite."""
    value = db or os.environ.get("AGENTOPT_DB") or DEFAULT_DB
    return value if "://" in value else f"sqlite:///{value}"


def content_hash(agent: "Agent") -> str:
    return hashlib.sha256(f"{agent.kind}\n{agent.canonical()}".encode()).hexdigest()


def _password(url: str) -> str | None:
    try:
        return make_url(url).password
    except ArgumentError:
        return None


def display_url(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def describe_db_error(exc: Exception, url: str) -> str:
    """One line a user can act on, for any failure to open or use an archive."""
    where = display_url(url)
    if isinstance(exc, ModuleNotFoundError):
        hint = "use a postgresql+psycopg:// URL" if exc.name == "psycopg2" else "pip install 'agentopt[postgres]'"
        return f"archive {where} needs the {exc.name} driver: {hint}"
    if isinstance(exc, (ArgumentError, NoSuchModuleError)):
        return (f"not a usable database URL: {where!r} (an archive is SQLite or PostgreSQL: use a SQLite path, "
                "sqlite:///PATH or postgresql+psycopg://USER@HOST:PORT/DB)")
    detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    detail_line = detail[0] if detail else type(exc).__name__
    if "database is locked" in detail_line:
        return (f"archive {where} is locked by another process (waited {lock_timeout_s():.0f}s); "
                "try again when it is done, or raise AGENTOPT_DB_TIMEOUT")
    return f"cannot use archive {where}: {detail_line}"


def _new_sqlite_file(url: str) -> bool:
    parsed = make_url(url)
    path = Path(parsed.database or "")
    return parsed.get_backend_name() == "sqlite" and (not path.is_file() or path.stat().st_size == 0)


@contextmanager
def _ctrl_c_deferred(defer: bool) -> Iterator[None]:
    """With ``defer``, a Ctrl-C in the block takes effect when it ends: a new SQLite archive is created
    whole (a few tens of milliseconds) rather than left as a table-less file that read commands refuse.
    Only the main thread receives signals, so elsewhere there is nothing to defer."""
    if not defer or threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[FrameType | None] = []
    previous = signal.signal(signal.SIGINT, lambda _signum, frame: caught.append(frame))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught and callable(previous):
            previous(signal.SIGINT, caught[0])
        elif caught and previous == signal.SIG_DFL:
            os.kill(os.getpid(), signal.SIGINT)


@contextmanager
def database_errors(url: str) -> Iterator[None]:
    """Any failure to reach or use the database becomes one :class:`ArchiveError` line."""
    try:
        yield
    except (SQLAlchemyError, ModuleNotFoundError) as exc:
        raise ArchiveError(describe_db_error(exc, url)) from None


def upgrade_archive(url: str) -> tuple[str | None, str]:
    """``agentopt archive upgrade``: migrate to this agentopt's schema; returns (from, to) revisions."""
    with database_errors(url):
        return schema.upgrade(make_engine(url), display_url(url))


class Archive:
    """An archive at ``url``, checked to be at this agentopt's schema revision (see ``schema.ensure``)."""

    def __init__(self, url: str, create: bool = True, read_only: bool = False) -> None:
        self.url = url
        if password := _password(url):
            register_secret(password)  # a sandboxed agent's output never shows it, however it got it
        with database_errors(url):
            self.engine = make_engine(url, read_only)
            if read_only:
                schema.check(self.engine, display_url(url))
            else:
                with _ctrl_c_deferred(_new_sqlite_file(url) and create):
                    schema.ensure(self.engine, display_url(url), create)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._campaigns, self._sweeps = Lease(self.session, Campaign), Lease(self.session, Sweep)

    @contextmanager
    def session(self) -> Iterator[Session]:
        try:
            with self._sessions.begin() as session:
                yield session
        except OperationalError as exc:
            raise ArchiveError(describe_db_error(exc, self.url)) from None

    # --- campaigns ---------------------------------------------------------------------------
    def create_campaign(self, name: str, task: str, strategy: str, config: dict[str, Any],
                        sweep: tuple[str, str] | None = None) -> str:
        """A new campaign; ``sweep`` is the (sweep id, cell key) it runs as a cell of."""
        campaign_id = uuid.uuid4().hex[:12]
        sweep_id, cell = sweep or (None, None)
        with self.session() as s:
            s.add(Campaign(id=campaign_id, name=name, task=task, strategy=strategy, config=config,
                           heartbeat_at=utcnow(), sweep_id=sweep_id, sweep_cell=cell))
        return campaign_id

    # --- sweeps ------------------------------------------------------------------------------
    def create_sweep(self, name: str, config: dict[str, Any]) -> str:
        sweep_id = "s" + uuid.uuid4().hex[:11]
        with self.session() as s:
            s.add(Sweep(id=sweep_id, name=name, config=config, heartbeat_at=utcnow()))
        return sweep_id

    def find_sweep(self, sweep_id: str) -> Sweep | None:
        with self.session() as s:
            row = s.get(Sweep, sweep_id)
            if row is not None:
                s.expunge(row)
            return row

    def sweep(self, sweep_id: str) -> Sweep:
        row = self.find_sweep(sweep_id)
        if row is None:
            raise ArchiveError(f"no sweep {sweep_id!r} in this archive (see `agentopt archive sweeps`)")
        return row

    def sweeps(self) -> list[Sweep]:
        with self.session() as s:
            rows = list(s.scalars(select(Sweep).order_by(Sweep.created_at.desc())))
            s.expunge_all()
            return rows

    def claim_sweep(self, sweep_id: str) -> None:
        """This process drives the sweep (again, on a resume)."""
        self._sweeps.claim(sweep_id)

    def beat_sweep(self, sweep_id: str, active_s: float) -> None:
        """The sweep's driver is alive and has driven it ``active_s`` more seconds."""
        self._sweeps.beat(sweep_id, active_s)

    def finish_sweep(self, sweep_id: str, status: str, summary: dict[str, Any]) -> None:
        self._sweeps.finish(sweep_id, status, summary)

    def sweep_campaigns(self, sweep_id: str) -> list[SweepCampaign]:
        """The sweep's campaigns, one per cell that has started (the newest, should a cell have two)."""
        with self.session() as s:
            rows = s.execute(select(Campaign.sweep_cell, Campaign.id, Campaign.status, Campaign.heartbeat_at)
                             .where(Campaign.sweep_id == sweep_id).order_by(Campaign.created_at)).all()
        # A campaign gets its cell with its sweep id (create_campaign), so a sweep's campaigns all have one.
        return list({cell: SweepCampaign(cell, cid, status, beat) for cell, cid, status, beat in rows
                     if cell is not None}.values())

    def sweep_campaign(self, sweep_id: str, cell: str) -> str | None:
        found = [c.id for c in self.sweep_campaigns(sweep_id) if c.cell == cell]
        return found[0] if found else None

    def claim(self, campaign_id: str) -> None:
        """A resumed campaign is running again, driven by this process."""
        self._campaigns.claim(campaign_id)

    def beat(self, campaign_id: str, active_s: float) -> None:
        """The driver is alive and has worked ``active_s`` more seconds on the campaign."""
        self._campaigns.beat(campaign_id, active_s)

    def spend(self, campaign_id: str) -> dict[str, Paid]:
        """What the campaign paid for, per role: its budget ledger."""
        total = (func.coalesce(func.sum(c), 0) for c in (LLMCall.prompt_tokens, LLMCall.completion_tokens,
                                                          LLMCall.cached_tokens, LLMCall.prompt_saved_s))
        with self.session() as s:
            rows = s.execute(select(LLMCall.role, func.count(), *total)
                             .where(LLMCall.campaign_id == campaign_id).group_by(LLMCall.role))
            return {str(r[0]): Paid(int(r[1]), int(r[2]), int(r[3]), int(r[4]), float(r[5])) for r in rows}

    def finish_campaign(self, campaign_id: str, status: str, summary: dict[str, Any]) -> None:
        self._campaigns.finish(campaign_id, status, summary)
        self.optimize()

    def optimize(self) -> None:
        """Refresh the query planner's statistics, so filtered queries start from the selective index.

        Without them SQLite scans evaluations in score order even when a filter keeps one row in a
        thousand. Sampled statistics (``analysis_limit``) misjudge the split column and keep the slow
        plan, so each table is analysed in full (experiments/bench_archive.py times it). Only the tables those queries
        plan over, one at a time: SQLite holds the write lock through an ``ANALYZE``, and the big
        ``results`` and ``llm_calls`` tables (tens of rows per candidate, read only through index
        lookups that plan the same without statistics) would keep other campaigns waiting for nothing.
        """
        for table in PLANNED_TABLES:
            with self.engine.begin() as conn:
                conn.exec_driver_sql(f"ANALYZE {table}")

    def find_campaign(self, campaign_id: str) -> Campaign | None:
        with self.session() as s:
            return s.get(Campaign, campaign_id)

    def campaign(self, campaign_id: str) -> Campaign:
        found = self.find_campaign(campaign_id)
        if found is None:
            raise ArchiveError(f"no campaign {campaign_id!r} in {self.url}")
        return found

    # --- candidates --------------------------------------------------------------------------
    def add_candidate(self, campaign_id: str, agent: "Agent", strategy: str, parents: Sequence[int] = (),
                      rationale: str = "") -> tuple[int, bool]:
        """Store ``agent`` unless its content hash is already in the campaign.

        Returns the candidate id and whether it is new; a duplicate returns its twin's id.
        """
        digest = content_hash(agent)
        existing = self._candidate_by_hash(campaign_id, digest)
        if existing is not None:
            return existing, False
        try:
            with self.session() as s:
                row = Candidate(campaign_id=campaign_id, kind=agent.kind, payload=agent.payload(),
                                content_hash=digest, strategy=strategy, rationale=rationale)
                s.add(row)
                s.flush()
                s.add_all(Lineage(child_id=row.id, parent_id=p) for p in dict.fromkeys(parents))
                return row.id, True
        except IntegrityError:
            twin = self._candidate_by_hash(campaign_id, digest)
            if twin is None:
                raise
            return twin, False

    def _candidate_by_hash(self, campaign_id: str, digest: str) -> int | None:
        with self.session() as s:
            return s.scalar(select(Candidate.id).where(Candidate.campaign_id == campaign_id,
                                                       Candidate.content_hash == digest))

    def candidate(self, candidate_id: int) -> Candidate:
        with self.session() as s:
            found = s.get(Candidate, candidate_id)
        if found is None:
            raise ArchiveError(f"no candidate {candidate_id} in {self.url}")
        return found

    def record_fingerprint(self, candidate_id: int, digest: str | None) -> int | None:
        """Store a candidate's functional hash; returns the earliest candidate of the campaign that
        has the same one and is not itself a twin (``None``: no match, or no fingerprint)."""
        if digest is None:
            return None
        with self.session() as s:
            row = s.get_one(Candidate, candidate_id)
            row.functional_hash = digest
            return s.scalar(select(func.min(Candidate.id)).where(
                Candidate.campaign_id == row.campaign_id, Candidate.functional_hash == digest,
                Candidate.twin_id.is_(None), Candidate.id != candidate_id))

    def set_twin(self, candidate_id: int, twin_id: int) -> None:
        with self.session() as s:
            s.get_one(Candidate, candidate_id).twin_id = twin_id

    def parents(self, candidate_id: int) -> list[int]:
        with self.session() as s:
            return list(s.scalars(select(Lineage.parent_id).where(Lineage.child_id == candidate_id)))

    # --- results and evaluations -------------------------------------------------------------
    def scored_examples(self, candidate_id: int, split: str) -> set[str]:
        """Examples already finished for this candidate, errors excluded so they are retried."""
        with self.session() as s:
            return set(s.scalars(select(Result.example_id).where(
                Result.candidate_id == candidate_id, Result.split == split, Result.error.is_(None))))

    def insert(self, table: type[Base]) -> Any:
        """An INSERT that supports ON CONFLICT on this database (SQLite and PostgreSQL share the API)."""
        return (pg_insert if self.engine.dialect.name == "postgresql" else sqlite_insert)(table)

    def bulk_insert(self, rows: Mapping[str, Sequence[dict[str, Any]]]) -> None:
        """Insert rows as given, table name -> rows, in one transaction and in that order: how a
        benchmark builds an archive of a million candidates without running a campaign."""
        with self.engine.begin() as conn:
            for table, values in rows.items():
                if values:
                    conn.execute(Base.metadata.tables[table].insert(), list(values))

    def outputs(self, candidate_id: int, split: str, example_ids: Sequence[str]) -> dict[str, str | None]:
        """Stored outputs for ``example_ids``; an example that failed maps to ``None``."""
        with self.session() as s:
            rows = s.execute(select(Result.example_id, Result.output, Result.error).where(
                Result.candidate_id == candidate_id, Result.split == split, Result.example_id.in_(list(example_ids))))
            return {r.example_id: None if r.error is not None else r.output for r in rows}

    def calls_for(self, candidate_id: int, split: str, example_id: str) -> int:
        """LLM calls (paid or cached) one stored example took: what re-running it would cost."""
        with self.session() as s:
            calls = s.scalar(select(Result.llm_calls + Result.cache_hits).where(
                Result.candidate_id == candidate_id, Result.split == split, Result.example_id == example_id))
        return max(calls or 0, 1)

    def add_result(self, candidate_id: int, split: str, outcome: ExampleOutcome) -> None:
        """Store one example's outcome; idempotent, and a stored score is never overwritten.

        A single upsert, so concurrent writers of the same example cannot collide: an existing
        error is replaced by the new outcome (a retry), an existing score is kept.
        """
        usage = {k: outcome.usage.get(k, 0) for k in USAGE_COLUMNS}
        values = {"output": outcome.output, "score": outcome.score, "feedback": outcome.feedback,
                  "error": outcome.error, **usage, "worker": outcome.worker, "trace": outcome.trace,
                  "created_at": utcnow()}
        statement = self.insert(Result).values(candidate_id=candidate_id, split=split, example_id=outcome.example_id,
                                               **values)
        statement = statement.on_conflict_do_update(index_elements=["candidate_id", "split", "example_id"],
                                                    set_=values, where=Result.error.is_not(None))
        with self.session() as s:
            s.execute(statement)

    def update_evaluation(self, candidate_id: int, split: str, example_ids: Iterable[str] | None = None) -> EvalSummary:
        """Recompute the split's aggregate from its result rows (optionally only ``example_ids``)."""
        from agentopt.archive.stats import bootstrap_ci  # numpy: loaded by a process that scores, not one that reads

        with self.session() as s:
            query = select(Result.score, Result.error, Result.footprint_tokens).where(Result.candidate_id == candidate_id, Result.split == split)
            if example_ids is not None:
                query = query.where(Result.example_id.in_(list(example_ids)))
            rows = s.execute(query).all()
            scores = [r.score for r in rows if r.error is None and r.score is not None]
            mean, low, high = bootstrap_ci(scores) if scores else (None, None, None)
            footprints = [r.footprint_tokens for r in rows if r.error is None]
            tokens = sum(footprints) / len(footprints) if footprints else None
            summary = EvalSummary(candidate_id, split, len(scores), sum(r.error is not None for r in rows), mean, low, high)
            if example_ids is not None:
                return summary
            row = s.scalar(select(Evaluation).where(Evaluation.candidate_id == candidate_id, Evaluation.split == split))
            if row is None:
                row = Evaluation(candidate_id=candidate_id, split=split, n=0, n_errors=0)
                s.add(row)
            row.n, row.n_errors, row.mean, row.ci_low, row.ci_high, row.tokens_mean = (
                summary.n, summary.n_errors, summary.mean, summary.ci_low, summary.ci_high, tokens)
            return summary

    def evaluations(self, candidate_id: int) -> dict[str, EvalSummary]:
        with self.session() as s:
            rows = s.scalars(select(Evaluation).where(Evaluation.candidate_id == candidate_id))
            return {r.split: EvalSummary(r.candidate_id, r.split, r.n, r.n_errors, r.mean, r.ci_low, r.ci_high)
                    for r in rows}

    def results(self, candidate_id: int, split: str | None = None) -> list[Result]:
        with self.session() as s:
            query = select(Result).where(Result.candidate_id == candidate_id)
            if split:
                query = query.where(Result.split == split)
            return list(s.scalars(query.order_by(Result.id)))

    def usage_totals(self, campaign_id: str) -> dict[str, float]:
        with self.session() as s:
            row = s.execute(
                select(func.count(Result.id), func.coalesce(func.sum(Result.llm_calls), 0),
                       func.coalesce(func.sum(Result.cache_hits), 0),
                       func.coalesce(func.sum(Result.prompt_tokens + Result.completion_tokens), 0))
                .join(Candidate, Candidate.id == Result.candidate_id).where(Candidate.campaign_id == campaign_id)
            ).one()
        return {"results": row[0], "llm_calls": row[1], "cache_hits": row[2], "tokens": row[3]}

    # --- notes -------------------------------------------------------------------------------
    def add_note(self, campaign_id: str, kind: str, data: dict[str, Any], candidate_id: int | None = None) -> None:
        """Store a note (``candidate_id``: the candidate it explains; ``None``: an edit that made none).

        Idempotent on the note's content: a resumed campaign replays its strategy, which records
        the same notes again, and each must be stored once.
        """
        key = hashlib.sha256(json.dumps([candidate_id, kind, data], sort_keys=True).encode()).hexdigest()
        statement = (self.insert(Note).values(campaign_id=campaign_id, candidate_id=candidate_id, kind=kind, data=data,
                                              key=key)
                     .on_conflict_do_nothing(index_elements=["campaign_id", "key"]))
        with self.session() as s:
            s.execute(statement)

    def notes(self, campaign_id: str | None = None, candidate_id: int | None = None,
              kind: str | None = None) -> list[Note]:
        """Notes in the order they were recorded; ``None`` means no restriction."""
        query = select(Note)
        for column, value in ((Note.campaign_id, campaign_id), (Note.candidate_id, candidate_id), (Note.kind, kind)):
            if value is not None:
                query = query.where(column == value)
        with self.session() as s:
            return list(s.scalars(query.order_by(Note.id)))
