"""Read-side queries behind ``agentopt archive``: ranking and a candidate's full record."""

from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import select

from agentopt.archive.models import Campaign, Candidate, Evaluation
from agentopt.archive.store import Archive


@dataclass(frozen=True)
class Ranked:
    candidate_id: int
    campaign_id: str
    task: str
    strategy: str
    split: str
    mean: float
    ci_low: float
    ci_high: float
    n: int
    n_errors: int
    payload: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def top(archive: Archive, k: int = 10, campaign_id: str | None = None, split: str = "val") -> list[Ranked]:
    """Best candidates on ``split`` by mean score, then by number of examples scored."""
    query = (
        select(Evaluation, Candidate, Campaign.task)
        .join(Candidate, Candidate.id == Evaluation.candidate_id)
        .join(Campaign, Campaign.id == Candidate.campaign_id)
        .where(Evaluation.split == split, Evaluation.mean.is_not(None))
        .order_by(Evaluation.mean.desc(), Evaluation.n.desc(), Candidate.id)
        .limit(k)
    )
    if campaign_id:
        query = query.where(Candidate.campaign_id == campaign_id)
    with archive.session() as s:
        return [
            Ranked(c.id, c.campaign_id, task, c.strategy, e.split, e.mean, e.ci_low, e.ci_high, e.n, e.n_errors, c.payload)
            for e, c, task in s.execute(query).all()
        ]


def show(archive: Archive, candidate_id: int) -> dict[str, Any]:
    """Everything stored about one candidate: payload, lineage, evaluations, per-example results."""
    candidate = archive.candidate(candidate_id)
    campaign = archive.campaign(candidate.campaign_id)
    return {
        "id": candidate.id,
        "campaign_id": candidate.campaign_id,
        "task": campaign.task,
        "kind": candidate.kind,
        "strategy": candidate.strategy,
        "rationale": candidate.rationale,
        "content_hash": candidate.content_hash,
        "created_at": candidate.created_at.isoformat(),
        "parents": archive.parents(candidate_id),
        "payload": candidate.payload,
        "evaluations": {k: asdict(v) for k, v in archive.evaluations(candidate_id).items()},
        "results": [
            {"split": r.split, "example_id": r.example_id, "output": r.output, "score": r.score, "error": r.error}
            for r in archive.results(candidate_id)
        ],
    }


def campaigns(archive: Archive) -> list[dict[str, Any]]:
    with archive.session() as s:
        rows = s.scalars(select(Campaign).order_by(Campaign.created_at.desc()))
        return [
            {"id": c.id, "name": c.name, "task": c.task, "strategy": c.strategy, "status": c.status,
             "created_at": c.created_at.isoformat(), "summary": c.summary}
            for c in rows
        ]
