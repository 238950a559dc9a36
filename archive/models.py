"""The archive's tables. Everything a campaign learns lands here, and nowhere else."""

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Index, Integer, MetaData, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Named constraints, so migrations can refer to them by the same name on every database.
NAMING = {"ix": "ix_%(column_0_label)s", "uq": "uq_%(table_name)s_%(column_0_name)s"}


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSON, datetime: DateTime(timezone=True)}


class Campaign(Base):
    __tablename__ = "campaigns"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    task: Mapped[str] = mapped_column(String(200), index=True)
    strategy: Mapped[str] = mapped_column(String(100))
    config: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(20), default="running")
    summary: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]  # refreshed by a live driver; stale means it died
    active_s: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")  # driven time, all runs
    sweep_id: Mapped[str | None] = mapped_column(String(32), index=True)  # the sweep it is a cell of, if any
    sweep_cell: Mapped[str | None] = mapped_column(String(32))  # which cell: a resumed sweep finds it by this


class Sweep(Base):
    """A sweep: the file it was run from (the matrix is expanded from it again on resume), and
    whether its driver is alive. Its campaigns point at it."""

    __tablename__ = "sweeps"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    config: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(20), default="running")
    summary: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]
    active_s: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")  # driven time, all runs


class Candidate(Base):
    """One distinct agent tried by a campaign.

    ``content_hash`` is unique per campaign (textual duplicates are never stored twice);
    ``functional_hash`` fingerprints behaviour on the probe inputs, and a candidate that behaves
    exactly like an earlier one points at it through ``twin_id`` and reuses its evaluation.
    """

    __tablename__ = "candidates"
    __table_args__ = (UniqueConstraint("campaign_id", "content_hash"),
                      Index("ix_candidates_campaign_functional", "campaign_id", "functional_hash"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    campaign_id: Mapped[str] = mapped_column(ForeignKey("campaigns.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    payload: Mapped[dict[str, Any]]
    content_hash: Mapped[str] = mapped_column(String(64))
    strategy: Mapped[str] = mapped_column(String(100))
    rationale: Mapped[str] = mapped_column(Text, default="")
    functional_hash: Mapped[str | None] = mapped_column(String(64))
    twin_id: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Lineage(Base):
    __tablename__ = "lineage"

    child_id: Mapped[int] = mapped_column(ForeignKey("candidates.id"), primary_key=True)
    parent_id: Mapped[int] = mapped_column(ForeignKey("candidates.id"), primary_key=True, index=True)


class Result(Base):
    """One example's outcome: a score, or an error with its reason, never both.

    ``feedback`` is the metric's explanation of its score, when the metric gives one (what a
    reflective strategy reads to learn why an output lost points).

    ``prompt_tokens`` / ``completion_tokens`` count what was paid for (cache hits cost nothing);
    ``footprint_tokens`` counts every token the agent's calls used, cached or not: its cost in
    deployment, which is what ``archive pareto`` trades against score.
    """

    __tablename__ = "results"
    __table_args__ = (UniqueConstraint("candidate_id", "split", "example_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    candidate_id: Mapped[int] = mapped_column(ForeignKey("candidates.id"))
    split: Mapped[str] = mapped_column(String(10))
    example_id: Mapped[str] = mapped_column(String(100))
    output: Mapped[str | None] = mapped_column(Text)
    score: Mapped[float | None] = mapped_column(Float)
    feedback: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    llm_calls: Mapped[int] = mapped_column(default=0)
    cache_hits: Mapped[int] = mapped_column(default=0)
    prompt_tokens: Mapped[int] = mapped_column(default=0)
    completion_tokens: Mapped[int] = mapped_column(default=0)
    footprint_tokens: Mapped[int] = mapped_column(default=0, server_default="0")
    latency_s: Mapped[float] = mapped_column(Float, default=0.0)
    worker: Mapped[str | None] = mapped_column(String(100))  # "node-id/pid" of the process that ran it
    trace: Mapped[list[Any] | None] = mapped_column(JSON(none_as_null=True))  # a graph agent's steps, in order
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Evaluation(Base):
    """A candidate's aggregate on one split, with a bootstrap 95% confidence interval."""

    __tablename__ = "evaluations"
    __table_args__ = (UniqueConstraint("candidate_id", "split"), Index("ix_evaluations_split_mean", "split", "mean"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    candidate_id: Mapped[int] = mapped_column(ForeignKey("candidates.id"))
    split: Mapped[str] = mapped_column(String(10))
    n: Mapped[int]
    n_errors: Mapped[int]
    mean: Mapped[float | None] = mapped_column(Float)
    ci_low: Mapped[float | None] = mapped_column(Float)
    ci_high: Mapped[float | None] = mapped_column(Float)
    tokens_mean: Mapped[float | None] = mapped_column(Float)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Note(Base):
    """Why the search moved: a language loss or gradient behind a candidate, or an edit that was
    rejected or rolled back and so has no candidate (``candidate_id`` is ``None``).

    ``key`` hashes the note's content, unique per campaign, so a resumed campaign replaying its
    strategy records each note once.
    """

    __tablename__ = "notes"
    __table_args__ = (UniqueConstraint("campaign_id", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    campaign_id: Mapped[str] = mapped_column(ForeignKey("campaigns.id"), index=True)
    candidate_id: Mapped[int | None] = mapped_column(ForeignKey("candidates.id"), index=True)
    kind: Mapped[str] = mapped_column(String(40))
    data: Mapped[dict[str, Any]]
    key: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class LLMCall(Base):
    """The LLM call cache: one row per distinct request, with the usage it cost when it was made
    and the campaign and role that paid for it (the budget ledger a resumed campaign starts from)."""

    __tablename__ = "llm_calls"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    model: Mapped[str] = mapped_column(String(200))
    request: Mapped[dict[str, Any]]
    text: Mapped[str] = mapped_column(Text)
    finish_reason: Mapped[str] = mapped_column(String(20))
    prompt_tokens: Mapped[int]
    completion_tokens: Mapped[int]
    latency_s: Mapped[float] = mapped_column(Float)
    cached_tokens: Mapped[int] = mapped_column(default=0, server_default="0")  # served from the endpoint's prompt cache
    prompt_saved_s: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    campaign_id: Mapped[str | None] = mapped_column(String(32), index=True)
    role: Mapped[str | None] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
