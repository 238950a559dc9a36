"""What is optimised and how it runs: agents, the models they call, and the runtime they ship with.

- ``base``, ``kinds``: the ``Agent`` and ``AgentKind`` protocols and the registry of kinds (an open
  set: ``register_kind``); ``prompt``, ``graph`` (with ``graph_edits``), ``code_agent`` and
  ``program`` are the built-in kinds, independent of each other (``postprocess`` is what prompt and
  graph agents share); ``hashing``: their canonical forms.
- ``models/``: model access. The LLM client (cache, retries, usage), endpoint pools and the gate that
  paces them, budgets and prices, and the bundled local model with its llama.cpp server.
- ``runtime/``: what an exported package carries, standard library and langchain-core only, flat and
  relatively imported because ``agentopt export`` copies them into packages: the errors, prompt, graph
  and program runtimes, the tools, the wire format, and the sandbox that runs generated code in a
  separate, audited process.

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
