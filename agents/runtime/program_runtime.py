"""How a program agent runs: the user's own program, called with the texts agentopt optimises.

A program is either a function ``program(params, inputs, chat) -> str`` (``params`` maps each
named text, its prompts, to its current value; ``chat(messages) -> str`` is the only way it should
reach a model, so the cache, the budgets and the gate apply), or a langchain-core Runnable chain,
whose prompt templates are the texts and whose chat model is swapped for ``chat``; any other model
the program starts is refused (:class:`ModelGuard`). The standard library and langchain-core only,
because ``agentopt export`` copies this module into packages: the campaign and the shipped agent run
the program with the very same code.
"""

import importlib
import inspect
import logging
import sys
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from itertools import count
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models import BaseChatModel, BaseLanguageModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.prompts import ChatPromptTemplate, PromptTemplate
from langchain_core.runnables import (
    Runnable,
    RunnableAssign,
    RunnableLambda,
    RunnableParallel,
    RunnablePassthrough,
    RunnableSequence,
    RunnableWithFallbacks,
)
from langchain_core.runnables.base import RunnableBindingBase
from langchain_core.runnables.config import var_child_runnable_config
from langchain_core.tracers.context import register_configure_hook

Chat = Callable[..., str]
"""``chat(messages, **sampling_overrides) -> reply text``, messages as OpenAI-style dicts."""
SESSION = "session:"
SESSION_PROGRAMS: dict[str, Any] = {}
"""Programs that live only in this Python session (a chain built in a notebook), by entry name."""
_ROLES = {"human": "user", "ai": "assistant", "system": "system"}
_ADAPTER_TYPE = "agentopt"


class ProgramError(ValueError):
    """A program agentopt cannot run or optimise; the message names the step and the reason."""


class ForeignModelError(ProgramError):
    """The program started a model other than agentopt's: refused before it ran."""


def load(entry: str) -> Any:
    """The function or Runnable ``entry`` names: ``module:attribute`` (imported from the working
    directory or the installed packages) or a program registered in this session."""
    if entry.startswith(SESSION):
        if entry not in SESSION_PROGRAMS:
            raise ProgramError(f"program {entry!r} was defined in the Python session that optimised it; define it "
                               "in an importable module (module:attribute) to run it anywhere else")
        return SESSION_PROGRAMS[entry]
    module_name, _, attr = entry.partition(":")
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")  # the working directory, as `python -m` has it (a console script does not)
    try:
        found: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            found = getattr(found, part)
    except Exception as exc:  # noqa: BLE001 - any import failure is the user's program path to fix
        raise ProgramError(f"program {entry!r} does not import ({type(exc).__name__}: {exc})") from None
    if not isinstance(found, Runnable) and not callable(found):
        raise ProgramError(f"program {entry!r} is neither a function nor a langchain-core Runnable")
    return found


class ChatAdapter(BaseChatModel):
    """agentopt's client as a langchain-core chat model: what replaces the chain's own model.
    Without ``chat`` it is a placeholder (a chain kept for later, with no model bound)."""

    chat: Any = None

    @property
    def _llm_type(self) -> str:
        return _ADAPTER_TYPE

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None,
                  **kwargs: Any) -> ChatResult:
        if self.chat is None:
            raise ProgramError("this chain has no model bound; run it through agentopt")
        wire = [{"role": _ROLES.get(m.type, "user"), "content": str(m.content)} for m in messages]
        if stop or kwargs:
            raise ProgramError(f"the chain passes {', '.join(['stop'] * bool(stop) + sorted(kwargs))} to its model; "
                               "agentopt's model takes the task role's sampling settings only")
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=self.chat(wire)))])


def _models_in(value: Any, depth: int = 0) -> Iterator[Any]:
    """Language models reachable from ``value``: itself, a Runnable's parts, a container's items."""
    if depth > 6:
        return
    if isinstance(value, BaseLanguageModel):
        yield value
    elif isinstance(value, RunnableLambda):
        func = getattr(value, "func", None) or getattr(value, "afunc", None)
        closure = inspect.getclosurevars(func) if inspect.isfunction(func) else None
        for inner in ({**closure.nonlocals, **closure.globals}.values() if closure else ()):
            yield from _models_in(inner, depth + 1)
    elif isinstance(value, Runnable):
        for inner in vars(value).values():
            yield from _models_in(inner, depth + 1)
    elif isinstance(value, Mapping):
        for inner in value.values():
            yield from _models_in(inner, depth + 1)
    elif isinstance(value, list | tuple):
        for inner in value:
            yield from _models_in(inner, depth + 1)


TemplateFn = Callable[[PromptTemplate, str], PromptTemplate]
ModelFn = Callable[[BaseChatModel, str], Runnable[Any, Any]]


