"""The registry of agent kinds: an open set, like strategies and metrics.

A kind is one module declaring an :class:`~agentopt.agents.base.AgentKind` plus a registration:
:func:`register_kind` from Python, or an ``agentopt.kinds`` entry point naming the ``AgentKind``
object (so Ray workers and the CLI find a plugin's kind without an import in user code).
"""

from collections.abc import Callable, Mapping
from importlib import import_module
from importlib.metadata import entry_points
from typing import Any

from agentopt.agents.base import Agent, AgentKind
from agentopt.agents.runtime.errors import AgentoptError

# The built-in kinds by name, each the module declaring it. A module is imported (and its kind registered)
# the first time a payload of that kind is read: the kinds load langchain-core and the LLM client, which
# commands that only list what the archive holds never need.
BUILTIN = {"prompt": "prompt", "code": "code_agent", "graph": "graph", "program": "program"}
KINDS: dict[str, AgentKind] = {}
ENTRY_POINTS = "agentopt.kinds"


def register_kind(kind: AgentKind) -> AgentKind:
    """Make ``kind`` known: campaigns, the archive's queries, reports and exports then handle it."""
    KINDS[kind.name] = kind
    return kind


def kind_of(payload: Mapping[str, Any]) -> AgentKind:
    """The kind a stored payload belongs to (``"kind"`` missing means prompt, as in the first archives)."""
    name = str(payload.get("kind", "prompt"))
    if name not in KINDS and name in BUILTIN:
        register_kind(import_module(f"agentopt.agents.{BUILTIN[name]}").KIND)
    if name not in KINDS:
        for point in entry_points(group=ENTRY_POINTS, name=name):
            register_kind(point.load())
    if name not in KINDS:
        raise AgentoptError(f"unknown agent kind {name!r}; known: {', '.join(BUILTIN | KINDS)} (register it with "
                            "agentopt.register_kind or an 'agentopt.kinds' entry point)")
    return KINDS[name]


def agent_from_payload(payload: Mapping[str, Any]) -> Agent:
    agent: Agent = kind_of(payload).model.model_validate(payload)
    return agent


def label(payload: Mapping[str, Any]) -> str:
    """The kind's one-line label; a kind this process does not know, or a payload its kind cannot read
    (written by another version), is shown by its kind's name."""
    try:
        return kind_of(payload).label(payload)
    except (AgentoptError, KeyError, TypeError, ValueError):
        return str(payload.get("kind"))


def answer(payload: Mapping[str, Any], inputs: Any, chat: Callable[..., str]) -> str:
    """Answer with any stored payload the way its exported package would."""
    return str(kind_of(payload).runtime.answer(payload, inputs, chat))
