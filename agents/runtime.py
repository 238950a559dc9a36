"""One entry point that answers an input with any stored agent payload, given a ``chat`` function.

This is what exported packages call (``agentopt export`` copies it with the modules it imports);
inside agentopt the same pieces back :class:`PromptAgent`, :class:`GraphAgent` and
:class:`CodeAgent`, so a shipped agent behaves as the evaluated one did.
"""

from collections.abc import Mapping
from typing import Any

from . import graph_runtime, prompt_runtime
from .code_framework import run_agent_code
from .graph_runtime import Chat
from .prompt_runtime import Inputs, runnable_inputs

__all__ = ["answer", "runnable_inputs"]  # exported packages read their inputs with runnable_inputs


def answer(payload: Mapping[str, Any], inputs: Inputs, chat: Chat) -> str:
    """The agent's post-processed answer to ``inputs`` (a text, or a multi-field task's fields);
    code agents run in the sandbox."""
    kind = payload.get("kind", "prompt")
    if kind == "prompt":
        reply = chat(prompt_runtime.to_openai(prompt_runtime.render(payload, inputs)))
        return prompt_runtime.postprocess(reply, payload.get("postprocess"))
    if kind == "graph":
        return graph_runtime.run_traced(payload, inputs, chat)[0]
    if kind == "code":
        return run_agent_code(payload["code"], inputs, chat)
    raise ValueError(f"unknown agent kind {kind!r}")
