"""The archive's reads, in one module: what ``agentopt archive``, ``agentopt status``, the dashboard,
``agentopt report`` and the experiment scripts ask of an archive (nothing outside ``archive/`` queries
its tables itself). Ranking, Pareto fronts, lineage, diffs, campaigns, notes and rejected proposals
are here; the dashboard's paged reads and the stored rows that scripts read are defined in
:mod:`agentopt.archive.browse` and importable from here too.

Every query is one or two indexed SQL statements (lineage is a recursive CTE), so they stay fast on
archives with millions of candidates; see ``experiments/bench_archive.py``. What they return, typed
records with ``as_dict()``, is defined in :mod:`agentopt.archive.records` and importable from here too.
"""

import difflib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Self, TypeVarTuple

from sqlalchemy import ColumnElement, Select, func, select

from agentopt.archive.errors import ArchiveError
from agentopt.agents.base import clip
from agentopt.agents.kinds import label
from agentopt.archive.models import Campaign, Candidate, Evaluation, Lineage, Note, Result
from agentopt.archive.browse import (POINTS_CAP, RESULT_TEXTS, SORT_KEYS, CandidateRow, ExampleResult, ScorePoint,
                                     SortKey, campaign_candidates, campaign_results, candidate_exists, candidate_page,
                                     dedup_counts, json_type, paid_calls, payload_problem, proposal_times,
                                     result_text, score_points, shown_label, stored_campaigns, strategies, tasks,
                                     twins_of)
from agentopt.archive.records import (REJECTED_NOTE, CampaignRow, CandidateRecord, Comparison, Diff, NoteRecord,
                                      PairedScores, Progress, Ranked, Record, ReferenceDelta, Rejected, ResultRecord,
                                      SplitDiff, SplitProgress)
from agentopt.archive.store import Archive

if TYPE_CHECKING:
    import networkx as nx

__all__ = [
    "SPLITS", "Filters", "campaigns", "compare", "count_campaigns", "diff", "example_scores", "label", "lineage",
    "notes", "pareto", "progress", "rejected_candidates", "render_lineage", "show", "to_dot", "top",
    # paged reads for the dashboard, and stored rows for reports and scripts, defined in agentopt.archive.browse
    "POINTS_CAP", "RESULT_TEXTS", "SORT_KEYS", "CandidateRow", "ExampleResult", "ScorePoint", "SortKey",
    "campaign_candidates", "campaign_results", "candidate_exists", "candidate_page", "dedup_counts", "json_type",
    "paid_calls", "payload_problem", "proposal_times", "result_text", "score_points", "shown_label",
    "stored_campaigns", "strategies", "tasks", "twins_of",
    # the records the queries return, defined in agentopt.archive.records
    "REJECTED_NOTE", "CampaignRow", "CandidateRecord", "Comparison", "Diff", "NoteRecord", "PairedScores", "Progress",
    "Ranked", "Record", "ReferenceDelta", "Rejected", "ResultRecord", "SplitDiff", "SplitProgress",
]

SPLITS = ("train", "val", "test")
_Columns = TypeVarTuple("_Columns")  # what a filtered query selects, kept through Filters.apply


@dataclass(frozen=True)
class Filters:
    """Which candidates a query looks at; ``None`` means no restriction."""

    campaign: str | None = None
    task: str | None = None
    kind: str | None = None
    strategy: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    @classmethod
    def of(cls, *, campaign: str | None = None, task: str | None = None, kind: str | None = None,
           strategy: str | None = None, since: datetime | None = None, until: datetime | None = None) -> Self:
        """Filters as a user gives them: a date or time without a time zone is UTC, as the archive stores
        its times, so ``--since 2026-01-01`` means the same on every machine."""
        since, until = (d if d is None or d.tzinfo else d.replace(tzinfo=UTC) for d in (since, until))
        return cls(campaign, task, kind, strategy, since, until)

    def apply(self, query: Select[*_Columns]) -> Select[*_Columns]:
        conditions: list[tuple[str | datetime | None, Callable[[Any], ColumnElement[bool]]]] = [
            (self.campaign, lambda v: Candidate.campaign_id == v),
            (self.task, lambda v: Campaign.task == v),
            (self.kind, lambda v: Candidate.kind == v),
            (self.strategy, lambda v: Candidate.strategy == v),
            (self.since, lambda v: Candidate.created_at >= v),
            (self.until, lambda v: Candidate.created_at < v),
        ]
        for value, condition in conditions:
            if value is not None:
                query = query.where(condition(value))
        return query


def _ranked_query(split: str, filters: Filters) -> Select[Evaluation, Candidate, str]:
    query = (
        select(Evaluation, Candidate, Campaign.task)
        .join(Candidate, Candidate.id == Evaluation.candidate_id)
        .join(Campaign, Campaign.id == Candidate.campaign_id)
        .where(Evaluation.split == split, Evaluation.mean.is_not(None))
    )
    return filters.apply(query)


