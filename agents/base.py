"""The Agent protocol: what a campaign needs from any candidate, whatever its kind."""

from typing import Any, Protocol, runtime_checkable

from agentopt.agents.llm import LLMClient
from agentopt.agents.prompt_runtime import Inputs


@runtime_checkable
class Agent(Protocol):
    """A candidate: a JSON-serialisable payload plus the behaviour it encodes.

    ``canonical()`` is the text hashed for exact deduplication: two agents with the same canonical
    form behave identically, so the second is never evaluated.
    """

    kind: str

    def run(self, inputs: Inputs, llm: LLMClient) -> str: ...

    def payload(self) -> dict[str, Any]: ...

    def canonical(self) -> str: ...


@runtime_checkable
class Traced(Protocol):
    """An agent that reports what each of its steps did (a graph agent, node by node).

    The campaign stores the trace next to the answer, so a strategy can see where in the pipeline
    an example went wrong instead of only that it did (what language gradients are computed from).
    """

    def run_traced(self, inputs: Inputs, llm: LLMClient) -> tuple[str, list[dict[str, Any]]]: ...
