"""Paged and bounded reads for browsing an archive (the dashboard and its static report), and the
stored rows that reports and experiment scripts read.

Callers import these from :mod:`agentopt.archive.queries`, the one module of archive reads; they are
kept here so that each module stays under a few hundred lines. The dashboard's queries are answered by
the database's indexes and return at most a page or a cap of rows, so a page of a million-candidate
archive costs what a page of a small one does.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import aliased

from agentopt.agents.runtime.errors import AgentoptError
from agentopt.agents.kinds import agent_from_payload, label
from agentopt.archive.models import Campaign, Candidate, Evaluation, LLMCall, Result
from agentopt.archive.records import Record
from agentopt.archive.store import Archive

SortKey = Literal["id", "val", "train", "test", "tokens"]
SORT_KEYS: tuple[SortKey, ...] = ("id", "val", "train", "test", "tokens")
POINTS_CAP = 20_000  # scored candidates drawn per campaign; beyond this the plots show the newest
RESULT_TEXTS = ("output", "feedback", "error", "trace")  # the texts a page clips and serves whole on request


@dataclass(frozen=True)
class CandidateRow(Record):
    """One line of a campaign's candidate table."""

    id: int
    kind: str
    strategy: str
    label: str
    twin_id: int | None
    created_at: datetime
    val: float | None
    val_ci: tuple[float | None, float | None]
    val_n: int | None
    train: float | None
    train_n: int | None
    test: float | None
    tokens: float | None


@dataclass(frozen=True)
class ScorePoint(Record):
    """A candidate's score on one split when it was last updated: a racing estimate on train, a
    validation score, or the final test score."""

    candidate_id: int
    strategy: str
    split: str
    mean: float
    n: int
    tokens: float | None
    at: datetime


def payload_problem(payload: Any) -> str | None:
    """What is wrong with a stored payload, or None when its kind reads it as an agent. Readers show a
    payload through its kind (label, description, drawing) only once the kind accepts it: a row written
    by a bug or by hand (a list, a graph with a cycle) must cost its own line, not the whole page."""
    if not isinstance(payload, dict):
        return f"its payload is a JSON {json_type(payload)}, not an object"
    try:
        agent_from_payload(payload)
    except ValidationError as exc:
        reason = str(exc.errors()[0]["msg"]).removeprefix("Value error, ")
    except AgentoptError as exc:
        reason = str(exc)
    else:
        return None
    return f"its payload is not a valid {payload.get('kind', 'prompt')} agent: {' '.join(reason.split())[:300]}"


def json_type(value: Any) -> str:
    """The JSON name of a stored value's type, as an error message about it should say it."""
    names = {list: "array", dict: "object", str: "string", bool: "boolean", int: "number", float: "number"}
    return names.get(type(value), "null" if value is None else type(value).__name__)


def shown_label(payload: Any) -> str:
    """The kind's one-line label, or what is wrong with a payload its kind cannot read."""
    problem = payload_problem(payload)
    return label(payload) if problem is None else f"(damaged: {problem})"


def candidate_page(archive: Archive, campaign_id: str, sort: SortKey = "id", descending: bool = False,
                   strategy: str | None = None, kind: str | None = None, offset: int = 0,
                   limit: int = 50) -> tuple[list[CandidateRow], int]:
    """One page of a campaign's candidates with their scores per split, and how many match."""
    val, train, test = (aliased(Evaluation, name=split) for split in ("val", "train", "test"))
    where = [Candidate.campaign_id == campaign_id]
    if strategy:
        where.append(Candidate.strategy == strategy)
    if kind:
        where.append(Candidate.kind == kind)
    column = {"id": Candidate.id, "val": val.mean, "train": train.mean, "test": test.mean,
              "tokens": val.tokens_mean}[sort]
    order = [column.desc().nulls_last() if descending else column.asc().nulls_last(), Candidate.id]
    query = (select(Candidate, val.mean, val.ci_low, val.ci_high, val.n, train.mean, train.n, test.mean,
                    val.tokens_mean)
             .outerjoin(val, (val.candidate_id == Candidate.id) & (val.split == "val"))
             .outerjoin(train, (train.candidate_id == Candidate.id) & (train.split == "train"))
             .outerjoin(test, (test.candidate_id == Candidate.id) & (test.split == "test"))
             .where(*where).order_by(*order).offset(offset).limit(limit))
    with archive.session() as s:
        total = s.execute(select(func.count(Candidate.id)).where(*where)).scalar_one()
        rows = s.execute(query).all()
    return [CandidateRow(c.id, c.kind, c.strategy, shown_label(c.payload), c.twin_id, c.created_at, v, (lo, hi), vn,
                         tr, trn, te, tok) for c, v, lo, hi, vn, tr, trn, te, tok in rows], total


def score_points(archive: Archive, campaign_id: str, cap: int = POINTS_CAP) -> list[ScorePoint]:
    """Every score a campaign's candidates got, per split, oldest first (the newest ``cap``)."""
    query = (select(Candidate.id, Candidate.strategy, Evaluation.split, Evaluation.mean, Evaluation.n,
                    Evaluation.tokens_mean, Evaluation.updated_at)
             .join(Evaluation, Evaluation.candidate_id == Candidate.id)
             .where(Candidate.campaign_id == campaign_id, Evaluation.mean.is_not(None))
             .order_by(Evaluation.updated_at.desc()).limit(cap))
    with archive.session() as s:
        rows = s.execute(query).all()
    return [ScorePoint(cid, strategy, split, mean, n, tokens, at)  # every mean is set: the query selects those
            for cid, strategy, split, mean, n, tokens, at in reversed(rows) if mean is not None]


