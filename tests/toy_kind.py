"""A toy agent kind and a strategy for it, defined outside agentopt and registered through the
public API only: what a plugin author writes."""

import json
from typing import Any, ClassVar, Literal

import toy_runtime
from pydantic import BaseModel, ConfigDict

import agentopt
from agentopt.optimizer.strategies.base import GeneratorStrategy, Search, Trial


class EchoAgent(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["echo"] = "echo"
    prefix: str = ""

    def payload(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def canonical(self) -> str:
        return json.dumps(self.payload(), sort_keys=True)

    def run(self, inputs: Any, llm: Any) -> str:
        return toy_runtime.answer(self.payload(), inputs, lambda *a, **k: "")


KIND = agentopt.AgentKind("echo", EchoAgent, toy_runtime, lambda p: f"echo with {p['prefix']!r}",
                          lambda p: f"Echoes its input after the prefix `{p['prefix']}`.")


class EchoSearch(GeneratorStrategy):
    """Tries a few prefixes on the validation split; the empty one echoes exactly."""

    name: ClassVar[str] = "echo_search"

    def search(self) -> Search:
        ids = tuple(e.id for e in self.ctx.val)
        yield [Trial(EchoAgent(prefix=p), "val", ids, rationale=f"prefix {p!r}") for p in ("one ", "", "two ")]


def register() -> None:
    agentopt.register_kind(KIND)
    agentopt.register_strategy(EchoSearch)