def _map(node: Runnable[Any, Any], where: str, numbers: Iterator[int], on_template: TemplateFn,
         on_model: ModelFn) -> Runnable[Any, Any]:
    """``node`` rebuilt with every prompt template passed through ``on_template`` (with its name,
    ``p<n>`` or ``p<n>.<role>`` in reading order) and every chat model through ``on_model``;
    raises :class:`ProgramError` naming the step where a model is out of reach."""
    if isinstance(node, BaseChatModel):
        return on_model(node, where)
    if isinstance(node, BaseLanguageModel):
        raise ProgramError(f"step {where} is a {type(node).__name__}, not a chat model; agentopt replaces chat models")
    if isinstance(node, PromptTemplate):
        return on_template(node, f"p{next(numbers)}")
    if isinstance(node, ChatPromptTemplate):
        number, roles, messages = next(numbers), [], []
        for message in node.messages:
            if isinstance(prompt := getattr(message, "prompt", None), PromptTemplate):
                role = type(message).__name__.removesuffix("MessagePromptTemplate").lower()
                roles.append(role)
                name = f"p{number}.{role}" + (str(roles.count(role)) if roles.count(role) > 1 else "")
                message = message.model_copy(update={"prompt": on_template(prompt, name)})
            messages.append(message)
        return node.model_copy(update={"messages": messages})
    if isinstance(node, RunnableSequence):
        return RunnableSequence(*(_map(step, f"{where}.{i}" if where else str(i), numbers, on_template, on_model)
                                  for i, step in enumerate(node.steps)))
    if isinstance(node, RunnableParallel):
        return _map_parallel(node, where, numbers, on_template, on_model)
    if isinstance(node, RunnableAssign):
        return RunnableAssign(_map_parallel(node.mapper, where, numbers, on_template, on_model))
    if isinstance(node, RunnableBindingBase):  # .bind(...), .with_config(...), .with_retry(...)
        settings = sorted(getattr(node, "kwargs", {}))
        if isinstance(node.bound, BaseLanguageModel) and settings:
            raise ProgramError(f"step {where or 0} binds {', '.join(settings)} to its model; agentopt's model takes "
                               "the task role's sampling settings only (no stop, tools or structured output)")
        return node.model_copy(update={"bound": _map(node.bound, where, numbers, on_template, on_model)})
    if isinstance(node, RunnableWithFallbacks):
        return node.model_copy(update={
            "runnable": _map(node.runnable, where, numbers, on_template, on_model),
            "fallbacks": [_map(f, f"{where}.fallback{i}", numbers, on_template, on_model)
                          for i, f in enumerate(node.fallbacks)]})
    if not isinstance(node, RunnablePassthrough) and any(True for _ in _models_in(node)):
        name = getattr(node, "name", None) or type(node).__name__
        raise ProgramError(f"step {where or 0} ({name}) calls a model agentopt cannot replace (inside a function or "
                           "an unsupported Runnable); make the chat model a step of the chain itself")
    return node


def _map_parallel(node: RunnableParallel[Any], where: str, numbers: Iterator[int], on_template: TemplateFn,
                  on_model: ModelFn) -> RunnableParallel[dict[str, Any]]:
    """:func:`_map` of a RunnableParallel, which stays one: a RunnableAssign's mapper must be."""
    return RunnableParallel({key: _map(step, f"{where}.{key}" if where else key, numbers, on_template, on_model)
                             for key, step in node.steps__.items()})


def chain_texts(chain: Runnable[Any, Any]) -> dict[str, str]:
    """The chain's prompt templates by name, in reading order; refuses a chain agentopt could not
    run as written with its own model (see :func:`_map`)."""
    texts: dict[str, str] = {}
    models = []

    def template(prompt: PromptTemplate, name: str) -> PromptTemplate:
        if prompt.template_format != "f-string":
            raise ProgramError(f"template {name} is {prompt.template_format}; agentopt optimises f-string templates")
        texts[name] = prompt.template
        return prompt

    def model(found: BaseChatModel, where: str) -> BaseChatModel:
        models.append(where)
        return found

    _map(chain, "", count(1), template, model)
    if not texts:
        raise ProgramError("the chain has no prompt template (ChatPromptTemplate or PromptTemplate) to optimise")
    if not models:
        raise ProgramError("the chain has no chat model step for agentopt to replace")
    return texts


def bind(chain: Runnable[Any, Any], params: Mapping[str, str], model: BaseChatModel) -> Runnable[Any, Any]:
    """The chain as written, with ``params`` as its templates and ``model`` in place of its models."""

    def template(prompt: PromptTemplate, name: str) -> PromptTemplate:
        return prompt.model_copy(update={"template": params.get(name, prompt.template)})

    return _map(chain, "", count(1), template, lambda found, where: model)