def proposal_times(archive: Archive, campaign_id: str, cap: int = POINTS_CAP) -> list[datetime]:
    """When each candidate was proposed, oldest first (the newest ``cap``)."""
    with archive.session() as s:
        times = s.scalars(select(Candidate.created_at).where(Candidate.campaign_id == campaign_id)
                          .order_by(Candidate.created_at.desc()).limit(cap)).all()
    return list(reversed(times))


def paid_calls(archive: Archive, campaign_id: str) -> list[tuple[datetime, str | None, int, int, int]]:
    """The campaign's ledger in time order: when, role, prompt, completion and prompt-cached tokens."""
    with archive.session() as s:
        rows = s.execute(select(LLMCall.created_at, LLMCall.role, LLMCall.prompt_tokens, LLMCall.completion_tokens,
                                LLMCall.cached_tokens).where(LLMCall.campaign_id == campaign_id)
                         .order_by(LLMCall.created_at)).all()
    return [(at, role, prompt, completion, cached) for at, role, prompt, completion, cached in rows]


def dedup_counts(archive: Archive, campaign_id: str) -> dict[str, int]:
    """Candidates stored, those merged into a functional twin, and distinct behaviours fingerprinted."""
    with archive.session() as s:
        stored, twins, fingerprinted, behaviours = s.execute(
            select(func.count(Candidate.id), func.count(Candidate.twin_id), func.count(Candidate.functional_hash),
                   func.count(func.distinct(Candidate.functional_hash)))
            .where(Candidate.campaign_id == campaign_id)).one()
    return {"candidates": stored, "functional_twins": twins, "fingerprinted": fingerprinted,
            "distinct_behaviours": behaviours}


def twins_of(archive: Archive, campaign_id: str, candidate_id: int, limit: int = 50) -> list[int]:
    """Candidates merged into this one because they behaved the same on the probes (twins are found
    within a campaign, whose index the query uses)."""
    with archive.session() as s:
        return list(s.scalars(select(Candidate.id).where(Candidate.campaign_id == campaign_id,
                                                          Candidate.twin_id == candidate_id)
                              .order_by(Candidate.id).limit(limit)))


def result_text(archive: Archive, candidate_id: int, split: str, example_id: str, field: str) -> Any:
    """One stored text of one example's result (``field``: one of ``RESULT_TEXTS``), found by its
    unique key; None when there is no such result or it has no such text."""
    column = {"output": Result.output, "feedback": Result.feedback, "error": Result.error, "trace": Result.trace}[field]
    with archive.session() as s:
        return s.scalar(select(column).where(Result.candidate_id == candidate_id, Result.split == split,
                                             Result.example_id == example_id))


def strategies(archive: Archive) -> list[str]:
    """The strategy names campaigns ran with (the campaign list's filter)."""
    with archive.session() as s:
        return list(s.scalars(select(Campaign.strategy).distinct().order_by(Campaign.strategy)))


def tasks(archive: Archive) -> list[str]:
    with archive.session() as s:
        return list(s.scalars(select(Campaign.task).distinct().order_by(Campaign.task)))


def candidate_exists(archive: Archive, candidate_id: int) -> bool:
    """Whether the archive holds the candidate: one primary-key lookup, no row loaded."""
    with archive.session() as s:
        return s.scalar(select(Candidate.id).where(Candidate.id == candidate_id)) is not None


def stored_campaigns(archive: Archive, ids: Iterable[str] | None = None, strategy: str | None = None,
                     status: str | None = None) -> list[Campaign]:
    """Campaigns as stored (config, summary, heartbeat, driven time), oldest first: those of ``ids``
    (all when ``None``), run with ``strategy``, in ``status``."""
    query = select(Campaign).order_by(Campaign.created_at, Campaign.id)
    if ids is not None:
        query = query.where(Campaign.id.in_(list(ids)))
    if strategy is not None:
        query = query.where(Campaign.strategy == strategy)
    if status is not None:
        query = query.where(Campaign.status == status)
    with archive.session() as s:
        return list(s.scalars(query))


def campaign_candidates(archive: Archive, campaign_id: str, kind: str | None = None, twins: bool = False,
                        evaluated_on: str | None = None) -> list[Candidate]:
    """A campaign's candidates in the order they were stored: of ``kind``; with ``twins``, only those
    merged into a functional twin; with ``evaluated_on``, only those with an evaluation on that split."""
    query = select(Candidate).where(Candidate.campaign_id == campaign_id).order_by(Candidate.id)
    if kind is not None:
        query = query.where(Candidate.kind == kind)
    if twins:
        query = query.where(Candidate.twin_id.is_not(None))
    if evaluated_on is not None:
        query = query.join(Evaluation, Evaluation.candidate_id == Candidate.id).where(Evaluation.split == evaluated_on)
    with archive.session() as s:
        return list(s.scalars(query))


@dataclass(frozen=True)
class ExampleResult(Record):
    """One example's score or error, with the candidate it belongs to."""

    candidate_id: int
    split: str
    example_id: str
    score: float | None
    error: str | None


def campaign_results(archive: Archive, campaign_id: str, splits: Sequence[str]) -> list[ExampleResult]:
    """Every example result of the campaign's candidates on ``splits``, in the order they were stored
    (each is one task-model query, so the list is also the campaign's spend of queries, in time)."""
    query = (select(Result.candidate_id, Result.split, Result.example_id, Result.score, Result.error)
             .join(Candidate, Candidate.id == Result.candidate_id)
             .where(Candidate.campaign_id == campaign_id, Result.split.in_(list(splits))).order_by(Result.id))
    with archive.session() as s:
        return [ExampleResult(*row) for row in s.execute(query).tuples()]
