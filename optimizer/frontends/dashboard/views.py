"""What each dashboard page shows, as plain data: the web app renders it live, ``agentopt report``
renders the same data frozen into a folder. Nothing here knows about HTTP or HTML, except that text
bound for a chart's labels is escaped (plotly.js reads a little HTML in labels, and every label here
is text an LLM wrote): :mod:`~agentopt.optimizer.frontends.dashboard.drawings` places and labels what charts draw.

Pages are drawn from what the archive stores and nothing else: an archive is shared data, so a page
never loads the task its config names (that would read any file the path points at and import the
metric module it names). A damaged record is shown with what is wrong with it, never as a failed page.
"""

import json
import math
import re
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, overload

import networkx as nx

from agentopt.agents.models.budget import Price
from agentopt.agents.runtime.errors import AgentoptError
from agentopt.agents.kinds import kind_of
from agentopt.archive import queries
from agentopt.archive.records import NoteRecord, ResultRecord
from agentopt.archive.store import Archive
from agentopt.optimizer.engine.budgets import role_prices, stored_ledger
from agentopt.optimizer.engine.config import ROLES, stored_config
from agentopt.optimizer.frontends.dashboard.drawings import chart_text, graph_drawing, lineage_drawing, near
from agentopt.archive.lifecycle import STALE_HEARTBEAT_S, heartbeat_age
from agentopt.optimizer.tasks import BUILTIN, EXTERNAL

PAGE_SIZE = 50
MAX_PAGE = 2**62 // PAGE_SIZE  # its row offset still fits the 64-bit integer SQLite and PostgreSQL bind
CLIP_CHARS = 4000  # of one stored text on a page: a 1 MB answer made a page a browser could not lay out
DIFF_LINES = 200  # of one payload field's diff on the comparison page
REJECTED_SHOWN = 200  # refused proposals listed on a campaign page (the first ones): a long search refuses thousands
FENCED = re.compile(r"^```(?P<language>[\w+-]*)\n(?P<code>.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
DRAWING_ERRORS = (AgentoptError, AttributeError, KeyError, TypeError, ValueError, nx.NetworkXException)
"""What reading a damaged record raises: a kind's label of a payload it cannot read, or a cycle in a lineage."""


def aware(when: datetime) -> datetime:
    """SQLite hands back naive datetimes; they are stored in UTC."""
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Paging:
    page: int
    size: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.size))

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.size


def live_state(stored: str, heartbeat_at: datetime | None, summary: dict[str, Any]) -> str:
    """running, interrupted (its driver stopped beating), stopped by a budget, or the stored end state."""
    if stored == "running":
        age = heartbeat_age(heartbeat_at)
        return "running" if age is not None and age < STALE_HEARTBEAT_S else "interrupted"
    if summary.get("stopped_by"):
        return f"stopped by {summary['stopped_by']} budget"
    return stored


# --- the campaign list ------------------------------------------------------------------------------
def campaign_list(archive: Archive, task: str | None, strategy: str | None, since: datetime | None,
                  until: datetime | None, page: int) -> dict[str, Any]:
    total = queries.count_campaigns(archive, task, strategy, since, until)
    paging = Paging(page, PAGE_SIZE, total)
    rows = queries.campaigns(archive, task, strategy=strategy, since=since, until=until, limit=PAGE_SIZE,
                             offset=paging.offset)
    stored = {c.id: c for c in queries.stored_campaigns(archive, [r.id for r in rows])}
    listed = []
    for row in rows:
        campaign = stored[row.id]
        spend, limits = _spend_and_limits(archive, row.id)
        listed.append({"row": row, "state": live_state(row.status, campaign.heartbeat_at, campaign.summary),
                       "models": _models(campaign.config), "active_s": campaign.active_s,
                       "gauges": gauges(spend, limits, campaign.active_s, _wall_limit(campaign.config))})
    return {"campaigns": listed, "paging": paging, "tasks": queries.tasks(archive),
            "strategies": queries.strategies(archive)}


def models_of(config: dict[str, Any]) -> dict[str, str]:
    """Each role's model as the stored config names it (the default is the bundled local model)."""
    models = config.get("models") or {}
    return {role: str((models.get(role) or {}).get("model", "local")) for role in ROLES}


def _models(config: dict[str, Any]) -> str:
    named = models_of(config)
    return named["task"] if named["task"] == named["proposer"] else f"{named['task']} / {named['proposer']}"


