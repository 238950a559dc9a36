"""The one chat request agentopt sends to an OpenAI-compatible endpoint.

Shared by the campaign's client and by exported packages (``agentopt export`` copies this module),
so a package replaying a recorded example asks the endpoint exactly what the campaign asked: same
sampling, same seed, hence the same reply from a deterministic server.
"""

from collections.abc import Callable, Mapping, Sequence
from typing import Any


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
        reply = client.chat.completions.create(**completion_request(model, messages, {**sampling, **overrides}, sample))
        text = reply.choices[0].message.content if reply.choices else None
        if not text or not text.strip():
            raise RuntimeError(f"{model}: the model returned an empty reply")
        return text

    return chat
