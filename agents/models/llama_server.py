"""The bundled model's server: llama-cpp-python's OpenAI-compatible server, telling what its KV
cache saved.

llama.cpp keeps the KV cache of the last prompt and evaluates only what follows the longest prefix
the next prompt shares with it, but its Python server does not say so. Run as a script, this
module starts the same server, with each completion's ``usage`` reporting, like OpenAI's API:

- ``prompt_tokens_details.cached_tokens``: prompt tokens taken from the KV cache;
- ``prompt_seconds_saved``: what evaluating them would have cost, at the time per prompt token of
  this server's own long prompt evaluations so far: the wall time from a prompt to its first
  token, measured here because llama.cpp's performance counters time only part of a batch's work
  under the server's threading (microseconds for 30 tokens).

Answers are unchanged: the cache is used exactly as before, only counted. The counting reads
llama-cpp-python internals (pinned in constraints.txt); where they differ, the server runs and
reports nothing extra. llama_cpp is imported only by the server, not by whoever imports the
counting rules below.
"""

import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NotRequired


def reused_tokens(previous: Sequence[int], tokens: Sequence[int], exact_ready: bool) -> int:
    """How many of ``tokens`` llama.cpp takes from the KV cache holding ``previous``: the longest
    common prefix, less the one token it replays to refresh the logits when the whole prompt is
    cached, unless those logits are live (``exact_ready``)."""
    common = 0
    for a, b in zip(previous, tokens, strict=False):
        if a != b:
            break
        common += 1
    if common == len(tokens) and not (exact_ready and len(previous) == len(tokens)):
        return max(common - 1, 0)
    return common


@dataclass
class PromptCost:
    """Seconds per prompt token, from this server's evaluations of at least ``LONG`` tokens: what
    a token served from the KV cache saved. Short evaluations (the few tokens after a cached
    prefix) are left out: each pays for a whole pass, which would overstate the per-token cost."""

    LONG = 64
    tokens: int = 0
    seconds: float = 0.0

    def add(self, tokens: int, seconds: float) -> None:
        if tokens >= self.LONG:
            self.tokens, self.seconds = self.tokens + tokens, self.seconds + seconds

    def per_token(self) -> float:
        return self.seconds / self.tokens if self.tokens else 0.0


def install() -> None:
    """Count the KV cache's work in every completion. The server's response model drops keys its
    ``usage`` type does not declare, so the two are declared before the server module builds it."""
    from llama_cpp import Llama, llama_types

    original_generate, original_completion = Llama.generate, Llama.create_completion
    cost = PromptCost()

    def generate(self: Llama, tokens: Sequence[int], *args: Any, **kwargs: Any) -> Iterator[int]:
        tokens = list(tokens)
        cached, previous = 0, getattr(self, "_input_ids", None)
        if kwargs.get("reset", True) and self.n_tokens > 0 and previous is not None:
            cached = reused_tokens(list(previous[: self.n_tokens]), tokens, not getattr(self, "_requires_eval", False))
        self._agentopt_cached = cached  # type: ignore[attr-defined]  # our note on llama_cpp's instance
        started, timed = time.perf_counter(), False
        for token in original_generate(self, tokens, *args, **kwargs):
            if not timed:  # the first token comes once the uncached part of the prompt is evaluated
                cost.add(len(tokens) - cached, time.perf_counter() - started)
                timed = True
            yield token

    def create_completion(self: Llama, *args: Any, **kwargs: Any) -> Any:
        self._agentopt_cached = 0  # type: ignore[attr-defined]  # our note on llama_cpp's instance
        result = original_completion(self, *args, **kwargs)
        if isinstance(result, dict) and isinstance(result.get("usage"), dict):
            cached = self._agentopt_cached  # type: ignore[attr-defined]  # set by generate above
            saved, usage = round(cached * cost.per_token(), 4), result["usage"]
            usage["prompt_tokens_details"] = {"cached_tokens": cached}  # type: ignore[typeddict-unknown-key]  # added below
            usage["prompt_seconds_saved"] = saved  # type: ignore[typeddict-unknown-key]  # added to the type below
        return result

    if not hasattr(llama_types, "CompletionUsage"):
        return
    usage = llama_types.CompletionUsage
    usage.__annotations__.update(prompt_tokens_details=NotRequired[dict[str, int]],
                                 prompt_seconds_saved=NotRequired[float])
    usage.__optional_keys__ = usage.__optional_keys__ | {"prompt_tokens_details", "prompt_seconds_saved"}
    # Patching the class is the point. The wrapper does not pass send() on: llama_cpp's completions never send.
    Llama.generate = generate  # type: ignore[method-assign, assignment]  # a patch, without send()
    Llama.create_completion = create_completion  # type: ignore[method-assign]  # a patch of the class


if __name__ == "__main__":
    sys.path.pop(0)  # this script's folder: its module names (tools, graph, wire...) must not shadow others
    install()
    from llama_cpp.server.__main__ import main

    sys.exit(main())  # type: ignore[no-untyped-call]  # llama_cpp's server entry point is unannotated