def _wall_limit(config: dict[str, Any]) -> float | None:
    return (config.get("budget") or {}).get("wall_time_s")


def _prices(archive: Archive, campaign_id: str) -> dict[str, Price]:
    try:
        return role_prices(stored_config(archive, campaign_id))
    except AgentoptError:  # a config this version cannot read: its calls are shown unpriced
        return {}


def _spend_and_limits(archive: Archive, campaign_id: str) -> tuple[dict[str, dict[str, float]],
                                                                   dict[str, dict[str, float | None]]]:
    try:
        config = stored_config(archive, campaign_id)
    except AgentoptError:  # a config this version cannot read: the list still shows the campaign
        return {}, {}
    return stored_ledger(archive, campaign_id, config), config.budget.limits()


def gauges(spend: dict[str, dict[str, float]], limits: dict[str, dict[str, float | None]], active_s: float,
           wall_limit_s: float | None) -> list[dict[str, Any]]:
    """Spend against each limit that is set: calls, tokens and dollars per role, and wall time."""
    out = []
    for role in ROLES:
        for what in ("calls", "tokens", "usd"):
            limit = (limits.get(role) or {}).get(what)
            if limit:
                spent = spend.get(role, {}).get(what, 0)
                out.append({"name": f"{role} {what}", "spent": spent, "limit": limit, "fraction": min(spent / limit, 1)})
    if wall_limit_s:
        out.append({"name": "wall time s", "spent": round(active_s), "limit": wall_limit_s,
                    "fraction": min(active_s / wall_limit_s, 1)})
    return out


# --- one campaign ---------------------------------------------------------------------------------
def timeline(start: datetime, calls: Sequence[tuple[datetime, str | None, int, int, int]], prices: dict[str, Price],
             points: Sequence[queries.ScorePoint], proposals: Sequence[datetime]) -> dict[str, Any]:
    """Every score and proposal placed at the LLM calls, dollars and seconds spent when it happened,
    and the best validation score so far as a step line that runs to the campaign's last moment."""
    times = [aware(c[0]) for c in calls]
    spent, total = [], 0.0
    for _, role, prompt, completion, cached in calls:
        total += prices.get(role or "task", Price()).cost(prompt, completion, cached)
        spent.append(total)
    begin = aware(start)

    def at(when: datetime) -> dict[str, float]:
        i = bisect_right(times, aware(when))
        return {"calls": i, "usd": round(spent[i - 1], 6) if i else 0.0,
                "s": round((aware(when) - begin).total_seconds(), 1)}

    series: dict[str, dict[str, list[Any]]] = {}
    best: dict[str, list[Any]] = {"calls": [], "usd": [], "s": [], "best": [], "text": []}
    top = float("-inf")
    for p in points:
        where = at(p.at)
        line = series.setdefault(p.split, {"calls": [], "usd": [], "s": [], "mean": [], "n": [], "id": [], "text": []})
        for axis in ("calls", "usd", "s"):
            line[axis].append(where[axis])
        line["mean"].append(round(p.mean, 4))
        line["n"].append(p.n)
        line["id"].append(p.candidate_id)
        line["text"].append(chart_text(f"#{p.candidate_id} {p.strategy}: {100 * p.mean:.1f}% on {p.n} {p.split}"))
        if p.split == "val" and p.mean > top:
            top = p.mean
            for axis in ("calls", "usd", "s"):
                best[axis].append(where[axis])
            best["best"].append(round(top, 4))
            best["text"].append(chart_text(f"best so far: #{p.candidate_id}, {100 * top:.1f}%"))
    ends = [aware(t) for t in (*times[-1:], *(p.at for p in points[-1:]), *proposals[-1:])]
    if best["best"] and ends:
        end = at(max(ends))
        for axis in ("calls", "usd", "s"):
            best[axis].append(end[axis])
        best["best"].append(best["best"][-1])
        best["text"].append(best["text"][-1])
    placed = [at(t) for t in proposals]
    return {"splits": series, "best": best, "usd_total": round(total, 6),
            "proposals": {axis: [p[axis] for p in placed] for axis in ("calls", "usd", "s")}}


