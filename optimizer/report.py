"""``agentopt report``: a campaign as a static HTML page with its plots, readable from the file system.

Everything comes from the archive: the best validation score so far against the LLM calls and the
cost paid up to that moment (the ledger in ``llm_calls``), the score distribution per strategy, the
lineage of the top candidates and their prompts or code. Plots are PNG files next to
``index.html``, referenced by relative paths, so the folder can be zipped, mailed or served as is.
"""

import html
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import networkx as nx
from sqlalchemy import select

from agentopt.agents.budget import Price
from agentopt.agents.errors import ConfigError
from agentopt.agents.kinds import kind_of
from agentopt.archive import queries
from agentopt.archive.export import staged_output
from agentopt.archive.models import Candidate, Evaluation, LLMCall
from agentopt.archive.store import Archive
from agentopt.optimizer.budgets import ledger

TOP = 10


@dataclass(frozen=True)
class Point:
    """The best validation score once a candidate's validation score was known, and what had been paid."""

    calls: int
    usd: float
    best: float
    candidate_id: int


def curve(archive: Archive, campaign_id: str, prices: dict[str, Price]) -> list[Point]:
    with archive.session() as s:
        scored = s.execute(select(Evaluation.updated_at, Evaluation.mean, Candidate.id)
                           .join(Candidate, Candidate.id == Evaluation.candidate_id)
                           .where(Candidate.campaign_id == campaign_id, Evaluation.split == "val",
                                  Evaluation.mean.is_not(None)).order_by(Evaluation.updated_at)).all()
        paid = s.execute(select(LLMCall.created_at, LLMCall.role, LLMCall.prompt_tokens, LLMCall.completion_tokens,
                                LLMCall.cached_tokens)
                         .where(LLMCall.campaign_id == campaign_id).order_by(LLMCall.created_at)).all()
    points, best, calls, usd, i = [], float("-inf"), 0, 0.0, 0
    for when, mean, candidate_id in scored:
        while i < len(paid) and paid[i][0] <= when:
            _, role, prompt, completion, cached = paid[i]
            calls, usd, i = calls + 1, usd + prices.get(role or "task", Price()).cost(prompt, completion, cached), i + 1
        if mean > best:
            best = mean
        points.append(Point(calls, usd, best, candidate_id))
    return points


def distribution(archive: Archive, campaign_id: str) -> dict[str, list[float]]:
    """Validation means per strategy label (portfolio members apart)."""
    with archive.session() as s:
        rows = s.execute(select(Candidate.strategy, Evaluation.mean)
                         .join(Evaluation, Evaluation.candidate_id == Candidate.id)
                         .where(Candidate.campaign_id == campaign_id, Evaluation.split == "val",
                                Evaluation.mean.is_not(None))).all()
    out: dict[str, list[float]] = {}
    for strategy, mean in rows:
        out.setdefault(strategy, []).append(mean)
    return out


def top_lineage(archive: Archive, ids: Sequence[int]) -> nx.DiGraph:
    graph = nx.DiGraph()
    for candidate_id in ids:
        graph = nx.compose(graph, queries.lineage(archive, candidate_id))
    graph.graph["top"] = list(ids)
    return graph


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as exc:
        raise ConfigError("the report draws its plots with matplotlib: pip install 'agentopt[plots]'") from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plots(points: Sequence[Point], scores: dict[str, list[float]], lineage: nx.DiGraph, out: Path) -> list[str]:
    """Write the PNGs; returns their file names in page order."""
    plt = _pyplot()
    names = []
    for name, attr, label in (("best_vs_calls.png", "calls", "LLM calls (task + proposer)"),
                              ("best_vs_cost.png", "usd", "cost so far (USD)")):
        fig, ax = plt.subplots(figsize=(6, 3.4))
        if points:
            ax.step([getattr(p, attr) for p in points], [p.best for p in points], where="post", marker="o")
        ax.set_xlabel(label)
        ax.set_ylabel("best validation score so far")
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        names.append(name)
    fig, ax = plt.subplots(figsize=(6, 3.4))
    if scores:
        ax.boxplot(list(scores.values()), tick_labels=list(scores))
        for i, values in enumerate(scores.values(), start=1):
            ax.scatter([i] * len(values), values, alpha=0.5, s=12)
    ax.set_ylabel("validation score")
    fig.tight_layout()
    fig.savefig(out / "scores_by_strategy.png", dpi=110)
    plt.close(fig)
    names.append("scores_by_strategy.png")
    fig, ax = plt.subplots(figsize=(8, 4.5))
    if lineage.number_of_nodes():
        for layer, nodes in enumerate(nx.topological_generations(lineage)):
            for node in nodes:
                lineage.nodes[node]["layer"] = layer
        layout = nx.multipartite_layout(lineage, subset_key="layer")
        top = set(lineage.graph.get("top", []))
        colours = ["tab:orange" if n in top else "tab:blue" for n in lineage.nodes]
        labels = {n: f"#{n}\n{100 * d['val_score']:.0f}%" if "val_score" in d else f"#{n}"
                  for n, d in lineage.nodes(data=True)}
        nx.draw_networkx(lineage, layout, ax=ax, node_color=colours, labels=labels, font_size=7, node_size=700)
    ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(out / "lineage.png", dpi=110)
    plt.close(fig)
    return names + ["lineage.png"]