def chain_input(inputs: Any) -> Any:
    """Named fields go to the chain as a mapping; a single text as it is (a prompt template with one
    variable takes a bare string, as it does when the user invokes the chain)."""
    return inputs if isinstance(inputs, str) else dict(inputs)


def as_text(output: Any) -> str:
    return str(output.content) if isinstance(output, BaseMessage) else str(output)


class ModelGuard(BaseCallbackHandler):
    """Refuses every model start that is not agentopt's adapter, at the callback manager all LangChain
    model calls pass through. :func:`bind` replaces only the models it can see as steps; one reached
    through a bound method, a callable object, a partial, a module attribute or built inside a
    function would otherwise run uncached, unbudgeted and outside the gate. Installed by a configure
    hook rather than the chain's config, so a call that passes its own callbacks is guarded too."""

    raise_error = True  # langchain-core only logs a handler's exception otherwise, and the model runs

    def __init__(self, program: str | None) -> None:
        self.program = program  # a function program's entry; None for a chain, whose step is named instead
        self.runs: dict[UUID, tuple[UUID | None, str, str]] = {}  # run -> its parent, step and name
        self.refused: ForeignModelError | None = None

    def on_chain_start(self, serialized: Any, inputs: Any, *, run_id: UUID, parent_run_id: UUID | None = None,
                       tags: list[str] | None = None, **kwargs: Any) -> None:
        # the tags a sequence and a parallel give their steps: named as _map names them
        steps = [tag.split(":", 2) for tag in tags or () if tag.startswith(("seq:step:", "map:key:"))]
        step = next((str(int(key) - 1) if kind == "seq" else key for kind, _, key in steps), "")
        self.runs[run_id] = (parent_run_id, step, str(kwargs.get("name") or ""))

    def on_chat_model_start(self, serialized: Any, messages: Any, *, run_id: UUID,
                            parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        if (kwargs.get("invocation_params") or {}).get("_type") != _ADAPTER_TYPE:
            self._refuse(serialized, parent_run_id)

    def on_llm_start(self, serialized: Any, prompts: Any, *, run_id: UUID, parent_run_id: UUID | None = None,
                     **kwargs: Any) -> None:
        self._refuse(serialized, parent_run_id)  # agentopt's adapter is a chat model: any LLM is foreign

    def _refuse(self, serialized: Any, parent: UUID | None) -> None:
        model = ((serialized or {}).get("id") or ["a model"])[-1]
        if self.program:
            reason = f"program {self.program!r} calls {model} itself; a program reaches a model only through chat"
        else:
            reason = (f"{self._step(parent)} calls {model}, a model agentopt could not replace (it would run "
                      "uncached, unbudgeted and outside the gate); make the chat model a step of the chain itself")
        self.refused = self.refused or ForeignModelError(reason)
        raise ForeignModelError(reason)

    def _step(self, parent: UUID | None) -> str:
        if parent is None:  # a call with callbacks of its own: its step is the function running it
            parent = getattr((var_child_runnable_config.get() or {}).get("callbacks"), "parent_run_id", None)
        path: list[str] = []
        name = ""
        while parent in self.runs:
            parent, step, run_name = self.runs[parent]
            name = name or run_name
            path += [step] if step else []
        return f"step {'.'.join(reversed(path)) or 0}" + (f" ({name})" if name else "")

    def raise_refusal(self) -> None:
        """A program that caught the refusal must not pass off what it did instead as its answer."""
        if self.refused is not None:
            raise self.refused


class _QuietGuard(logging.Filter):
    """langchain-core logs a handler's exception before raising it; the refusal is already the
    example's recorded error, and a worker's log would repeat it on the console for every example."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.args, tuple) and record.args[:1] == (ModelGuard.__name__,))


_GUARD: ContextVar[ModelGuard | None] = ContextVar("agentopt_model_guard", default=None)
register_configure_hook(_GUARD, inheritable=True)
logging.getLogger("langchain_core.callbacks.manager").addFilter(_QuietGuard())


def answer(payload: Mapping[str, Any], inputs: Any, chat: Chat) -> str:
    """The program's answer with the payload's texts (what exported packages call), every model it
    starts other than ``chat`` refused (:class:`ModelGuard`)."""
    program = load(payload["entry"])
    params = dict(payload["params"])
    guard = ModelGuard(None if isinstance(program, Runnable) else str(payload["entry"]))
    token = _GUARD.set(guard)
    try:
        if isinstance(program, Runnable):
            output = as_text(bind(program, params, ChatAdapter(chat=chat)).invoke(chain_input(inputs)))
        else:
            output = str(program(params, inputs, chat))
    except Exception:
        guard.raise_refusal()
        raise
    finally:
        _GUARD.reset(token)
    guard.raise_refusal()
    return output