def campaign_live(archive: Archive, campaign_id: str) -> dict[str, Any]:
    """What the campaign page redraws while the campaign runs (served as JSON every few seconds)."""
    campaign = archive.campaign(campaign_id)
    spend, limits = _spend_and_limits(archive, campaign_id)
    points = queries.score_points(archive, campaign_id)
    per_strategy: dict[str, list[float]] = {}
    for p in points:
        if p.split == "val":
            per_strategy.setdefault(chart_text(p.strategy), []).append(round(p.mean, 4))
    front = {r.candidate_id for r in queries.pareto(archive, "val", queries.Filters(campaign=campaign_id))}
    val = [p for p in points if p.split == "val" and p.tokens is not None]
    progress = queries.progress(archive, campaign_id)
    return finite({
        "state": live_state(campaign.status, campaign.heartbeat_at, campaign.summary),
        "active_s": round(campaign.active_s),
        "candidates": progress.candidates,
        "examples": {split: v.evaluated for split, v in progress.examples.items()},
        "errors": progress.errors,
        "best": None if progress.best is None else {"id": progress.best.candidate_id, "split": progress.best.split,
                                                    "mean": progress.best.mean},
        "spent": {what: round(sum(role.get(what, 0) for role in spend.values()), 6)
                  for what in ("calls", "tokens", "usd")},
        "gauges": gauges(spend, limits, campaign.active_s, _wall_limit(campaign.config)),
        "timeline": timeline(campaign.created_at, queries.paid_calls(archive, campaign_id),
                             _prices(archive, campaign_id), points, queries.proposal_times(archive, campaign_id)),
        "strategies": per_strategy,
        "pareto": {"tokens": [round(p.tokens or 0, 1) for p in val], "mean": [round(p.mean, 4) for p in val],
                   "id": [p.candidate_id for p in val], "front": [p.candidate_id in front for p in val],
                   "text": [chart_text(f"#{p.candidate_id} {p.strategy}: {100 * p.mean:.1f}%, "
                                       f"{p.tokens or 0:.0f} tokens/example") for p in val]},
        "dedup": queries.dedup_counts(archive, campaign_id),
    })


@overload
def finite(value: dict[str, Any]) -> dict[str, Any]: ...


@overload
def finite(value: object) -> Any: ...


