"""Code agents: a ``forward(task)`` function written against :mod:`agentopt.agents.code_framework`.

The code always runs in the sandbox (:mod:`agentopt.agents.sandbox`), never in this process: its
LLM calls come back here through the proxy and go through the ordinary client, so the cache, the
budget and the API key never leave the parent. Whatever goes wrong in the agent is raised as
:class:`AgentRunError` with the sandbox's reason, which evaluation records as an error.
"""

import json
from typing import Any, Literal

from langchain_core.runnables import Runnable, RunnableLambda
from pydantic import BaseModel, ConfigDict, Field

from agentopt.agents.code_framework import FRAMEWORK
from agentopt.agents.errors import AgentoptError
from agentopt.agents.llm import LLMClient
from agentopt.agents.sandbox import Limits, run_sandboxed
from agentopt.archive.hashing import code_canonical

SAMPLING_PARAMS = ("temperature", "max_tokens")  # what agent code may set on a call; the rest is the role's


class AgentRunError(AgentoptError):
    """A code agent failed in the sandbox (exception, limit, blocked action); the message says why."""


class CodeAgent(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["code"] = "code"
    name: str = Field(min_length=1)
    thought: str = ""
    code: str = Field(min_length=1)

    def payload(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def canonical(self) -> str:
        """Only the code's AST: a new name, thought, comment or formatting is not a new agent."""
        return json.dumps({"kind": self.kind, "code": code_canonical(self.code)})

    def run(self, input_text: str, llm: LLMClient, limits: Limits = Limits()) -> str:
        def handler(request: dict[str, Any]) -> str:
            params = {k: request[k] for k in SAMPLING_PARAMS if k in request}
            return llm.chat(request["messages"], sample=int(request.get("sample", 0)), **params).text

        result = run_sandboxed(FRAMEWORK + "\n" + self.code, "forward", [input_text], handler, limits)
        if not result.ok:
            raise AgentRunError(result.error or f"{result.kind}: the agent failed")
        return "" if result.value is None else str(result.value)

    def as_runnable(self, llm: LLMClient) -> Runnable[Any, str]:
        """A langchain-core Runnable taking a string or ``{"input": ...}``."""
        return RunnableLambda(lambda x: self.run(x["input"] if isinstance(x, dict) else str(x), llm))
