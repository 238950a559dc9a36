"""How an agent cleans the model's answer, shared by the prompt and graph kinds. Its own module so
that neither kind imports the other: the kinds stay independent (import-linter checks it)."""

from pydantic import BaseModel, ConfigDict

from agentopt.agents.runtime.prompt_runtime import DEFAULT_POSTPROCESS


class PostProcess(BaseModel):
    """Answer extraction a tiny model needs; part of the agent, so it is searched and exported too."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    first_line: bool = DEFAULT_POSTPROCESS["first_line"]
    strip_prefixes: tuple[str, ...] = tuple(DEFAULT_POSTPROCESS["strip_prefixes"])
    strip_chars: str = DEFAULT_POSTPROCESS["strip_chars"]
