"""The archive's value records: what its writers are handed and what its queries return.

The store's values (:class:`EvalSummary`, :class:`ExampleOutcome`, :class:`Paid`, :class:`SweepCampaign`)
live here, beside the query results, so that a strategy or a worker that needs one imports a dataclass
and not the store with its engine. Each query (:mod:`agentopt.archive.queries`) returns one of these
frozen dataclasses, or a list of them: typed fields for Python callers
(:class:`agentopt.archive.facade.Archive`), and ``as_dict()``, exactly the JSON that the matching
``agentopt archive ... --json`` prints. They live apart from the SQL so that each module stays about one thing.
"""

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, NamedTuple, Self

from agentopt.archive.models import Note


@dataclass(frozen=True)
class EvalSummary:
    """A candidate's aggregate on one split, with its bootstrap 95% interval (``None``: nothing scored)."""

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
    worker: str | None = None  # "node-id/pid" of the process that ran it
    trace: list[dict[str, Any]] | None = None  # what each step of a traced (graph) agent did
    feedback: str | None = None  # the metric's explanation of the score, when it gives one


class Paid(NamedTuple):
    """One role's paid calls in a campaign, from the ledger."""

    calls: int
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0  # of the prompt tokens, served from the endpoint's prompt cache
    prompt_saved_s: float = 0.0  # prompt-evaluation time the endpoint says that saved


class SweepCampaign(NamedTuple):
    """A campaign run as one cell of a sweep."""

    cell: str
    id: str
    status: str
    heartbeat_at: datetime | None


@dataclass(frozen=True)
class Record:
    """What a query returns: typed fields for Python, and :meth:`as_dict`, the JSON ``--json`` prints."""

    def as_dict(self) -> dict[str, Any]:
        plain: dict[str, Any] = _plain(asdict(self))
        return plain


def _plain(value: Any) -> Any:
    """JSON's own types: tuples become lists and times ISO 8601 text."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


@dataclass(frozen=True)
class Ranked(Record):
    """A candidate's score on one split, as ``archive top`` and ``archive pareto`` rank it."""

    candidate_id: int
    campaign_id: str
    task: str
    kind: str
    strategy: str
    split: str
    mean: float
    ci_low: float
    ci_high: float
    n: int
    n_errors: int
    tokens_mean: float | None
    payload: dict[str, Any]


@dataclass(frozen=True)
class NoteRecord(Record):
    """Why the search moved (see :class:`~agentopt.archive.models.Note`); ``candidate_id`` ``None``: an
    edit that made no candidate."""

    id: int
    candidate_id: int | None
    kind: str
    data: dict[str, Any]
    created_at: datetime

    @classmethod
    def of(cls, note: Note) -> Self:
        return cls(note.id, note.candidate_id, note.kind, note.data, note.created_at)


@dataclass(frozen=True)
class ResultRecord(Record):
    """One example's outcome: a score (with the metric's feedback, when it gave one) or an error."""

    split: str
    example_id: str
    output: str | None
    score: float | None
    feedback: str | None
    error: str | None
    trace: list[Any] | None


@dataclass(frozen=True)
class CandidateRecord(Record):
    """Everything stored about one candidate (``archive show``)."""

    id: int
    campaign_id: str
    task: str
    kind: str
    strategy: str
    rationale: str
    content_hash: str
    functional_hash: str | None
    twin_id: int | None
    created_at: datetime
    parents: tuple[int, ...]
    payload: dict[str, Any]
    evaluations: dict[str, EvalSummary]
    notes: tuple[NoteRecord, ...]
    results: tuple[ResultRecord, ...]

    def as_dict(self) -> dict[str, Any]:
        """Each note as its kind and data: the candidate and its campaign are the record's own."""
        shown = super().as_dict()
        shown["notes"] = [{"kind": n.kind, "data": n.data} for n in self.notes]
        return shown