def finite(value: Any) -> Any:
    """``value`` with every infinite or NaN number as None: JSON has no such numbers (Starlette refuses
    them, and ``JSON.parse`` in the page would too), and a score of inf is a damaged row, not a best."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite(item) for item in value]
    return value


def campaign_page(archive: Archive, campaign_id: str, sort: queries.SortKey, descending: bool, strategy: str | None,
                  kind: str | None, page: int) -> dict[str, Any]:
    campaign = archive.campaign(campaign_id)
    summary = campaign.summary
    top = queries.top(archive, 5, "val", queries.Filters(campaign=campaign_id))
    rows, total = queries.candidate_page(archive, campaign_id, sort, descending, strategy, kind,
                                        (page - 1) * PAGE_SIZE, PAGE_SIZE)
    problems: list[str] = []
    lineage = None
    if top:
        try:
            lineage = lineage_drawing(nx.compose_all([queries.lineage(archive, r.candidate_id) for r in top]),
                                      {r.candidate_id for r in top})
        except DRAWING_ERRORS as exc:
            problems.append(f"the lineage of the top candidates is not drawn: a record in it is damaged "
                            f"({type(exc).__name__}: {str(exc)[:300]})")
    return {
        "campaign": campaign,
        "live": campaign_live(archive, campaign_id),
        "models": models_of(campaign.config),
        "facts": [("task", campaign.task), ("strategy", campaign.strategy), ("name", campaign.name),
                  ("started", aware(campaign.created_at).strftime("%Y-%m-%d %H:%M:%S UTC")),
                  ("sweep", campaign.sweep_id or "-")],
        "seed_test": summary.get("seed_test"), "best_test": summary.get("best_test"),
        "best_candidate_id": summary.get("best_candidate_id"),
        "rows": rows, "paging": Paging(page, PAGE_SIZE, total),
        "sort": sort, "descending": descending, "strategy": strategy or "", "kind": kind or "",
        "top": top, "lineage": lineage, "problems": problems, "rejected": rejected_view(archive, campaign_id),
    }


def rejected_view(archive: Archive, campaign_id: str) -> dict[str, Any]:
    """The proposals the strategy refused, each with its reason and its text clipped: the campaign's
    stats count them by reason, this shows which they were (the first ``REJECTED_SHOWN``)."""
    rows = [{"step": r.step, "reason": r.reason, "proposal": None if r.proposal is None else clipped(r.proposal)}
            for r in queries.rejected_candidates(archive, campaign_id, REJECTED_SHOWN)]
    return {"rows": rows, "capped": len(rows) == REJECTED_SHOWN}


# --- one candidate ----------------------------------------------------------------------------------
def describe(payload: Any) -> str:
    """The kind's own description of the agent (markdown); a kind unknown here, or a payload its kind
    cannot read, is shown as stored."""
    problem = queries.payload_problem(payload)
    if problem is None:
        try:
            return kind_of(payload).describe(payload)
        except DRAWING_ERRORS as exc:
            problem = repr(exc)
    return f"(not described: {problem}); as stored:\n\n```json\n{stored_json(payload)}\n```"


def stored_json(value: Any) -> str:
    """A stored JSON value as text, whatever it holds (a damaged row may hold anything JSON can)."""
    return json.dumps(value, indent=1, ensure_ascii=False, default=str)


def clipped(text: str, limit: int = CLIP_CHARS) -> str:
    """``text`` cut to ``limit`` characters, saying how much was left out."""
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text) - limit} more characters)"


def agent_sections(payload: Any) -> list[dict[str, Any]]:
    """The kind's own description, split into prose and code blocks (code is highlighted), each
    clipped (``clipped``: the page links to the whole payload)."""
    text, sections, at = describe(payload), [], 0
    for block in FENCED.finditer(text):
        if text[at:block.start()].strip():
            sections.append({"type": "text", "text": text[at:block.start()].strip()})
        sections.append({"type": "code", "language": block["language"] or "text", "text": block["code"]})
        at = block.end()
    if text[at:].strip():
        sections.append({"type": "text", "text": text[at:].strip()})
    return [{**s, "text": clipped(s["text"]), "clipped": len(s["text"]) > CLIP_CHARS} for s in sections]


def candidate_page(archive: Archive, candidate_id: int) -> dict[str, Any]:
    """Everything stored about one candidate. Example inputs and targets are not stored (they live in
    the task, which pages never load), so each result shows its example id, answer, score, error,
    feedback and trace; every damaged part of the record is listed in ``problems``."""
    record = queries.show(archive, candidate_id)
    damaged = queries.payload_problem(record.payload)
    problems = [] if damaged is None else [damaged]
    problems += [f"its {split} mean is {e.mean}, not a score from 0 to 1" for split, e in record.evaluations.items()
                 if e.mean is not None and not 0 <= e.mean <= 1]
    results = [result_view(r) for r in record.results]
    problems += [f"{x['problem']} ({x['result'].split} example {x['result'].example_id})" for x in results
                 if x["problem"]]
    notes = [note_view(n) for n in record.notes]
    problems += [n["problem"] for n in notes if n["problem"]]
    try:
        lineage = lineage_drawing(near(queries.lineage(archive, candidate_id, descendants=True), candidate_id),
                                  {candidate_id})
    except DRAWING_ERRORS as exc:
        lineage = None
        problems.append(f"its lineage is not drawn: a record in it is damaged ({type(exc).__name__}: {str(exc)[:300]})")
    return {"record": record, "label": queries.shown_label(record.payload), "sections": agent_sections(record.payload),
            "graph": None if damaged else graph_drawing(record.payload), "lineage": lineage,
            "twins": queries.twins_of(archive, record.campaign_id, candidate_id), "results": results, "notes": notes,
            "problems": problems,
            "exportable": damaged or _exportable(record.payload) or task_unloadable(archive, record.campaign_id)}


def result_view(result: ResultRecord) -> dict[str, Any]:
    """One example's outcome, with its trace as text and what is wrong with a damaged score."""
    score = result.score
    problem = None if score is None or 0 <= score <= 1 else f"score {score} is not a number from 0 to 1"
    return {"result": result, "problem": problem,
            "trace": None if result.trace is None else stored_json(result.trace),
            "steps": len(result.trace) if isinstance(result.trace, list) else None}


def note_view(note: NoteRecord) -> dict[str, Any]:
    """A note's fields as text; note data that is not an object is shown as stored, and said to be damaged."""
    if not isinstance(note.data, dict):
        return {"id": note.id, "kind": note.kind, "fields": [("as stored", stored_json(note.data))],
                "problem": f"note {note.id}'s data is a JSON {queries.json_type(note.data)}, not an object"}
    fields = [(str(k), v if isinstance(v, str) else stored_json(v)) for k, v in note.data.items()]
    return {"id": note.id, "kind": note.kind, "fields": fields, "problem": None}


