"""The Archive: the single place campaigns write to and users query.

Writes are small transactions committed at once (one example's result, one cache entry), so a
crash loses at most the call in flight. Inserts are idempotent on their natural keys, which is
what makes re-runs and concurrent writers safe.
"""

import hashlib
import os
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, create_engine, event, func, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from agentopt.agents.base import Agent
from agentopt.agents.errors import ArchiveError
from agentopt.archive.models import Base, Campaign, Candidate, Evaluation, Lineage, Result, utcnow
from agentopt.archive.stats import bootstrap_ci

DEFAULT_DB = "agentopt.db"


def database_url(db: str | None = None) -> str:
    """``--db`` wins, then ``AGENTOPT_DB``, then ``./agentopt.db``; a bare path means SQLite."""
    value = db or os.environ.get("AGENTOPT_DB") or DEFAULT_DB
    return value if "://" in value else f"sqlite:///{value}"


def content_hash(agent: Agent) -> str:
    return hashlib.sha256(f"{agent.kind}\n{agent.canonical()}".encode()).hexdigest()


@dataclass(frozen=True)
class EvalSummary:
    candidate_id: int
    split: str
    n: int
    n_errors: int
    mean: float | None
    ci_low: float | None
    ci_high: float | None


@dataclass(frozen=True)
class ExampleOutcome:
    """What a worker reports for one example."""

    example_id: str
    output: str | None
    score: float | None
    error: str | None
    usage: dict[str, float]


def make_engine(url: str) -> Engine:
    engine = create_engine(url, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(conn: Any, _record: Any) -> None:
            cursor = conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=60000")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

    return engine


class Archive:
    def __init__(self, url: str, create: bool = True) -> None:
        self.url = url
        try:
            self.engine = make_engine(url)
            if create:
                Base.metadata.create_all(self.engine)
        except SQLAlchemyError as exc:
            raise ArchiveError(f"cannot open archive {url}: {str(exc).splitlines()[0]}") from None
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session

    # --- campaigns ---------------------------------------------------------------------------
    def create_campaign(self, name: str, task: str, strategy: str, config: dict[str, Any]) -> str:
        campaign_id = uuid.uuid4().hex[:12]
        with self.session() as s:
            s.add(Campaign(id=campaign_id, name=name, task=task, strategy=strategy, config=config))
        return campaign_id

    def finish_campaign(self, campaign_id: str, status: str, summary: dict[str, Any]) -> None:
        with self.session() as s:
            campaign = s.get_one(Campaign, campaign_id)
            campaign.status, campaign.summary, campaign.finished_at = status, summary, utcnow()

    def campaign(self, campaign_id: str) -> Campaign:
        with self.session() as s:
            found = s.get(Campaign, campaign_id)
        if found is None:
            raise ArchiveError(f"no campaign {campaign_id!r} in {self.url}")
        return found

    # --- candidates --------------------------------------------------------------------------
    def add_candidate(self, campaign_id: str, agent: Agent, strategy: str, parents: Sequence[int] = (),
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

    def parents(self, candidate_id: int) -> list[int]:
        with self.session() as s:
            return list(s.scalars(select(Lineage.parent_id).where(Lineage.child_id == candidate_id)))

    # --- results and evaluations -------------------------------------------------------------
    def scored_examples(self, candidate_id: int, split: str) -> set[str]:
        """Examples already finished for this candidate, errors excluded so they are retried."""
        with self.session() as s:
            return set(s.scalars(select(Result.example_id).where(
                Result.candidate_id == candidate_id, Result.split == split, Result.error.is_(None))))

    def add_result(self, candidate_id: int, split: str, outcome: ExampleOutcome) -> None:
        usage = {k: outcome.usage.get(k, 0) for k in
                 ("llm_calls", "cache_hits", "prompt_tokens", "completion_tokens", "latency_s")}
        with self.session() as s:
            row = s.scalar(select(Result).where(Result.candidate_id == candidate_id, Result.split == split,
                                                Result.example_id == outcome.example_id))
            if row is None:
                s.add(Result(candidate_id=candidate_id, split=split, example_id=outcome.example_id,
                             output=outcome.output, score=outcome.score, error=outcome.error, **usage))
            elif row.error is not None:
                row.output, row.score, row.error, row.created_at = outcome.output, outcome.score, outcome.error, utcnow()
                for key, value in usage.items():
                    setattr(row, key, value)

    def update_evaluation(self, candidate_id: int, split: str, example_ids: Iterable[str] | None = None) -> EvalSummary:
        """Recompute the split's aggregate from its result rows (optionally only ``example_ids``)."""
        with self.session() as s:
            query = select(Result.score, Result.error).where(Result.candidate_id == candidate_id, Result.split == split)
            if example_ids is not None:
                query = query.where(Result.example_id.in_(list(example_ids)))
            rows = s.execute(query).all()
            scores = [r.score for r in rows if r.error is None and r.score is not None]
            mean, low, high = bootstrap_ci(scores) if scores else (None, None, None)
            summary = EvalSummary(candidate_id, split, len(scores), sum(r.error is not None for r in rows), mean, low, high)
            if example_ids is not None:
                return summary
            row = s.scalar(select(Evaluation).where(Evaluation.candidate_id == candidate_id, Evaluation.split == split))
            if row is None:
                row = Evaluation(candidate_id=candidate_id, split=split, n=0, n_errors=0)
                s.add(row)
            row.n, row.n_errors, row.mean, row.ci_low, row.ci_high = (
                summary.n, summary.n_errors, summary.mean, summary.ci_low, summary.ci_high)
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
