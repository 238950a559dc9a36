"""Drawings for the dashboard's charts: graphs placed by generation, and chart labels made safe.

plotly.js draws what these return; every label is text an LLM wrote, and plotly.js reads a little HTML
in labels, so each one is escaped here (:func:`chart_text`).
"""

import html
from collections.abc import Hashable, Sequence
from typing import Any, TypeVar

import networkx as nx

LINEAGE_NODES = 300  # drawn around a candidate; a seed's descendants can be a whole campaign
_Node = TypeVar("_Node", bound=Hashable)  # a drawn graph's nodes: step names, candidate ids


def chart_text(text: Any, width: int = 300) -> str:
    """Text for a chart label or hover box, escaped (plotly.js renders some tags in labels)."""
    shown = str(text)
    return html.escape(shown if len(shown) <= width else shown[: width - 1] + "…")


def layered(nodes: Sequence[_Node], edges: Sequence[tuple[_Node, _Node]]) -> dict[_Node, tuple[float, float]]:
    """Positions for a DAG drawn left to right, one column per topological generation."""
    graph: nx.DiGraph[_Node] = nx.DiGraph()
    graph.add_nodes_from(nodes)
    graph.add_edges_from(edges)
    positions = {}
    for x, generation in enumerate(nx.topological_generations(graph)):
        for y, node in enumerate(sorted(generation, key=str)):
            positions[node] = (float(x), float(-y))
    return positions


def graph_drawing(payload: Any) -> dict[str, Any] | None:
    """A graph agent's nodes and edges placed for drawing, with each node's template and tool."""
    if not isinstance(payload, dict):
        return None
    nodes, edges = payload.get("nodes"), payload.get("edges")
    if not isinstance(nodes, list) or not nodes or not all(isinstance(n, dict) and "name" in n for n in nodes):
        return None
    names = [str(n["name"]) for n in nodes]
    pairs = [(str(a), str(b)) for a, b in (edges or []) if str(a) in names and str(b) in names]
    try:
        where = layered(names, pairs)
    except nx.NetworkXUnfeasible:
        return None
    return {"x": [where[n][0] for n in names], "y": [where[n][1] for n in names],
            "label": [chart_text(n + (f" [{node.get('tool')}]" if node.get("tool") else ""))
                      for n, node in zip(names, nodes, strict=True)],
            "text": [chart_text(node.get("template", ""), 500) for node in nodes],
            "edges": [[*where[a], *where[b]] for a, b in pairs]}


def near(graph: "nx.DiGraph[int]", root: int, limit: int = LINEAGE_NODES) -> "nx.DiGraph[int]":
    """The candidate's ancestors and its nearest descendants, generation by generation, up to ``limit``
    nodes in all; ``graph.graph["hidden"]`` counts the descendants left out."""
    keep = {root, *nx.ancestors(graph, root)}
    for generation in nx.bfs_layers(graph, [root]):
        if len(keep) + len(generation) > limit:
            break
        keep.update(generation)
    kept = graph.subgraph(keep).copy()
    kept.graph["hidden"] = len(graph) - len(kept)
    return kept


def lineage_drawing(graph: "nx.DiGraph[int]", marked: set[int]) -> dict[str, Any]:
    """A lineage placed by generation, ``marked`` nodes outlined; each node links to its page."""
    where = layered(list(graph.nodes), list(graph.edges))
    nodes = [(n, d) for n, d in graph.nodes(data=True)]  # not list(): networkx's stubs make that the bare ids
    return {"id": [n for n, _ in nodes], "x": [where[n][0] for n, _ in nodes], "y": [where[n][1] for n, _ in nodes],
            "label": [f"#{n}" + (f" {100 * d['val_score']:.0f}%" if "val_score" in d else "") for n, d in nodes],
            "text": [chart_text(f"#{n} {d.get('strategy', '')}: {d.get('label', '')} | "
                                f"why: {d.get('rationale') or 'seed'}", 600) for n, d in nodes],
            "current": [n in marked for n, _ in nodes], "hidden": graph.graph.get("hidden", 0),
            "edges": [[*where[a], *where[b]] for a, b in graph.edges]}