def task_unloadable(archive: Archive, campaign_id: str) -> str | None:
    """Why the dashboard will not load a campaign's task to export its candidates, or None when it
    will: only a built-in task, whose examples and metric are agentopt's own. A task file or metric
    named in the archive would have the server read that path and import that module."""
    campaign = archive.campaign(campaign_id)
    info = campaign.config.get("task") if isinstance(campaign.config, dict) else None
    ref = info.get("ref", campaign.task) if isinstance(info, dict) else campaign.task
    if isinstance(ref, str) and (ref in BUILTIN or ref in EXTERNAL):
        return None
    return ("its task is a file or metric the archive names, which the dashboard does not open; "
            "export it from the command line (agentopt export)")


def stored_text(archive: Archive, candidate_id: int, field: str, split: str, example_id: str,
                note_id: int | None) -> str | None:
    """One stored text of a candidate, whole (pages clip them): its payload, rationale, a note, or an
    example's output, feedback, error or trace. None: no such text."""
    if field in queries.RESULT_TEXTS:
        found = queries.result_text(archive, candidate_id, split, example_id, field)
        return found if found is None or isinstance(found, str) else stored_json(found)
    if field not in ("payload", "rationale", "note"):
        return None
    record = queries.show(archive, candidate_id)
    if field == "payload":
        return stored_json(record.payload)
    if field == "rationale":
        return record.rationale
    return next((stored_json(n.data) for n in record.notes if n.id == note_id), None)


def _exportable(payload: dict[str, Any]) -> str | None:
    """Why the candidate cannot be exported, or None when it can."""
    try:
        return kind_of(payload).unexportable(payload)
    except AgentoptError as exc:
        return str(exc)


# --- comparisons ------------------------------------------------------------------------------------
def compare_candidates(archive: Archive, a: int, b: int, limit: int = 50) -> dict[str, Any]:
    """A against B: the payload diff, the paired scores per split, and the examples each gets right
    where the other does not (by example id: inputs are not stored)."""
    problems = [f"candidate #{c}: {p}" for c in (a, b) if (p := queries.payload_problem(archive.candidate(c).payload))]
    diff = None if problems else queries.diff(archive, a, b)
    sa, sb = queries.example_scores(archive, a), queries.example_scores(archive, b)
    shared = sorted(sa.keys() & sb.keys())

    def shown(keys: list[tuple[str, str]]) -> list[dict[str, Any]]:
        return [{"split": split, "example_id": example, "a": sa[(split, example)], "b": sb[(split, example)]}
                for split, example in keys[:limit]]

    a_only = [k for k in shared if sa[k] > sb[k]]
    b_only = [k for k in shared if sb[k] > sa[k]]
    return {"diff": diff, "changes": [] if diff is None else shown_changes(diff.payload_changes),
            "a": _header(archive, a), "b": _header(archive, b), "problems": problems,
            "a_better": shown(a_only), "b_better": shown(b_only), "a_better_n": len(a_only), "b_better_n": len(b_only)}


def shown_changes(changes: dict[str, Any]) -> list[dict[str, Any]]:
    """Each payload change clipped for the page: at most ``DIFF_LINES`` lines or items, each clipped."""
    shown = []
    for key, change in changes.items():
        if isinstance(change, dict) and "added" in change:
            items = {side: [clipped(x if isinstance(x, str) else stored_json(x)) for x in change[side][:DIFF_LINES]]
                     for side in ("removed", "added")}
            more = max(len(change["removed"]), len(change["added"])) - DIFF_LINES
            shown.append({"key": key, "type": "items", **items, "more": max(more, 0)})
        elif isinstance(change, dict):
            shown.append({"key": key, "type": "values", "A": clipped(stored_json(change["A"])),
                          "B": clipped(stored_json(change["B"])), "more": 0})
        else:
            shown.append({"key": key, "type": "lines", "lines": [clipped(line) for line in change[:DIFF_LINES]],
                          "more": max(len(change) - DIFF_LINES, 0)})
    return shown


def _header(archive: Archive, candidate_id: int) -> dict[str, Any]:
    candidate = archive.candidate(candidate_id)
    return {"id": candidate.id, "campaign_id": candidate.campaign_id, "strategy": candidate.strategy,
            "label": queries.shown_label(candidate.payload)}


def compare_campaigns(archive: Archive, task: str | None, ids: Sequence[str]) -> list[queries.Comparison]:
    return queries.compare(archive, task, ids)
