"""How a prompt agent turns an input into messages and a raw reply into an answer.

This module depends only on the standard library and langchain-core, because ``agentopt export``
copies it verbatim into exported packages: the optimizer and the shipped agent then render and
post-process with the very same code. langchain-core is imported by the functions that build
messages: the rest (``input_text``, ``postprocess``) is read by code that never renders a prompt, such as
the dashboard and the archive commands, and langchain-core takes over half a second to load.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from string import Formatter
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from langchain_core.messages import BaseMessage
    from langchain_core.prompts import ChatPromptTemplate

_ROLES = {"human": "user", "ai": "assistant", "system": "system"}

Embed = Callable[[str], Sequence[float]]
"""A text's embedding: how a prompt agent whose ``selector`` is ``embedding`` compares inputs."""

DEFAULT_POSTPROCESS: dict[str, Any] = {
    "first_line": True,
    "strip_prefixes": ["answer:", "output:", "the answer is"],
    "strip_chars": "\"'`*. ",
}


Inputs = str | Mapping[str, str]
"""What an agent answers: one text, or named fields (``question``, ``context``) of a multi-field task."""


def input_text(inputs: Inputs) -> str:
    """The inputs as one text: a single input as it is, named fields as ``name: value`` lines in
    their declared order (what a prompt without a template, a proposer or a report shows)."""
    if isinstance(inputs, str):
        return inputs
    return "\n".join(f"{name}: {value}" for name, value in inputs.items())


def template_fields(template: str) -> list[str]:
    """The names a user-turn template reads; only plain names, so a template cannot reach into an
    input's attributes (``{x.__class__}``). Raises ValueError on bad braces or such a field."""
    names = []
    for _, name, spec, conv in Formatter().parse(template):
        if name is None:
            continue
        if not name.isidentifier() or spec or conv:
            raise ValueError(f"template field {{{name}}} is not a plain field name")
        names.append(name)
    return names


def template_values(inputs: Inputs) -> dict[str, str]:
    """What a template may read: each named field, and ``input``, the whole input as text (a
    multi-field task may not name a field ``input``, so the two never collide)."""
    return {**({} if isinstance(inputs, str) else inputs), "input": input_text(inputs)}


def runnable_inputs(value: Any) -> Inputs:
    """A Runnable's (or command's) argument as agent inputs: ``{"input": text}`` is the single text
    input, any other mapping is a multi-field input, anything else is taken as text."""
    if isinstance(value, Mapping):
        return str(value["input"]) if set(value) == {"input"} else {str(k): str(v) for k, v in value.items()}
    return str(value)


def user_turn(template: str | None, inputs: Inputs) -> str:
    """The user message for ``inputs``: the template with its fields filled, or the inputs as text
    when there is no template."""
    if template is None:
        return input_text(inputs)
    values = template_values(inputs)
    missing = [name for name in template_fields(template) if name not in values]
    if missing:
        raise KeyError(f"the template reads {{{missing[0]}}} but the input has only: {', '.join(values)}")
    return template.format_map(values)


def _grams(text: str) -> set[str]:
    words = re.findall(r"\w+", text.lower())
    return set(words) | {f"#{w[i:i + 3]}" for w in (f"^{w}$" for w in words) for i in range(len(w) - 2)}


def similarity(a: str, b: str) -> float:
    """Lexical similarity of two texts in [0, 1]: the Jaccard overlap of their words and of the
    words' character trigrams (word start and end marked), so one-word inputs ("gravel", "grape";
    "170", "175") still compare. Needs no model and no service, which is what a shipped agent can
    count on."""
    x, y = _grams(a), _grams(b)
    return len(x & y) / len(x | y) if x | y else 0.0


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    norm = math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))
    return sum(x * y for x, y in zip(a, b, strict=True)) / norm if norm else 0.0


def nearest(query: str, candidates: Sequence[str], k: int, embed: Embed | None = None) -> list[int]:
    """Indices of the ``k`` candidates most similar to ``query``, most similar first: lexically, or by
    the cosine of their embeddings when ``embed`` is given. Ties keep the candidates' order, so the
    choice is deterministic."""
    if embed is None:
        scores = [similarity(query, c) for c in candidates]
    else:
        target = embed(query)
        scores = [cosine(target, embed(c)) for c in candidates]
    return sorted(range(len(candidates)), key=lambda i: (-scores[i], i))[:k]


def shown_demos(payload: Mapping[str, Any], inputs: Inputs, embed: Embed | None = None) -> list[Mapping[str, Any]]:
    """The fixed demonstrations, then the ``retrieve`` demonstrations of the pool nearest to this
    input (as LangChain's example selectors pick them): each input gets the worked examples most
    like it. A ``selector`` of ``embedding`` compares by ``embed``, which the caller must then give."""
    fixed = list(payload.get("demos", ()))
    pool = list(payload.get("demo_pool", ()))
    k = int(payload.get("retrieve", 0))
    if not k or not pool:
        return fixed
    by_embedding = payload.get("selector", "lexical") == "embedding"
    if by_embedding and embed is None:
        raise ValueError("this agent picks its demonstrations by embeddings, and no embedder was given "
                         "(models.embedder in a campaign)")
    picked = nearest(input_text(inputs), [input_text(d["input"]) for d in pool], k, embed if by_embedding else None)
    return fixed + [pool[i] for i in picked]


@cache
def _prompt() -> ChatPromptTemplate:
    """The chat template every prompt agent fills: instruction, demonstrations, input."""
    from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder

    return ChatPromptTemplate.from_messages(
        [("system", "{instruction}"), MessagesPlaceholder("demos"), ("human", "{input}")]
    )


def render(payload: Mapping[str, Any], inputs: Inputs, embed: Embed | None = None) -> list[BaseMessage]:
    """Instruction as the system message, each demonstration as a user / assistant turn."""
    from langchain_core.messages import AIMessage, HumanMessage

    template = payload.get("template")
    demos: list[BaseMessage] = []
    for demo in shown_demos(payload, inputs, embed):
        demos += [HumanMessage(user_turn(template, demo["input"])), AIMessage(demo["output"])]
    return _prompt().format_messages(instruction=payload["instruction"], demos=demos, input=user_turn(template, inputs))


def to_openai(messages: Sequence[BaseMessage]) -> list[dict[str, str]]:
    return [{"role": _ROLES[m.type], "content": str(m.content)} for m in messages]


def postprocess(text: str, options: Mapping[str, Any] | None = None) -> str:
    """Cut a tiny model's reply down to the answer: first non-empty line, known lead-ins and
    wrapping quotes or punctuation removed."""
    opts = {**DEFAULT_POSTPROCESS, **(options or {})}
    answer = text.strip()
    if opts["first_line"]:
        answer = next((line.strip() for line in answer.splitlines() if line.strip()), "")
    for prefix in opts["strip_prefixes"]:
        answer = re.sub(rf"^\s*{re.escape(prefix)}\s*", "", answer, flags=re.IGNORECASE)
    return answer.strip(opts["strip_chars"])


def answer(payload: Mapping[str, Any], inputs: Inputs, chat: Any, embed: Embed | None = None) -> str:
    """A prompt agent's post-processed answer (what exported packages call)."""
    return postprocess(chat(to_openai(render(payload, inputs, embed))), payload.get("postprocess"))
