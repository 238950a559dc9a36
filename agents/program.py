"""Program agents: the user's own program, whose named texts (its prompts) are what is optimised.

As GEPA's adapter does for any system: agentopt never rewrites the program, only the texts it is
called with. A program is a function ``program(params, inputs, chat) -> str`` or a langchain-core
chain (:func:`from_langchain`), named by ``module:attribute`` so Ray workers and exported packages
import it, or kept for this Python session when it lives nowhere importable.
"""

import hashlib
import json
import re
import sys
from typing import Any, Literal

from langchain_core.runnables import Runnable, RunnableLambda
from pydantic import BaseModel, ConfigDict, Field, field_validator

from agentopt.agents.runtime import program_runtime
from agentopt.agents.base import AgentKind, Payload, clip
from agentopt.agents.runtime.errors import ConfigError
from agentopt.agents.models.llm import LLMClient
from agentopt.agents.runtime.program_runtime import SESSION, SESSION_PROGRAMS, ChatAdapter, ForeignModelError, ProgramError
from agentopt.agents.runtime.prompt_runtime import Inputs, runnable_inputs, template_fields


def _chat(llm: LLMClient) -> program_runtime.Chat:
    return lambda messages, **overrides: llm.chat(messages, **overrides).text


class ProgramAgent(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["program"] = "program"
    entry: str = Field(description="module:function or module:chain (a langchain-core Runnable)")
    params: dict[str, str] = Field(min_length=1, description="the program's named texts (its prompts)")

    @field_validator("entry")
    @classmethod
    def _module_attribute(cls, entry: str) -> str:
        if not re.fullmatch(r"session:[\w.-]+|[A-Za-z_][\w.]*:[A-Za-z_][\w.]*", entry):
            raise ValueError(f"write the program as module:function or module:chain, not {entry!r}")
        return entry

    @field_validator("params")
    @classmethod
    def _plain_fields(cls, params: dict[str, str]) -> dict[str, str]:
        for name, text in params.items():
            try:
                template_fields(text)
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from None
        return params

    def payload(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def canonical(self) -> str:
        """Whitespace inside a text does not change what the program is told."""
        texts = {name: re.sub(r"\s+", " ", text).strip() for name, text in self.params.items()}
        return json.dumps({"kind": self.kind, "entry": self.entry, "params": texts}, sort_keys=True, ensure_ascii=False)

    def run(self, inputs: Inputs, llm: LLMClient) -> str:
        return program_runtime.answer(self.payload(), inputs, _chat(llm))

    def texts(self) -> dict[str, str]:
        return dict(self.params)

    def with_text(self, name: str, text: str) -> "ProgramAgent":
        """The program with ``name`` set to ``text``; a text that loses or invents a ``{variable}``
        is refused (ValueError), since the program fills exactly the variables it was written with."""
        if name not in self.params:
            raise ValueError(f"the program has no text {name!r}")
        before, after = set(template_fields(self.params[name])), set(template_fields(text))
        if before != after:
            change = sorted(after - before) or sorted(before - after)
            what = "invents" if after - before else "loses"
            raise ValueError(f"{what} the variable {{{change[0]}}} of {name}")
        return self.model_copy(update={"params": {**self.params, name: text}})

    def check(self, inputs: Inputs) -> None:
        """Import the program, for a chain compare its templates with ``params``, and run it once on
        ``inputs`` with a model that answers nothing and costs nothing: a variable the task does not
        provide (a KeyError), or a model of its own that it starts (refused, see ``ModelGuard``), is
        one :class:`ConfigError` line now, before anything is written or paid."""
        try:
            program = program_runtime.load(self.entry)
            if isinstance(program, Runnable):
                _match(self.entry, program_runtime.chain_texts(program), self.params)
        except ProgramError as exc:
            raise ConfigError(str(exc)) from None
        try:
            program_runtime.answer(self.payload(), inputs, lambda messages, **_: "")
        except KeyError as exc:
            reason = str(exc.args[0] if exc.args else exc).splitlines()[0]
            raise ConfigError(f"program {self.entry!r} reads a field the task does not have: {reason}") from None
        except ForeignModelError as exc:
            raise ConfigError(f"program {self.entry!r}: {exc}") from None
        except Exception:  # noqa: BLE001, S110 - an empty reply may upset a program that works on real ones
            pass

    def as_runnable(self, llm: LLMClient) -> Runnable[Any, Any]:
        """A chain comes back as the same chain with these texts and ``llm`` as its model; a function
        as a Runnable taking a string or a mapping of input fields."""
        program = program_runtime.load(self.entry)
        if isinstance(program, Runnable):
            return program_runtime.bind(program, self.params, ChatAdapter(chat=_chat(llm)))
        return RunnableLambda(lambda x: self.run(runnable_inputs(x), llm))


def _match(entry: str, found: dict[str, str], params: dict[str, str]) -> None:
    if set(found) != set(params):
        missing, unknown = sorted(set(found) - set(params)), sorted(set(params) - set(found))
        raise ConfigError(f"program {entry!r}: params do not match its prompt templates"
                          + (f"; missing {', '.join(missing)}" if missing else "")
                          + (f"; unknown {', '.join(unknown)}" if unknown else ""))


def from_langchain(chain: "Runnable[Any, Any] | str", name: str | None = None) -> ProgramAgent:
    """A program agent for a langchain-core chain, its prompt templates as the texts to optimise.

    ``chain`` is the Runnable or its ``module:attribute``. A Runnable found as a module attribute is
    named by it (Ray workers and exported packages import it); one that lives only in this session
    (a notebook, a script's ``__main__``) is kept here and shipped to this campaign's workers, and
    cannot be exported. Raises :class:`ConfigError` for a chain agentopt cannot run as written. A
    model the chain reaches where agentopt cannot see it (behind a method, a callable object, a
    partial, a module attribute, or built inside a function) is refused when it starts: that example
    fails with the step named, and the model never runs.
    """
    entry = chain if isinstance(chain, str) else _importable(chain)
    try:
        program = program_runtime.load(entry) if entry else chain
        if not isinstance(program, Runnable):
            raise ProgramError(f"{entry} is not a langchain-core Runnable")
        texts = program_runtime.chain_texts(program)
    except ProgramError as exc:
        raise ConfigError(str(exc)) from None
    if not entry:
        if name is not None and not re.fullmatch(r"[\w.-]+", name):
            raise ConfigError(f"name {name!r}: use letters, digits, '_', '.' or '-'")
        skeleton = program_runtime.bind(program, texts, ChatAdapter())  # the user's model is not kept
        digest = hashlib.sha256(repr(skeleton).encode()).hexdigest()[:12]  # templates and structure
        entry = f"{SESSION}{name or 'chain'}-{digest}"
        SESSION_PROGRAMS[entry] = skeleton
    return ProgramAgent(entry=entry, params=texts)


def _importable(obj: object) -> str:
    """``module:attribute`` where ``obj`` is a module-level attribute of an imported module other than
    the running script (``__main__``, also listed as ``__mp_main__``), else ""."""
    main = sys.modules.get("__main__")
    for module_name, module in list(sys.modules.items()):
        if (module is None or module is main or not getattr(module, "__file__", None)
                or module_name.startswith(("__", "builtins", "agentopt", "langchain"))):
            continue
        for attr, value in list(getattr(module, "__dict__", {}).items()):
            if value is obj and attr.isidentifier() and not attr.startswith("_"):
                return f"{module_name}:{attr}"
    return ""


def _label(payload: Payload) -> str:
    first = next(iter(payload.get("params", {}).values()), "")
    return clip(f"{payload.get('entry', '?')}: {' '.join(str(first).split())}")


def _describe(payload: Payload) -> str:
    entry = str(payload["entry"])
    where = ("It was defined in the Python session that optimised it and runs only there."
             if entry.startswith(SESSION) else
             f"The package imports `{entry}`: that module must be installed or on `PYTHONPATH` where it runs.")
    texts = "\n".join(f"- `{name}`:\n\n  > {' '.join(text.split())}" for name, text in payload["params"].items())
    return f"Program `{entry}`, called with these optimised texts. {where}\n\n{texts}"


def _unexportable(payload: Payload) -> str | None:
    if str(payload["entry"]).startswith(SESSION):
        return ("its program lives only in the Python session that optimised it; define the chain or function in "
                "a module and optimise from_langchain('module:chain') or ProgramAgent(entry='module:function')")
    return None


KIND = AgentKind("program", ProgramAgent, program_runtime, _label, _describe, _unexportable)
