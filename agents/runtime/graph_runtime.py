"""How a graph agent's payload runs: nodes in topological order, each prompt filled from its
predecessors' outputs, each reply optionally handed to a tool.

Imports are relative and nothing beyond the standard library and :mod:`.tools` is needed, because
``agentopt export`` copies this module into packages: the campaign's :class:`GraphAgent` and the
shipped agent execute a pipeline with the very same code.
"""

import heapq
from collections.abc import Callable, Iterable, Mapping
from string import Formatter
from typing import Any

from .prompt_runtime import Inputs, postprocess, template_values
from .tools import TOOLS

INPUT = "input"
Step = dict[str, Any]
Chat = Callable[..., str]
"""``chat(messages, sample=0, **sampling_overrides) -> reply text``."""


def fields(template: str) -> list[tuple[str, str, str | None]]:
    """``(name, format_spec, conversion)`` of every replacement field; raises ValueError on bad braces."""
    return [(name, spec or "", conv) for _, name, spec, conv in Formatter().parse(template) if name is not None]


def order(names: Iterable[str], edges: Iterable[tuple[str, str]]) -> list[str]:
    """Topological order with ties broken by name, so a trajectory is always listed the same way."""
    waiting = {name: 0 for name in names}
    children: dict[str, list[str]] = {name: [] for name in waiting}
    for source, target in edges:
        waiting[target] += 1
        children[source].append(target)
    ready = [name for name, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    listed = []
    while ready:
        name = heapq.heappop(ready)
        listed.append(name)
        for child in children[name]:
            waiting[child] -= 1
            if waiting[child] == 0:
                heapq.heappush(ready, child)
    return listed


def step(node: Mapping[str, Any], values: Mapping[str, str], chat: Chat) -> Step:
    """Run one node on the values computed so far; the record is one trajectory entry."""
    inputs = {v: values[v] for v in sorted({name for name, _, _ in fields(node["template"])})}
    prompt = node["template"].format_map(inputs)
    overrides = {} if node.get("max_tokens") is None else {"max_tokens": node["max_tokens"]}
    reply = chat([{"role": "user", "content": prompt}], **overrides).strip()
    tool = node.get("tool")
    result = TOOLS[tool](reply) if tool else None
    return {"node": node["name"], "prompt": prompt, "inputs": inputs, "reply": reply, "tool": tool,
            "output": result.text if result else reply, "tool_error": result.error if result else None}


def run_traced(payload: Mapping[str, Any], inputs: Inputs, chat: Chat) -> tuple[str, list[Step]]:
    """The post-processed answer and every step that led to it. Templates read the whole input as
    ``{input}`` and, on a multi-field task, each field by its name."""
    nodes = {node["name"]: node for node in payload["nodes"]}
    values, trajectory = template_values(inputs), []
    for name in order(nodes, (tuple(edge) for edge in payload.get("edges", ()))):
        record = step(nodes[name], values, chat)
        values[name] = record["output"]
        trajectory.append(record)
    return postprocess(values[payload["output"]], payload.get("postprocess")), trajectory


def answer(payload: Mapping[str, Any], inputs: Inputs, chat: Chat) -> str:
    """A graph agent's post-processed answer (what exported packages call)."""
    return run_traced(payload, inputs, chat)[0]
