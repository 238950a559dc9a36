"""What is optimised and how it runs: the LLM client, the bundled local model and agent kinds.

Names are imported lazily, so commands that only read the archive start without loading the
LLM client libraries.
"""

from importlib import import_module
from typing import Any

_LAZY = {"Agent": "base", "AgentKind": "base", "Demo": "prompt", "PromptAgent": "prompt", "KINDS": "kinds",
         "agent_from_payload": "kinds", "kind_of": "kinds", "register_kind": "kinds"}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'agentopt.agents' has no attribute {name!r}")
    return getattr(import_module(f"agentopt.agents.{_LAZY[name]}"), name)


__all__ = sorted(_LAZY)
