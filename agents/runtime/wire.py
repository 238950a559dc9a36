"""The one chat request agentopt sends to an OpenAI-compatible endpoint.

Shared by the campaign's client and by exported packages (``agentopt export`` copies this module),
so a package replaying a recorded example asks the endpoint exactly what the campaign asked: same
sampling, same seed, hence the same reply from a deterministic server.
"""

import math
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from .errors import LLMError

if TYPE_CHECKING:
    from openai.types.chat import ChatCompletion

OVERRIDABLE = ("temperature", "max_tokens")  # what a caller may set per call; the rest is the role's
CALLER_TEMPERATURE_CAP = 1.0  # callers may sample up to this, or up to the role's temperature if higher


class SamplingRefused(LLMError):
    """A call set a sampling parameter callers may not set, or gave one a value of the wrong type;
    nothing was sent."""


def bounded(role: Mapping[str, Any], overrides: Mapping[str, object]) -> tuple[dict[str, Any], bool]:
    """The role's sampling with a caller's overrides held to what the role allows: ``max_tokens``
    in [1, the role's], ``temperature`` in [0, max(the role's, CALLER_TEMPERATURE_CAP)]. Returns
    what to send and whether a value had to be clamped. Agent code is generated, so it must not be
    able to lift the role's length cap (a budget's admission estimate rests on it) or its range;
    an exported package applies the same rule, so it asks exactly what the campaign asked."""
    unknown = sorted(set(overrides) - set(OVERRIDABLE))
    if unknown:
        raise SamplingRefused(f"sampling parameter(s) {', '.join(map(repr, unknown))} cannot be set per call "
                              f"(allowed: {', '.join(OVERRIDABLE)}); the role sets the rest")
    update: dict[str, Any] = {}
    if "temperature" in overrides:
        given = _number("temperature", overrides["temperature"], integer=False)
        update["temperature"] = float(min(max(given, 0.0), max(role["temperature"], CALLER_TEMPERATURE_CAP)))
    if "max_tokens" in overrides:
        update["max_tokens"] = min(max(int(_number("max_tokens", overrides["max_tokens"], integer=True)), 1),
                                   role["max_tokens"])
    return {**role, **update}, any(update[k] != overrides[k] for k in update)


def _number(name: str, value: object, integer: bool) -> float:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and not integer and not math.isnan(value):
        return value
    raise SamplingRefused(f"sampling parameter {name} must be {'an integer' if integer else 'a number'}, "
                          f"not {str(value)[:40]!r}")


def completion_request(model: str, messages: Sequence[Mapping[str, str]], sampling: Mapping[str, Any],
                       sample: int) -> dict[str, Any]:
    """Keyword arguments for ``chat.completions.create``; ``sample`` is the seed that tells repeated
    draws at temperature > 0 apart."""
    return {"model": model, "messages": list(messages), "temperature": sampling["temperature"],
            "max_tokens": sampling["max_tokens"], "top_p": sampling.get("top_p", 1.0),
            "stop": list(sampling.get("stop") or ()) or None, "seed": sample}


def openai_chat(model: str, sampling: Mapping[str, Any], base_url: str, api_key: str | None) -> Callable[..., str]:
    """``chat(messages, sample=0, **overrides) -> text`` on one endpoint, for exported packages
    (the campaign's own client adds caching, budgets and endpoint pools on top of the same request)."""
    from openai import OpenAI

    client = OpenAI(base_url=base_url, api_key=api_key or "not-needed", max_retries=3)

    def chat(messages: Sequence[Mapping[str, str]], sample: int = 0, **overrides: Any) -> str:
        # A request without ``stream`` is answered whole (the overloads cannot tell from a ** mapping).
        reply: ChatCompletion = client.chat.completions.create(
            **completion_request(model, messages, bounded(sampling, overrides)[0], sample))
        text = reply.choices[0].message.content if reply.choices else None
        if not text or not text.strip():
            raise RuntimeError(f"{model}: the model returned an empty reply")
        return text

    return chat


def mean_pooled(embedding: Sequence[Any]) -> list[float]:
    """One vector for a text: an endpoint's embedding as it is, or the mean of its per-token vectors
    (llama.cpp's server returns those for a chat model)."""
    tokens = embedding if embedding and isinstance(embedding[0], list) else [embedding]
    if not tokens or not tokens[0]:
        raise LLMError("the endpoint returned an empty embedding")
    return [sum(column) / len(tokens) for column in zip(*tokens, strict=True)]


def openai_embed(model: str, base_url: str, api_key: str | None) -> Callable[[str], list[float]]:
    """``embed(text) -> vector`` on one endpoint, for exported packages whose agent retrieves its
    demonstrations by embeddings; each text is embedded once per process (a pool is compared with
    every input)."""
    from openai import OpenAI

    client = OpenAI(base_url=base_url, api_key=api_key or "not-needed", max_retries=3)

    @lru_cache(maxsize=4096)
    def embed(text: str) -> list[float]:
        return mean_pooled(client.embeddings.create(model=model, input=[text]).data[0].embedding)

    return embed
