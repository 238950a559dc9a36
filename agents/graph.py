"""Graph agents: a DAG of prompt nodes, each optionally handing its reply to a tool.

A node's template reads the task input as ``{input}`` and each predecessor's output as
``{<predecessor name>}``; edges and template variables must agree exactly, so a pipeline is never
silently disconnected (an edge nobody reads, or a variable nobody writes). Nodes run in topological
order and every step is recorded (node, rendered prompt, inputs, reply, output): the trajectory the
symbolic learner back-propagates through. The output node's text, post-processed like a prompt
agent's answer, is the agent's answer.
"""

import json
import re
from collections.abc import Callable, Mapping
from typing import Any, Literal

import networkx as nx
from langchain_core.runnables import Runnable, RunnableLambda, RunnablePassthrough
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from agentopt.agents.runtime import graph_runtime, prompt_runtime
from agentopt.agents.base import AgentKind, Payload, clip
from agentopt.agents.runtime.errors import AgentoptError
from agentopt.agents.runtime.graph_runtime import INPUT, Step
from agentopt.agents.models.llm import LLMClient
from agentopt.agents.postprocess import PostProcess
from agentopt.agents.runtime.prompt_runtime import Inputs, runnable_inputs
from agentopt.agents.runtime.tools import ToolName
from agentopt.agents.hashing import graph_canonical


def _chat(llm: LLMClient) -> graph_runtime.Chat:
    return lambda messages, **overrides: llm.chat(messages, **overrides).text


class GraphError(AgentoptError):
    """A graph that is not a valid pipeline; the message names the first problem found."""


def first_error(exc: ValidationError) -> str:
    """Pydantic's first complaint as one line: where, then what."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return (f"{where}: " if where else "") + str(first["msg"]).removeprefix("Value error, ")


def variables(template: str) -> set[str]:
    """The names a template reads. Only plain names: ``{a.b}``, ``{a[0]}`` or ``{a!r}`` are refused,
    because a rewritten prompt must not be able to reach into an input's attributes."""
    try:
        found = graph_runtime.fields(template)
    except ValueError as exc:
        raise GraphError(f"template does not parse ({exc}); write literal braces as {{{{ and }}}}") from exc
    for name, spec, conv in found:
        if not name.isidentifier() or spec or conv:
            raise GraphError(f"template field {{{name}}} is not a plain variable name")
    return {name for name, _, _ in found}


class Node(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,39}$")
    template: str = Field(min_length=1)
    tool: ToolName | None = None
    max_tokens: int | None = Field(None, ge=1, description="reply length for this node (default: the role's)")

    def spec(self) -> dict[str, Any]:
        """What the node does, whitespace-normalised and without its name (the hash's unit)."""
        return {"template": re.sub(r"\s+", " ", self.template).strip(), "tool": self.tool,
                "max_tokens": self.max_tokens}


def problem(nodes: tuple[Node, ...], edges: tuple[tuple[str, str], ...], output: str,
            inputs: tuple[str, ...] = ()) -> str | None:
    """The first reason these parts are not a runnable pipeline, or ``None`` when they are."""
    names = [n.name for n in nodes]
    if len(set(names)) != len(names):
        return f"duplicate node name {next(n for n in names if names.count(n) > 1)!r}"
    if clash := sorted({INPUT, *inputs} & set(names)):
        return f"{clash[0]!r} is a task input and cannot name a node"
    for source, target in edges:
        if source not in names or target not in names:
            return f"edge {source} -> {target} refers to a node that does not exist"
    graph = nx.DiGraph(edges)
    graph.add_nodes_from(names)
    if not nx.is_directed_acyclic_graph(graph):
        return "cycle: " + " -> ".join(a for a, _ in nx.find_cycle(graph))
    if output not in names:
        return f"output node {output!r} does not exist"
    for node in nodes:
        try:
            used = variables(node.template)
        except GraphError as exc:
            return f"node {node.name}: {exc}"
        preds = set(graph.predecessors(node.name))
        if dangling := sorted(used - preds - {INPUT, *inputs}):
            return f"dangling input {{{dangling[0]}}} in node {node.name}: no edge brings it"
        if unread := sorted(preds - used):
            return f"lost template variable {{{unread[0]}}} in node {node.name}: edge {unread[0]} -> {node.name} " \
                   "is never read"
        if not used:
            return f"node {node.name} reads nothing: its template has no variable"
    reaching = nx.ancestors(graph, output) | {output}
    if dead := sorted(set(names) - reaching):
        return f"node {dead[0]} never reaches the output node {output}"
    return None


