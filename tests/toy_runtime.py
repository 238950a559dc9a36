"""A toy agent kind's runtime, as a plugin would ship it: standard library only, ``answer`` is how
its agents answer (an exported package copies this file and calls it)."""

from collections.abc import Callable, Mapping
from typing import Any


def answer(payload: Mapping[str, Any], inputs: Any, chat: Callable[..., str]) -> str:
    """Echo the input, with the agent's prefix; no model call."""
    text = inputs if isinstance(inputs, str) else " ".join(inputs.values())
    return f"{payload['prefix']}{text}"
