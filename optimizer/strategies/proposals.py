"""Asking the proposer for instructions, and refusing the ones a small model gets wrong.

A 135M model asked for an instruction often returns a truncated sentence, echoes the
demonstrations, or rambles; such text is rejected here, with the reason counted, before it can
cost a single task-model call.
"""

import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from agentopt.agents.runtime.errors import LLMError
from agentopt.agents.models.llm import Completion, LLMClient, Message
from agentopt.agents.runtime.prompt_runtime import template_fields
from agentopt.optimizer.tasks import Example

FORWARD_TEMPLATE = (
    "I gave a friend an instruction and some inputs. The friend read the instruction and wrote an "
    "output for every one of the inputs. Here are the input-output pairs:\n\n{pairs}\n\n"
    "What was the instruction? Reply with the instruction only, in one sentence."
)
RESAMPLE_TEMPLATE = (
    "Generate a variation of the following instruction while keeping the semantic meaning.\n\n"
    "Input: {instruction}\n\nOutput:"
)
_NOT_AN_INSTRUCTION = {"a", "an", "the", "this", "that", "that's", "it", "it's", "in", "asked", "there", "i", "you"}
_LEAD_INS = re.compile(
    r"^\s*(?:the\s+)?(?:new\s+)?(?:instruction|variation|output|answer)\s*(?:was|is)?\s*(?:to)?\s*[:\-]?\s*",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Proposed:
    instruction: str | None
    reason: str  # "ok" or why it was rejected


def _reads(line: str) -> bool:
    try:
        return bool(template_fields(line))
    except ValueError:  # braces spanning lines: keep the line as it is
        return True


def prose(text: str) -> str:
    """What a text tells the model: its lines that read no variable (all of it, as written, when
    none does: a prompt's instruction), literal braces shown as such."""
    lines = text.splitlines()
    if any(_reads(line) for line in lines):
        text = "\n".join(line for line in lines if line.strip() and not _reads(line)).strip()
    return text.replace("{{", "{").replace("}}", "}")


def instruct(text: str, instruction: str) -> str:
    """``text`` with its prose replaced by ``instruction``: the lines that read variables stay as
    they are, and the instruction takes the place of the first prose line (or comes first). For a
    text without variables (a prompt's instruction) that is the instruction alone."""
    lines = [line for line in text.splitlines() if line.strip()]
    kept = [line for line in lines if _reads(line)]
    escaped = instruction.replace("{", "{{").replace("}", "}}")
    at = next((i for i, line in enumerate(lines) if not _reads(line)), 0)
    before = sum(1 for line in lines[:at] if _reads(line))
    return "\n".join([*kept[:before], escaped, *kept[before:]])


def format_pairs(examples: Sequence[Example]) -> str:
    return "\n\n".join(f"Input: {e.text}\nOutput: {e.target}" for e in examples)


def clean_instruction(completion: Completion, demos: Sequence[Example] = (), max_words: int = 40) -> Proposed:
    """Reduce a proposer reply to one instruction sentence, or say why there is none."""
    lines = [line.strip() for line in completion.text.strip().splitlines() if line.strip()]
    if not lines:
        return Proposed(None, "empty")
    text = _LEAD_INS.sub("", lines[0]).strip().strip("\"'`* ")
    sentence = re.match(r"^(.+?[.!?])(?:\s|$)", text)
    if sentence:
        text = sentence.group(1)
    elif completion.finish_reason == "length":
        return Proposed(None, "truncated")
    words = text.split()
    if len(words) < 3:
        return Proposed(None, "too short")
    if len(words) > max_words:
        return Proposed(None, "too long")
    lowered = text.lower()
    if "instruction" in lowered or words[0].lower().strip("\"'") in _NOT_AN_INSTRUCTION:
        return Proposed(None, "talks about the instruction instead of giving one")
    if "input:" in lowered or "output:" in lowered or any(
        len(value) > 2 and re.search(rf"(?<!\w){re.escape(value.lower())}(?!\w)", lowered)
        for d in demos for value in ((d.input,) if isinstance(d.input, str) else d.input.values())
    ):
        return Proposed(None, "echoes the demonstrations")
    return Proposed(text[0].upper() + text[1:], "ok")


def propose(proposer: LLMClient, requests: Sequence[tuple[list[Message], int]], workers: int) -> list[Completion | LLMError]:
    """Run proposer calls concurrently (one per local server); failures come back as errors."""

    def call(request: tuple[list[Message], int]) -> Completion | LLMError:
        try:
            return proposer.chat(request[0], sample=request[1])
        except LLMError as exc:
            return exc

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(pool.map(call, requests))
