"""The registry of agent kinds: how a stored payload becomes a runnable agent again."""

from typing import Any

from agentopt.agents.base import Agent
from agentopt.agents.code_agent import CodeAgent
from agentopt.agents.errors import AgentoptError
from agentopt.agents.graph import GraphAgent
from agentopt.agents.prompt import PromptAgent

AGENT_KINDS: dict[str, type[PromptAgent] | type[CodeAgent] | type[GraphAgent]] = {
    "prompt": PromptAgent, "code": CodeAgent, "graph": GraphAgent}


def agent_from_payload(payload: dict[str, Any]) -> Agent:
    kind = payload.get("kind")
    if kind not in AGENT_KINDS:
        raise AgentoptError(f"unknown agent kind {kind!r}; known: {', '.join(AGENT_KINDS)}")
    return AGENT_KINDS[kind].model_validate(payload)