def _ranked(rows: Iterable[Any]) -> list[Ranked]:
    return [Ranked(c.id, c.campaign_id, task, c.kind, c.strategy, e.split, e.mean, e.ci_low, e.ci_high, e.n,
                   e.n_errors, e.tokens_mean, c.payload) for e, c, task in rows]


def top(archive: Archive, k: int = 10, split: str = "val", filters: Filters = Filters()) -> list[Ranked]:
    """Best candidates on ``split`` by mean score, then by number of examples scored."""
    query = _ranked_query(split, filters).order_by(Evaluation.mean.desc(), Evaluation.n.desc(), Candidate.id).limit(k)
    with archive.session() as s:
        return _ranked(s.execute(query).all())


def pareto(archive: Archive, split: str = "val", filters: Filters = Filters()) -> list[Ranked]:
    """Candidates no other candidate beats on both score and tokens per example (cheapest first)."""
    query = (_ranked_query(split, filters).where(Evaluation.tokens_mean.is_not(None))
             .order_by(Evaluation.tokens_mean, Evaluation.mean.desc(), Candidate.id))
    front: list[Ranked] = []
    with archive.session() as s:
        for row in s.execute(query).yield_per(10_000):
            mean = row[0].mean  # never None: the ranked query selects scored evaluations only
            if mean is not None and (not front or mean > front[-1].mean):
                front.extend(_ranked([row]))
    return front


def _stored_notes(archive: Archive, campaign_id: str | None = None, candidate_id: int | None = None,
                  kind: str | None = None) -> list[Note]:
    """The note rows, through the store's own accessor: a subclass (the Python API's archive) may
    redefine ``notes`` as :func:`notes`, which is built on this."""
    return Archive.notes(archive, campaign_id, candidate_id, kind)


def show(archive: Archive, candidate_id: int) -> CandidateRecord:
    """Everything stored about one candidate: payload, lineage, evaluations, notes, per-example results."""
    candidate = archive.candidate(candidate_id)
    campaign = archive.campaign(candidate.campaign_id)
    return CandidateRecord(
        candidate.id, candidate.campaign_id, campaign.task, candidate.kind, candidate.strategy, candidate.rationale,
        candidate.content_hash, candidate.functional_hash, candidate.twin_id, candidate.created_at,
        tuple(archive.parents(candidate_id)), candidate.payload, archive.evaluations(candidate_id),
        tuple(NoteRecord.of(n) for n in _stored_notes(archive, candidate_id=candidate_id)),
        tuple(ResultRecord(r.split, r.example_id, r.output, r.score, r.feedback, r.error, r.trace)
              for r in archive.results(candidate_id)))


def notes(archive: Archive, campaign_id: str, kind: str | None = None,
          candidate_id: int | None = None) -> list[NoteRecord]:
    """A campaign's notes in the order they were recorded (``candidate_id`` ``None``: an edit that made
    no candidate); an unknown campaign is an error rather than an empty list, so a typo never looks
    like a campaign that noted nothing."""
    archive.campaign(campaign_id)
    return [NoteRecord.of(n) for n in _stored_notes(archive, campaign_id, candidate_id, kind)]


def rejected_candidates(archive: Archive, campaign_id: str, limit: int | None = None) -> list[Rejected]:
    """The proposals the campaign's strategy refused, with the reason, in the order they were refused
    (the first ``limit``): the counts in a campaign's stats say how many, these say which and why. An
    unknown campaign is an error, as for :func:`notes`."""
    archive.campaign(campaign_id)
    query = (select(Note).where(Note.campaign_id == campaign_id, Note.kind == REJECTED_NOTE)
             .order_by(Note.id).limit(limit))
    with archive.session() as s:
        return [Rejected.of(note) for note in s.scalars(query)]


