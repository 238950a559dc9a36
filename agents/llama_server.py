"""The bundled model's server: llama-cpp-python's OpenAI-compatible server, telling what its KV
cache saved.

llama.cpp keeps the KV cache of the last prompt and evaluates only what follows the longest prefix
the next prompt shares with it, but its Python server does not say so. Run as a script (only
llama-cpp-python is imported), this module starts the same server, with each completion's
``usage`` reporting, like OpenAI's API:

- ``prompt_tokens_details.cached_tokens``: prompt tokens taken from the KV cache;
- ``prompt_seconds_saved``: what evaluating them would have cost, at the marginal time per prompt
  token fitted to this server's own evaluations so far (llama.cpp's performance counters).

Answers are unchanged: the cache is used exactly as before, only counted.
"""

import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NotRequired

import llama_cpp
from llama_cpp import Llama, llama_types

_generate = Llama.generate
_create_completion = Llama.create_completion


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
    """Prompt evaluation time as ``a + b * tokens``, fitted by least squares to this server's
    evaluations; ``b`` is what each token served from the KV cache saved. The mean time per token
    would overstate it: the few tokens after a cached prefix still pay for a whole pass."""

    n: int = 0
    sx: float = 0.0
    sy: float = 0.0
    sxx: float = 0.0
    sxy: float = 0.0

    def add(self, tokens: int, seconds: float) -> None:
        self.n += 1
        self.sx, self.sy = self.sx + tokens, self.sy + seconds
        self.sxx, self.sxy = self.sxx + tokens * tokens, self.sxy + tokens * seconds

    def per_token(self) -> float:
        spread = self.n * self.sxx - self.sx * self.sx
        if self.n < 2 or spread <= 0:
            return self.sy / self.sx if self.sx else 0.0
        return max((self.n * self.sxy - self.sx * self.sy) / spread, 0.0)


COST = PromptCost()


def _prompt_counters(llama: Llama) -> tuple[int, float]:
    """Prompt tokens evaluated so far and the seconds it took (llama.cpp's performance counters)."""
    data = llama_cpp.llama_perf_context(llama._ctx.ctx)  # noqa: SLF001 - the context has no public accessor
    return data.n_p_eval, data.t_p_eval_ms / 1000


def generate(self: Llama, tokens: Sequence[int], *args: Any, **kwargs: Any) -> Iterator[int]:
    tokens = list(tokens)
    cached = 0
    if kwargs.get("reset", True) and self.n_tokens > 0:
        cached = reused_tokens(list(self._input_ids[: self.n_tokens]), tokens,  # noqa: SLF001
                               not getattr(self, "_requires_eval", False))
    self._agentopt_cached = cached  # type: ignore[attr-defined]
    before, timed = _prompt_counters(self), False
    for token in _generate(self, tokens, *args, **kwargs):
        if not timed:  # the prompt is evaluated once the first token comes
            after, timed = _prompt_counters(self), True
            if after[0] > before[0]:
                COST.add(after[0] - before[0], after[1] - before[1])
        yield token


def create_completion(self: Llama, *args: Any, **kwargs: Any) -> Any:
    self._agentopt_cached = 0  # type: ignore[attr-defined]
    result = _create_completion(self, *args, **kwargs)
    if isinstance(result, dict) and isinstance(result.get("usage"), dict):
        cached = self._agentopt_cached  # type: ignore[attr-defined]
        result["usage"]["prompt_tokens_details"] = {"cached_tokens": cached}
        result["usage"]["prompt_seconds_saved"] = round(cached * COST.per_token(), 4)
    return result


def install() -> None:
    """Count the KV cache's work in every completion. The server's response model drops keys its
    ``usage`` type does not declare, so the two are declared before the server module builds it."""
    usage = llama_types.CompletionUsage
    usage.__annotations__.update(prompt_tokens_details=NotRequired[dict[str, int]],
                                 prompt_seconds_saved=NotRequired[float])
    usage.__optional_keys__ = usage.__optional_keys__ | {"prompt_tokens_details", "prompt_seconds_saved"}
    Llama.generate = generate  # type: ignore[method-assign]
    Llama.create_completion = create_completion  # type: ignore[method-assign]


if __name__ == "__main__":
    install()
    from llama_cpp.server.__main__ import main

    sys.exit(main())
