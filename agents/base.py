"""The Agent protocol: what a campaign needs from any candidate, whatever its kind; and
:class:`AgentKind`, what the rest of agentopt needs to know about a kind."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:  # annotations only: the client loads openai, the runtime langchain-core
    from agentopt.agents.models.llm import LLMClient
    from agentopt.agents.runtime.prompt_runtime import Inputs


@runtime_checkable
class Agent(Protocol):
    """A candidate: a JSON-serialisable payload plus the behaviour it encodes.

    ``canonical()`` is the text hashed for exact deduplication: two agents with the same canonical
    form behave identically, so the second is never evaluated.
    """

    @property
    def kind(self) -> str:
        """Which kind the agent is; read-only, as the agents' frozen models and literal kinds have it."""
        ...

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


@runtime_checkable
class Tunable(Protocol):
    """An agent whose behaviour is set by named texts: a prompt's instruction, a program's prompts,
    a graph's node templates. What the instruction-writing strategies (APE, OPRO, Optuna, symbolic
    learning's prompt step) rewrite, whatever the kind.

    ``with_text`` returns a new agent (never mutates) and raises ValueError for a text the agent
    cannot take, such as one that loses or invents a template variable.
    """

    def texts(self) -> dict[str, str]: ...

    def with_text(self, name: str, text: str) -> Any: ...


@runtime_checkable
class Demonstrated(Protocol):
    """An agent shown worked examples before its input (a prompt agent): strategies that pick
    demonstrations (APE's kept demos, Optuna's demo sets) only vary agents of this shape."""

    demos: tuple[Any, ...]

    def with_demos(self, demos: tuple[Any, ...]) -> Any: ...


@runtime_checkable
class Retrieving(Protocol):
    """An agent that picks ``retrieve`` worked examples per input from a pool (a prompt agent):
    what the reflective strategy's ``retrieve`` mutation turns on and tunes."""

    retrieve: int
    selector: str  # how inputs are compared: "lexical" or "embedding"

    def with_retrieval(self, pool: tuple[Any, ...], k: int, selector: Any = None) -> Any: ...


@runtime_checkable
class Rendered(Protocol):
    """An agent that can show the messages it would send for an input before any call (budget
    estimates read them); other agents are estimated from their texts."""

    def messages(self, inputs: Inputs) -> list[dict[str, str]]: ...


@runtime_checkable
class Checked(Protocol):
    """An agent that depends on something outside its payload (a program's module) and can check it,
    on a train example's inputs, before a campaign starts; ``check`` raises ConfigError with one line."""

    def check(self, inputs: Inputs) -> None: ...


Payload = Mapping[str, Any]


def _portable(payload: Payload) -> str | None:
    return None


@dataclass(frozen=True)
class AgentKind:
    """One kind of agent, declared once in its own module and registered with
    :func:`agentopt.agents.kinds.register_kind`: nothing else in agentopt branches on a kind's name.

    ``model`` builds the agent from a stored payload (``model.model_validate(payload)``, as a pydantic
    model does). ``runtime`` is a module, standard library, langchain-core and relative imports only, whose
    ``answer(payload, inputs, chat) -> str`` answers like the agent does: exported packages copy
    it and call it. ``label`` tells candidates apart in one short line (tables, lineage graphs);
    ``describe`` shows the agent as a reader of a report or a package card wants to see it (markdown).
    ``unexportable`` says why a payload cannot become a package (``None`` when it can).
    """

    name: str
    model: Any
    runtime: ModuleType
    label: Callable[[Payload], str]
    describe: Callable[[Payload], str]
    unexportable: Callable[[Payload], str | None] = _portable


def clip(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."