# --- lineage ---------------------------------------------------------------------------------------
# networkx graphs are generic in their stubs only: annotations naming a graph type are quoted. networkx
# itself is imported by the two functions that build or write a graph: it takes a tenth of a second to
# load, which every other archive command would pay.
def lineage(archive: Archive, candidate_id: int, descendants: bool = False) -> "nx.DiGraph[int]":
    """The candidate's ancestry (and optionally its descendants) as a graph, edges parent → child.

    One recursive CTE per direction, so a depth-20 ancestry is a single round trip.
    """
    import networkx as nx

    archive.candidate(candidate_id)  # one clear error for an unknown id
    up = select(Lineage.child_id, Lineage.parent_id).where(Lineage.child_id == candidate_id).cte(recursive=True)
    up = up.union(select(Lineage.child_id, Lineage.parent_id).join(up, Lineage.child_id == up.c.parent_id))
    queries = [select(up.c.parent_id, up.c.child_id)]
    if descendants:
        down = select(Lineage.child_id, Lineage.parent_id).where(Lineage.parent_id == candidate_id).cte(recursive=True)
        down = down.union(select(Lineage.child_id, Lineage.parent_id).join(down, Lineage.parent_id == down.c.child_id))
        queries.append(select(down.c.parent_id, down.c.child_id))
    graph: nx.DiGraph[int] = nx.DiGraph(root=candidate_id)
    graph.add_node(candidate_id)
    with archive.session() as s:
        for query in queries:
            graph.add_edges_from(s.execute(query).tuples())
        rows = s.execute(select(Candidate, Evaluation.split, Evaluation.mean)
                         .outerjoin(Evaluation, Evaluation.candidate_id == Candidate.id)
                         .where(Candidate.id.in_(list(graph.nodes)))).all()
    for candidate, split, mean in rows:
        node = graph.nodes[candidate.id]
        node.update(kind=candidate.kind, strategy=candidate.strategy, rationale=candidate.rationale,
                    label=label(candidate.payload), campaign=candidate.campaign_id)
        if split is not None and mean is not None:
            node[f"{split}_score"] = round(mean, 4)
    return graph


def to_dot(graph: "nx.DiGraph[int]") -> str:
    """Graphviz DOT, written here so that no pydot / pygraphviz install is needed."""

    def quote(value: Any) -> str:
        return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines = ["digraph lineage {", "  rankdir=LR;", "  node [shape=box];"]
    for node, data in graph.nodes(data=True):
        scores = ", ".join(f"{k.removesuffix('_score')} {100 * v:.1f}%" for k, v in data.items() if k.endswith("_score"))
        why = clip(str(data.get("rationale") or ""))
        label = f"#{node} {data.get('strategy', '')}\n{data.get('label', '')}" + (f"\n{why}" if why else "") \
            + (f"\n{scores}" if scores else "")
        style = ", style=bold" if node == graph.graph.get("root") else ""
        lines.append(f"  {node} [label={quote(label)}{style}];")
    lines += [f"  {parent} -> {child};" for parent, child in graph.edges]
    return "\n".join(lines + ["}"]) + "\n"


def render_lineage(graph: "nx.DiGraph[int]", fmt: str) -> str:
    import networkx as nx

    if fmt == "dot":
        return to_dot(graph)
    if fmt == "graphml":
        return "\n".join(nx.generate_graphml(graph)) + "\n"
    return json.dumps(nx.node_link_data(graph, edges="edges"), indent=2, default=str) + "\n"


# --- diff ----------------------------------------------------------------------------------------------
def example_scores(archive: Archive, candidate_id: int) -> dict[tuple[str, str], float]:
    """A candidate's score on each (split, example) it was scored on without an error."""
    with archive.session() as s:
        rows = s.execute(select(Result.split, Result.example_id, Result.score)
                         .where(Result.candidate_id == candidate_id, Result.error.is_(None),
                                Result.score.is_not(None))).all()
    return {(split, example): score for split, example, score in rows if score is not None}  # the query left out None


def diff(archive: Archive, a: int, b: int) -> Diff:
    """What changed from candidate A to B, and what it did on the examples both were scored on."""
    from agentopt.archive.stats import bootstrap_ci  # numpy, which the commands that only read never load

    ca, cb = archive.candidate(a), archive.candidate(b)
    pa, pb = ca.payload, cb.payload
    changes: dict[str, Any] = {}
    for key in sorted(set(pa) | set(pb)):
        if pa.get(key) == pb.get(key):
            continue
        if isinstance(pa.get(key), str) and isinstance(pb.get(key), str):
            changes[key] = list(difflib.unified_diff(pa[key].splitlines(), pb[key].splitlines(), "A", "B", lineterm=""))
        elif isinstance(pa.get(key), list) and isinstance(pb.get(key), list):
            changes[key] = {"removed": [x for x in pa[key] if x not in pb[key]],
                            "added": [x for x in pb[key] if x not in pa[key]]}
        else:
            changes[key] = {"A": pa.get(key), "B": pb.get(key)}
    ea, eb = archive.evaluations(a), archive.evaluations(b)
    sa, sb = example_scores(archive, a), example_scores(archive, b)
    splits = {}
    for split in SPLITS:
        shared = sorted(k for k in sa.keys() & sb.keys() if k[0] == split)
        if split not in ea and split not in eb and not shared:
            continue
        paired = None
        if shared:
            mean, low, high = bootstrap_ci([sb[k] - sa[k] for k in shared])
            paired = PairedScores(mean, (low, high), sum(sb[k] > sa[k] for k in shared),
                                  sum(sa[k] > sb[k] for k in shared))
        splits[split] = SplitDiff(ea.get(split), eb.get(split), len(shared), paired)
    related = "same campaign" if ca.campaign_id == cb.campaign_id else "different campaigns"
    return Diff(a, b, related, changes, splits)


