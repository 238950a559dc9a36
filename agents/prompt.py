"""Prompt agents: an instruction, optional demonstrations and answer post-processing."""

import json
import re
import unicodedata
from typing import Any, Literal

from langchain_core.runnables import Runnable, RunnableLambda
from pydantic import BaseModel, ConfigDict, Field

from agentopt.agents import prompt_runtime
from agentopt.agents.llm import LLMClient


class Demo(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    input: str
    output: str


class PostProcess(BaseModel):
    """Answer extraction a tiny model needs; part of the agent, so it is searched and exported too."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    first_line: bool = prompt_runtime.DEFAULT_POSTPROCESS["first_line"]
    strip_prefixes: tuple[str, ...] = tuple(prompt_runtime.DEFAULT_POSTPROCESS["strip_prefixes"])
    strip_chars: str = prompt_runtime.DEFAULT_POSTPROCESS["strip_chars"]


def normalise_text(text: str) -> str:
    """Case, Unicode form and whitespace do not change what an instruction asks for."""
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text)).strip().lower()


class PromptAgent(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["prompt"] = "prompt"
    instruction: str = Field(min_length=1)
    demos: tuple[Demo, ...] = ()
    postprocess: PostProcess = PostProcess()

    def payload(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def canonical(self) -> str:
        data = self.payload()
        data["instruction"] = normalise_text(self.instruction)
        return json.dumps(data, sort_keys=True, ensure_ascii=False)

    def messages(self, input_text: str) -> list[dict[str, str]]:
        return prompt_runtime.to_openai(prompt_runtime.render(self.payload(), input_text))

    def run(self, input_text: str, llm: LLMClient) -> str:
        reply = llm.chat(self.messages(input_text))
        return prompt_runtime.postprocess(reply.text, self.postprocess.model_dump())

    def as_runnable(self, llm: LLMClient) -> Runnable[Any, str]:
        """A langchain-core Runnable taking a string or ``{"input": ...}``."""
        return RunnableLambda(lambda x: self.run(x["input"] if isinstance(x, dict) else str(x), llm))

    def with_instruction(self, instruction: str) -> "PromptAgent":
        return self.model_copy(update={"instruction": instruction})
