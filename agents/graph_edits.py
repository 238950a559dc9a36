"""Edits of a graph agent: pure functions from a graph and an edit to a new, validated graph.

Each edit keeps edges and template variables in step (adding an edge makes the target read the new
input; removing a node hands its readers its own input), then the result is rebuilt through
:class:`GraphAgent`'s validation. An edit that would leave a cycle, a dangling input, a lost
variable or a node that never reaches the output raises :class:`GraphError` with the reason and
changes nothing: the caller records it and keeps the graph it had.
"""

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from agentopt.agents.graph import GraphAgent, GraphError, Node, first_error, rebuilt, replaced, rewrite, variables
from agentopt.agents.runtime.graph_runtime import INPUT
from agentopt.agents.runtime.tools import ToolName


class _Edit(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AddNode(_Edit):
    """A new node whose output ``before`` reads (appended to its template as ``name: {name}``)."""

    op: Literal["add_node"]
    name: str
    template: str
    before: str
    tool: ToolName | None = None


class RemoveNode(_Edit):
    """Drop a node; its readers read its single input instead."""

    op: Literal["remove_node"]
    name: str


class EditNode(_Edit):
    op: Literal["edit_node"]
    name: str
    template: str


class SetTool(_Edit):
    op: Literal["set_tool"]
    name: str
    tool: ToolName | None


class AddEdge(_Edit):
    op: Literal["add_edge"]
    source: str
    target: str


class RemoveEdge(_Edit):
    op: Literal["remove_edge"]
    source: str
    target: str


Edit = Annotated[AddNode | RemoveNode | EditNode | SetTool | AddEdge | RemoveEdge, Field(discriminator="op")]
_EDIT: TypeAdapter[Edit] = TypeAdapter(Edit)


def parse_edit(data: Any) -> Edit:
    """An edit from JSON-like data (a proposer's reply); :class:`GraphError` when it is not one."""
    try:
        return _EDIT.validate_python(data)
    except ValidationError as exc:
        raise GraphError(f"not an edit: {first_error(exc)}") from None


def _var(name: str) -> str:
    return "{" + name + "}"


def _node(**fields: Any) -> Node:
    try:
        return Node.model_validate(fields)
    except ValidationError as exc:
        raise GraphError(f"bad node: {first_error(exc)}") from None


def apply_edit(agent: GraphAgent, edit: Edit) -> GraphAgent:
    edges = set(agent.edges)
    match edit:
        case AddNode(name=name, template=template, before=before, tool=tool):
            reader = agent.node(before)
            new = _node(name=name, template=template, tool=tool)
            inputs = {(v, name) for v in variables(template) - {INPUT}}
            nodes = replaced(agent, before, template=f"{reader.template}\n{name}: {_var(name)}") + [new]
            return rebuilt(agent, nodes, edges | inputs | {(name, before)})
        case RemoveNode(name=name):
            agent.node(name)
            preds = sorted(p for p, c in edges if c == name)
            if len(preds) > 1:
                raise GraphError(f"cannot remove node {name}: it reads {len(preds)} nodes, so its readers "
                                 "would not know which one to read instead")
            source = preds[0] if preds else INPUT
            readers = {c for p, c in edges if p == name}
            nodes = [n.model_copy(update={"template": n.template.replace(_var(name), _var(source))})
                     if n.name in readers else n for n in agent.nodes if n.name != name]
            kept = {(p, c) for p, c in edges if name not in (p, c)}
            rewired = {(source, c) for c in readers} if preds else set()
            output = agent.output if agent.output != name else (preds[0] if preds else name)
            return rebuilt(agent, nodes, kept | rewired, output)
        case EditNode(name=name, template=template):
            return rebuilt(agent, replaced(agent, name, template=template), edges)
        case SetTool(name=name, tool=tool):
            return rebuilt(agent, replaced(agent, name, tool=tool), edges)
        case AddEdge(source=source, target=target):
            reader = agent.node(target)
            nodes = replaced(agent, target, template=f"{reader.template}\n{source}: {_var(source)}")
            return rebuilt(agent, nodes, edges | {(source, target)})
        case RemoveEdge(source=source, target=target):
            if (source, target) not in edges:
                raise GraphError(f"there is no edge {source} -> {target}")
            nodes = replaced(agent, target, template=agent.node(target).template.replace(_var(source), ""))
            return rebuilt(agent, nodes, edges - {(source, target)})
    raise GraphError(f"unknown edit {edit!r}")


__all__ = ["AddEdge", "AddNode", "Edit", "EditNode", "RemoveEdge", "RemoveNode", "SetTool", "apply_edit", "parse_edit",
           "rewrite"]