# --- campaigns -------------------------------------------------------------------------------------------
def _best(archive: Archive, campaign_id: str, split: str) -> Ranked | None:
    ranked = top(archive, 1, split, Filters(campaign=campaign_id))
    return ranked[0] if ranked else None


def _campaign_query(task: str | None, ids: Iterable[str], strategy: str | None, since: datetime | None,
                    until: datetime | None) -> Select[Any]:
    query = select(Campaign)
    wanted = list(ids)
    if task:
        query = query.where(Campaign.task == task)
    if wanted:
        query = query.where(Campaign.id.in_(wanted))
    if strategy:
        query = query.where(Campaign.strategy == strategy)
    if since is not None:
        query = query.where(Campaign.created_at >= since)
    if until is not None:
        query = query.where(Campaign.created_at < until)
    return query


def count_campaigns(archive: Archive, task: str | None = None, strategy: str | None = None,
                    since: datetime | None = None, until: datetime | None = None) -> int:
    query = _campaign_query(task, (), strategy, since, until)
    with archive.session() as s:
        return s.execute(select(func.count()).select_from(query.subquery())).scalar_one()


def campaigns(archive: Archive, task: str | None = None, ids: Iterable[str] = (), strategy: str | None = None,
              since: datetime | None = None, until: datetime | None = None, limit: int | None = None,
              offset: int = 0) -> list[CampaignRow]:
    """Campaigns, newest first, with size, best scores and spend: the table users compare runs with.
    ``limit`` and ``offset`` page through them in the database (the dashboard's campaign list)."""
    query = _campaign_query(task, ids, strategy, since, until).order_by(Campaign.created_at.desc(), Campaign.id)
    with archive.session() as s:
        rows = list(s.scalars(query.limit(limit).offset(offset)))
        counts = dict(s.execute(select(Candidate.campaign_id, func.count(Candidate.id))
                                .where(Candidate.campaign_id.in_([c.id for c in rows]))
                                .group_by(Candidate.campaign_id)).tuples().all())
    out = []
    for c in rows:
        stats = c.summary.get("stats", {})
        best_test = c.summary.get("best_test") or {}
        seed_test = c.summary.get("seed_test") or {}
        best_val = _best(archive, c.id, "val")
        out.append(CampaignRow(
            c.id, c.name, c.task, c.strategy, c.status, c.created_at, counts.get(c.id, 0),
            best_val.mean if best_val else None, best_test.get("mean"),
            (best_test.get("ci_low"), best_test.get("ci_high")), seed_test.get("mean"),
            c.summary.get("best_candidate_id"),
            sum(stats.get(f"{role}_llm_calls", 0) for role in ("task", "proposer", "judge")),
            c.summary.get("wall_s"), stats))
    return out


def compare(archive: Archive, task: str | None = None, ids: Iterable[str] = ()) -> list[Comparison]:
    """Campaigns side by side; each best candidate against the oldest campaign's, paired on the
    test examples both were scored on (a difference with its bootstrap 95% CI)."""
    rows = campaigns(archive, task, ids)
    if len({r.task for r in rows}) > 1:
        raise ArchiveError("compare campaigns of one task: pass --task, or campaign ids of the same task")
    finished = [r for r in rows if r.best_candidate_id is not None]
    reference = finished[-1] if finished else None
    compared = []
    for row in rows:
        versus = None
        if (reference is not None and reference.best_candidate_id is not None and row.best_candidate_id is not None
                and row is not reference):
            test = diff(archive, reference.best_candidate_id, row.best_candidate_id).splits.get("test")
            if test is not None and test.paired is not None:
                versus = ReferenceDelta(reference.id, test.paired.b_minus_a, test.paired.b_minus_a_ci,
                                        test.shared_examples)
        compared.append(Comparison(**{f.name: getattr(row, f.name) for f in fields(row)}, test_vs_reference=versus))
    return compared


def progress(archive: Archive, campaign_id: str) -> Progress:
    """How far a campaign has got: candidates (and how many were merged as twins), examples
    evaluated and failed per split, and the best candidate so far (on val, else on train)."""
    with archive.session() as s:
        candidates, twins = s.execute(select(func.count(Candidate.id), func.count(Candidate.twin_id))
                                      .where(Candidate.campaign_id == campaign_id)).one()
        per_split = s.execute(select(Result.split, func.count(Result.id), func.count(Result.error))
                              .join(Candidate, Candidate.id == Result.candidate_id)
                              .where(Candidate.campaign_id == campaign_id).group_by(Result.split)).all()
    best = _best(archive, campaign_id, "val") or _best(archive, campaign_id, "train")
    return Progress(candidates, twins, {split: SplitProgress(n, errors) for split, n, errors in per_split}, best)
