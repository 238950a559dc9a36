"""Code agents: a ``forward(task)`` function written against :mod:`agentopt.agents.runtime.code_framework`.

The code always runs in the sandbox (:mod:`agentopt.agents.runtime.sandbox`), never in this process: its
LLM calls come back here through the proxy and go through the ordinary client, so the cache, the
budget and the API key never leave the parent (and the key is masked in whatever the agent sends
back, should it have got hold of it anyway). Whatever goes wrong in the agent is raised as
:class:`AgentRunError` with the sandbox's reason, which evaluation records as an error.
"""

import json
from typing import Any, Literal

from langchain_core.runnables import Runnable, RunnableLambda
from pydantic import BaseModel, ConfigDict, Field

from agentopt.agents.runtime import code_framework
from agentopt.agents.base import AgentKind, Payload, clip
from agentopt.agents.runtime.code_framework import run_agent_code
from agentopt.agents.models.llm import LLMClient
from agentopt.agents.runtime.prompt_runtime import Inputs, runnable_inputs
from agentopt.agents.runtime.sandbox import Limits
from agentopt.agents.hashing import code_canonical


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

    def run(self, inputs: Inputs, llm: LLMClient, limits: Limits = Limits()) -> str:
        return run_agent_code(self.code, inputs, lambda messages, **params: llm.chat(messages, **params).text, limits)

    def as_runnable(self, llm: LLMClient) -> Runnable[Any, str]:
        """A langchain-core Runnable taking a string or a mapping of input fields."""
        return RunnableLambda(lambda x: self.run(runnable_inputs(x), llm))


def _describe(payload: Payload) -> str:
    return (f"Code agent `{payload['name']}` ({payload.get('thought') or 'no description'}); it runs in the "
            f"bundled sandbox.\n\n```python\n{payload['code'].strip()}\n```")


KIND = AgentKind("code", CodeAgent, code_framework, lambda payload: clip(str(payload.get("name", "code"))), _describe)