class GraphAgent(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["graph"] = "graph"
    nodes: tuple[Node, ...] = Field(min_length=1)
    edges: tuple[tuple[str, str], ...] = ()
    output: str
    postprocess: PostProcess = PostProcess()
    inputs: tuple[str, ...] = Field((), description="input fields of a multi-field task that templates read by name "
                                                    "(``{input}`` is always the whole input)")

    @model_validator(mode="after")
    def _valid(self) -> "GraphAgent":
        if (reason := problem(self.nodes, self.edges, self.output, self.inputs)) is not None:
            raise ValueError(reason)
        return self

    @classmethod
    def build(cls, **fields: Any) -> "GraphAgent":
        """Construct, raising :class:`GraphError` with the one-line reason instead of pydantic's report."""
        try:
            return cls.model_validate(fields)
        except ValidationError as exc:
            raise GraphError(first_error(exc)) from None

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise GraphError(f"no node {name!r}; nodes: {', '.join(n.name for n in self.nodes)}")

    def graph(self) -> "nx.DiGraph[str]":  # quoted: subscriptable in the stubs only
        graph: nx.DiGraph[str] = nx.DiGraph(self.edges)
        graph.add_nodes_from(n.name for n in self.nodes)
        return graph

    def order(self) -> list[str]:
        return graph_runtime.order((n.name for n in self.nodes), self.edges)

    def payload(self) -> dict[str, Any]:
        """The JSON form; a graph reading no named field stores what it did before fields existed."""
        return self.model_dump(mode="json", exclude={"inputs"} if not self.inputs else None)

    def canonical(self) -> str:
        """The graph's structure and node specs, independent of listing order and whitespace."""
        shape = graph_canonical({n.name: n.spec() for n in self.nodes}, self.edges)
        named = {"inputs": sorted(self.inputs)} if self.inputs else {}
        return json.dumps({"kind": self.kind, "graph": shape, "output": self.output,
                           "postprocess": self.postprocess.model_dump(mode="json"), **named}, sort_keys=True)

    def texts(self) -> dict[str, str]:
        return {node.name: node.template for node in self.nodes}

    def with_text(self, name: str, text: str) -> "GraphAgent":
        """Node ``name`` with a new template reading exactly the variables the old one read."""
        try:
            return rewrite(self, name, text)
        except GraphError as exc:
            raise ValueError(str(exc)) from None

    def step(self, name: str, values: Mapping[str, str], llm: LLMClient) -> Step:
        """Run one node on the values computed so far; the record is one trajectory entry."""
        return graph_runtime.step(self.node(name).model_dump(), values, _chat(llm))

    def run_traced(self, inputs: Inputs, llm: LLMClient) -> tuple[str, list[Step]]:
        return graph_runtime.run_traced(self.payload(), inputs, _chat(llm))

    def run(self, inputs: Inputs, llm: LLMClient) -> str:
        return self.run_traced(inputs, llm)[0]

    def as_runnable(self, llm: LLMClient) -> Runnable[Any, str]:
        """A langchain-core Runnable taking a string or a mapping of input fields: one ``assign`` per
        topological generation, so independent nodes run in parallel under langchain too."""

        def output_of(name: str) -> Callable[[Mapping[str, str]], str]:
            """Node ``name``'s step, bound to that name (a lambda in the loop would see the last one)."""
            return lambda values: self.step(name, values, llm)["output"]

        chain: Runnable[Any, Any] = RunnableLambda(lambda x: prompt_runtime.template_values(runnable_inputs(x)))
        for generation in nx.topological_generations(self.graph()):
            chain = chain | RunnablePassthrough.assign(**{name: RunnableLambda(output_of(name))
                                                          for name in sorted(generation)})
        return chain | RunnableLambda(lambda values: prompt_runtime.postprocess(values[self.output],
                                                                               self.postprocess.model_dump()))


def replaced(agent: GraphAgent, name: str, **update: Any) -> list[Node]:
    """``agent``'s nodes with node ``name``'s fields updated; :class:`GraphError` when there is none."""
    agent.node(name)
    return [n.model_copy(update=update) if n.name == name else n for n in agent.nodes]


def rebuilt(agent: GraphAgent, nodes: list[Node], edges: set[tuple[str, str]], output: str | None = None) -> GraphAgent:
    """``agent``'s pipeline with new nodes and edges, validated again: what every edit returns. Edges
    are listed sorted, so an edit gives the same payload whatever order its set held them in."""
    return GraphAgent.build(nodes=tuple(nodes), edges=tuple(sorted(edges)), output=output or agent.output,
                            postprocess=agent.postprocess)


def rewrite(agent: GraphAgent, name: str, template: str) -> GraphAgent:
    """The prompt optimizer's update (:meth:`GraphAgent.with_text`): a node's new template must read
    exactly the variables the old one read, so rewording a prompt can never rewire the pipeline.
    Here rather than in :mod:`.graph_edits`, which builds on this module and is not imported by it."""
    old, new = variables(agent.node(name).template), variables(template)
    if lost := sorted(old - new):
        raise GraphError(f"lost template variable {{{lost[0]}}} in the rewrite of node {name}")
    if extra := sorted(new - old):
        raise GraphError(f"dangling input {{{extra[0]}}} in the rewrite of node {name}: it did not read it before")
    return rebuilt(agent, replaced(agent, name, template=template), set(agent.edges))


def _label(payload: Payload) -> str:
    tools = {n["name"]: n.get("tool") for n in payload.get("nodes", [])}
    flow: nx.DiGraph[str] = nx.DiGraph([tuple(e) for e in payload.get("edges", [])])
    flow.add_nodes_from(tools)
    steps = (name + (f"[{tools[name]}]" if tools.get(name) else "") for name in nx.lexicographical_topological_sort(flow))
    return clip("graph: " + " → ".join(steps))


def _describe(payload: Payload) -> str:
    nodes = {n["name"]: n for n in payload["nodes"]}
    steps = [f"{i + 1}. `{name}`" + (f" → tool `{nodes[name]['tool']}`" if nodes[name].get("tool") else "")
             + f"\n\n```text\n{nodes[name]['template'].strip()}\n```"
             for i, name in enumerate(graph_runtime.order(nodes, (tuple(e) for e in payload.get("edges", []))))]
    return f"Graph agent, nodes in the order they run; `{payload['output']}` gives the answer.\n\n" + "\n\n".join(steps)


KIND = AgentKind("graph", GraphAgent, graph_runtime, _label, _describe)