def page(campaign: dict[str, Any], top: Sequence[queries.Ranked], tests: dict[int, float | None],
         images: Sequence[str]) -> str:
    esc = html.escape
    rows = "".join(
        f"<tr><td>#{r.candidate_id}</td><td>{esc(r.kind)}</td><td>{esc(r.strategy)}</td>"
        f"<td>{100 * (r.mean or 0):.1f} [{100 * (r.ci_low or 0):.1f}, {100 * (r.ci_high or 0):.1f}]</td>"
        f"<td>{'-' if tests.get(r.candidate_id) is None else f'{100 * tests[r.candidate_id]:.1f}'}</td>"
        f"<td><pre>{esc(kind_of(r.payload).describe(r.payload))}</pre></td></tr>" for r in top)
    figures = "".join(f'<figure><img src="{esc(name)}" alt="{esc(name)}"><figcaption>{esc(name)}</figcaption></figure>'
                      for name in images)
    facts = esc(json.dumps({k: campaign[k] for k in ("id", "task", "strategy", "status", "created_at", "spend")},
                           indent=1))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>agentopt report {esc(campaign['id'])}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}}figure{{display:inline-block;margin:0 1em 1em 0}}
img{{max-width:520px}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px;vertical-align:top}}
pre{{white-space:pre-wrap;margin:0;max-width:520px}}</style></head><body>
<h1>Campaign {esc(campaign['id'])}: {esc(campaign['task'])}</h1>
<pre id="facts">{facts}</pre>
<h2>Plots</h2><div id="plots">{figures}</div>
<h2>Top candidates (validation)</h2>
<table id="top"><tr><th>id</th><th>kind</th><th>strategy</th><th>val % [95% CI]</th><th>test %</th><th>agent</th></tr>
{rows}</table></body></html>
"""


def write_report(archive: Archive, campaign_id: str, out: Path, prices: dict[str, Price]) -> Path:
    """Write ``index.html`` and its PNGs into ``out`` (created; existing report files are replaced,
    and only once all of them are drawn, so a failure leaves ``out`` as it was)."""
    campaign = archive.campaign(campaign_id)
    ranked = queries.top(archive, TOP, "val", queries.Filters(campaign=campaign_id))
    tests = {r.candidate_id: (archive.evaluations(r.candidate_id).get("test") or None) for r in ranked}
    test_means = {c: (e.mean if e is not None else None) for c, e in tests.items()}
    info = {"id": campaign.id, "task": campaign.task, "strategy": campaign.strategy, "status": campaign.status,
            "created_at": campaign.created_at.isoformat(), "spend": ledger(archive, campaign_id, prices)}
    with staged_output(out, empty=False) as folder:
        images = plots(curve(archive, campaign_id, prices), distribution(archive, campaign_id),
                       top_lineage(archive, [r.candidate_id for r in ranked[:5]]), folder)
        (folder / "index.html").write_text(page(info, ranked, test_means, images), encoding="utf-8")
    return out / "index.html"