@dataclass(frozen=True)
class PairedScores(Record):
    """B - A on the examples both candidates were scored on, with its bootstrap 95% CI, and how many
    examples each did better on."""

    b_minus_a: float
    b_minus_a_ci: tuple[float, float]
    b_better: int
    a_better: int


@dataclass(frozen=True)
class SplitDiff(Record):
    """Both candidates on one split: their evaluations (``None``: not evaluated there) and, when they
    share scored examples, the paired difference."""

    a: EvalSummary | None
    b: EvalSummary | None
    shared_examples: int
    paired: PairedScores | None

    def as_dict(self) -> dict[str, Any]:
        return {"A": None if self.a is None else asdict(self.a), "B": None if self.b is None else asdict(self.b),
                "shared_examples": self.shared_examples, **(self.paired.as_dict() if self.paired else {})}


@dataclass(frozen=True)
class Diff(Record):
    """Candidate A against B. ``payload_changes`` maps each payload key that differs to a unified diff's
    lines (text), ``{"removed", "added"}`` items (lists), or ``{"A", "B"}`` values (anything else)."""

    a: int
    b: int
    relation: str  # "same campaign" or "different campaigns"
    payload_changes: dict[str, Any]
    splits: dict[str, SplitDiff]

    def as_dict(self) -> dict[str, Any]:
        return {"A": self.a, "B": self.b, "relation": self.relation, "payload_changes": self.payload_changes,
                "splits": {split: d.as_dict() for split, d in self.splits.items()}}


@dataclass(frozen=True)
class CampaignRow(Record):
    """One campaign: size, best scores and spend. ``best_test``, ``seed_test`` and ``best_candidate_id``
    come from the summary a finished campaign writes (``None`` until then); ``best_val`` is live."""

    id: str
    name: str
    task: str
    strategy: str
    status: str
    created_at: datetime
    candidates: int
    best_val: float | None
    best_test: float | None
    best_test_ci: tuple[float | None, float | None]
    seed_test: float | None
    best_candidate_id: int | None
    llm_calls: int
    wall_s: float | None
    stats: dict[str, Any]


@dataclass(frozen=True)
class ReferenceDelta(Record):
    """A campaign's best candidate minus the reference campaign's, paired on the test examples both
    were scored on, with its bootstrap 95% CI."""

    reference: str
    delta: float
    ci: tuple[float, float]
    shared_examples: int


@dataclass(frozen=True)
class Comparison(CampaignRow):
    """A campaign beside the others on its task (``None``: the reference itself, or nothing to pair)."""

    test_vs_reference: ReferenceDelta | None


@dataclass(frozen=True)
class SplitProgress(Record):
    evaluated: int
    errors: int


@dataclass(frozen=True)
class Progress(Record):
    """How far a campaign has got (``best``: on val, else on train; ``None`` before any score)."""

    candidates: int
    twins: int  # candidates merged into an earlier one that behaved the same
    examples: dict[str, SplitProgress]
    best: Ranked | None

    @property
    def errors(self) -> int:
        """Examples that failed, on every split."""
        return sum(split.errors for split in self.examples.values())


REJECTED_NOTE = "rejected_proposal"
LOST_NOTE = "proposals_lost"  # the note a campaign counts its lost proposals in, which status reads
"""The note a campaign stores for each proposal a strategy refused, which :class:`Rejected` reads back."""


@dataclass(frozen=True)
class Rejected(Record):
    """A proposal the strategy refused before it cost a task-model call, and why. ``step`` is the
    proposal's number in its campaign run (``None``: not known); ``proposal`` is the proposer's reply
    as it came (``None``: there was no text, e.g. the proposer call failed)."""

    note_id: int
    step: int | None
    reason: str
    proposal: str | None
    created_at: datetime

    @classmethod
    def of(cls, note: Note) -> Self:
        data = note.data if isinstance(note.data, dict) else {}
        step, proposal = data.get("step"), data.get("proposal")
        return cls(note.id, step if isinstance(step, int) else None, str(data.get("reason", "")),
                   proposal if isinstance(proposal, str) else None, note.created_at)
