"""How a prompt agent turns an input into messages and a raw reply into an answer.

This module depends only on the standard library and langchain-core, because ``agentopt export``
copies it verbatim into exported packages: the optimizer and the shipped agent then render and
post-process with the very same code.
"""

import re
from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder

PROMPT = ChatPromptTemplate.from_messages(
    [("system", "{instruction}"), MessagesPlaceholder("demos"), ("human", "{input}")]
)
_ROLES = {"human": "user", "ai": "assistant", "system": "system"}

DEFAULT_POSTPROCESS: dict[str, Any] = {
    "first_line": True,
    "strip_prefixes": ["answer:", "output:", "the answer is"],
    "strip_chars": "\"'`*. ",
}


def render(payload: Mapping[str, Any], input_text: str) -> list[BaseMessage]:
    """Instruction as the system message, each demonstration as a user / assistant turn."""
    demos: list[BaseMessage] = []
    for demo in payload.get("demos", ()):
        demos += [HumanMessage(demo["input"]), AIMessage(demo["output"])]
    return PROMPT.format_messages(instruction=payload["instruction"], demos=demos, input=input_text)


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
