"""Prompt agents: an instruction, optional demonstrations and answer post-processing."""

import json
import re
import unicodedata
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from agentopt.agents.runtime import prompt_runtime
from agentopt.agents.base import Agent, AgentKind, Payload, clip
from agentopt.agents.postprocess import PostProcess
from agentopt.agents.runtime.prompt_runtime import Embed, Inputs, runnable_inputs

if TYPE_CHECKING:  # the client loads openai, Runnable langchain-core: reading a stored prompt agent needs neither
    from langchain_core.runnables import Runnable

    from agentopt.agents.models.llm import LLMClient

Selector = Literal["lexical", "embedding"]


class Demo(BaseModel):
    """A worked example shown before the input; ``input`` is a text or, on a multi-field task, its fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input: str | dict[str, str]
    output: str


def normalise_text(text: str) -> str:
    """Case, Unicode form and whitespace do not change what an instruction asks for."""
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text)).strip().lower()


class PromptAgent(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["prompt"] = "prompt"
    instruction: str = Field("Answer the following.", min_length=1)
    demos: tuple[Demo, ...] = ()
    postprocess: PostProcess = PostProcess()
    template: str | None = Field(None, description="the user turn, with {field} for each input field and {input} "
                                                   "for all of them as text (default: the input as text)")
    demo_pool: tuple[Demo, ...] = Field((), description="worked examples to pick from per input")
    retrieve: int = Field(0, ge=0, description="demonstrations picked from demo_pool for each input, the most "
                                               "similar to it first (after the fixed demos)")
    selector: Selector = Field("lexical", description="how inputs are compared: lexical (words and character "
                                                      "trigrams, no service) or embedding (the embedder role)")

    @field_validator("template")
    @classmethod
    def _plain_fields(cls, template: str | None) -> str | None:
        if template is not None:
            prompt_runtime.template_fields(template)
        return template

    def payload(self) -> dict[str, Any]:
        """The JSON form; without a template, a demonstration pool or an embedding selector it is exactly
        what agents stored before those existed, so their content hashes (and resumes of their
        campaigns) are unchanged."""
        unset = {"template"} if self.template is None else set()
        unset |= {"demo_pool", "retrieve"} if not self.demo_pool and not self.retrieve else set()
        unset |= {"selector"} if self.selector == "lexical" else set()
        return self.model_dump(mode="json", exclude=unset or None)

    def canonical(self) -> str:
        data = self.payload()
        data["instruction"] = normalise_text(self.instruction)
        return json.dumps(data, sort_keys=True, ensure_ascii=False)

    def messages(self, inputs: Inputs, embed: Embed | None = None) -> list[dict[str, str]]:
        """The messages for ``inputs``. Given no ``embed``, an agent retrieving by embeddings shows the
        lexical picks instead (as many, as long): what budget estimates and previews need before any
        embedder runs. Answering never does that (:meth:`run`)."""
        payload = self.payload()
        if embed is None:
            payload.pop("selector", None)
        return prompt_runtime.to_openai(prompt_runtime.render(payload, inputs, embed))

    def run(self, inputs: Inputs, llm: "LLMClient") -> str:
        """One answer; an embedding selector embeds through ``llm.embedder`` (cached, like every call)
        and fails, as the example's error, when the client carries none."""
        embed = llm.embedder.embed if llm.embedder is not None else None
        messages = prompt_runtime.to_openai(prompt_runtime.render(self.payload(), inputs, embed))
        return prompt_runtime.postprocess(llm.chat(messages).text, self.postprocess.model_dump())

    def as_runnable(self, llm: "LLMClient") -> "Runnable[Any, str]":
        """A langchain-core Runnable taking a string or a mapping of input fields."""
        from langchain_core.runnables import RunnableLambda

        return RunnableLambda(lambda x: self.run(runnable_inputs(x), llm))

    def with_instruction(self, instruction: str) -> "PromptAgent":
        return self.model_copy(update={"instruction": instruction})

    def texts(self) -> dict[str, str]:
        """The one text strategies rewrite, written as a template that reads no variable (its braces
        doubled); the user-turn template is the task's shape and is kept as it is."""
        return {"instruction": self.instruction.replace("{", "{{").replace("}", "}}")}

    def with_text(self, name: str, text: str) -> "PromptAgent":
        if name != "instruction":
            raise ValueError(f"a prompt agent has no text {name!r}")
        try:
            return self.with_instruction(text.format())
        except (KeyError, IndexError):
            raise ValueError(f"invents a variable: an instruction reads none ({text[:60]!r})") from None

    def with_demos(self, demos: tuple[Demo, ...]) -> "PromptAgent":
        return self.model_copy(update={"demos": tuple(demos)})

    def with_retrieval(self, pool: tuple[Demo, ...], k: int, selector: Selector | None = None) -> "PromptAgent":
        """This agent picking ``k`` demonstrations per input from ``pool``, compared by ``selector``
        (default: the one it has)."""
        return self.model_copy(update={"demo_pool": tuple(pool), "retrieve": k, "selector": selector or self.selector})


def embeds(agent: Agent) -> bool:
    """Whether ``agent`` picks its demonstrations by embeddings, and so needs the embedder role to answer."""
    return agent.payload().get("selector") == "embedding"


def _label(payload: Payload) -> str:
    demos = len(payload.get("demos", []))
    retrieved = payload.get("retrieve", 0)
    return (clip(str(payload.get("instruction", ""))) + (f" (+{demos} demos)" if demos else "")
            + (f" (+{retrieved} of {len(payload.get('demo_pool', []))} retrieved)" if retrieved else ""))


def _describe(payload: Payload) -> str:
    demos = "\n".join(f"- `{prompt_runtime.input_text(d['input'])}` → `{d['output']}`" for d in payload.get("demos", []))
    template = f"\n\nUser turn: `{payload['template']}`" if payload.get("template") else ""
    retrieved = (f"\n\nRetrieved per input: the {payload['retrieve']} most similar of a pool of "
                 f"{len(payload.get('demo_pool', []))} worked examples ({payload.get('selector', 'lexical')})"
                 if payload.get("retrieve") else "")
    return (f"Instruction:\n\n> {payload['instruction']}{template}\n\nDemonstrations: "
            f"{len(payload.get('demos', []))}\n{demos}{retrieved}")


KIND = AgentKind("prompt", PromptAgent, prompt_runtime, _label, _describe)
