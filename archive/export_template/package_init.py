"""An agent exported by agentopt. Its behaviour lives in ``agent.json``; README.md is its card.

Endpoint and model come from the environment, so the same package runs against the local
llama.cpp server, vLLM, Ollama or a hosted API:
  AGENTOPT_BASE_URL  (default http://127.0.0.1:8080/v1)
  AGENTOPT_MODEL     (default: the model the agent was optimised for)
  AGENTOPT_API_KEY   (default: none, for local servers)
An agent that picks its demonstrations by embeddings also asks an embeddings endpoint (for the
bundled model, a second server in embedding mode: ``agentopt model serve --embedding --port 8081``):
  AGENTOPT_EMBED_BASE_URL  (default: AGENTOPT_BASE_URL)
  AGENTOPT_EMBED_MODEL     (default: the embedder the agent was optimised with)
Code agents run their code in the bundled sandbox (``_agentopt/sandbox.py``, Linux): the key stays
in this process and never reaches the agent's code.
"""

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable, Mapping
from functools import cache
from importlib import import_module
from importlib.resources import files
from typing import Any

from ._agentopt import prompt_runtime, wire  # type: ignore[import-not-found]  # export vendors it; not here

AGENT: dict[str, Any] = json.loads(files(__package__).joinpath("agent.json").read_text(encoding="utf-8"))
KIND_RUNTIME = import_module(f"{__package__}._agentopt.{AGENT['runtime']}")
"""The agent kind's runtime module: its ``answer(payload, inputs, chat)`` is how this agent answers."""
DEFAULT_BASE_URL = "http://127.0.0.1:8080/v1"


@cache
def _chat(model: str, base_url: str, api_key: str | None) -> Any:
    return wire.openai_chat(model, AGENT["sampling"], base_url, api_key)


@cache
def _embed(model: str, base_url: str, api_key: str | None) -> Any:
    return wire.openai_embed(model, base_url, api_key)


def run(inputs: str | Mapping[str, str]) -> str:
    """Answer one input the way the optimised agent does (the same prompts, sampling and seeds); a
    multi-field agent takes its fields as a mapping (``{"question": ..., "context": ...}``)."""
    base_url, api_key = os.environ.get("AGENTOPT_BASE_URL", DEFAULT_BASE_URL), os.environ.get("AGENTOPT_API_KEY")
    chat = _chat(os.environ.get("AGENTOPT_MODEL", AGENT["model"]), base_url, api_key)
    answer: Callable[..., str] = KIND_RUNTIME.answer  # import_module's module is untyped; each kind answers text
    if AGENT["payload"].get("selector") != "embedding":
        return answer(AGENT["payload"], inputs, chat)
    embed = _embed(os.environ.get("AGENTOPT_EMBED_MODEL", AGENT["embedder"]),
                   os.environ.get("AGENTOPT_EMBED_BASE_URL", base_url), api_key)
    return answer(AGENT["payload"], inputs, chat, embed)


async def arun(inputs: str | Mapping[str, str]) -> str:
    """:func:`run` for asyncio code: the blocking calls run in a worker thread, not on the event loop."""
    return await asyncio.to_thread(run, inputs)


def _command_line_input(item: str) -> str | Mapping[str, str]:
    """A command-line INPUT: for an agent reading named fields, a JSON object of them; else the text."""
    if not AGENT.get("inputs"):
        return item
    try:
        value = json.loads(item)
    except ValueError:
        raise ValueError(f"this agent reads the fields {', '.join(AGENT['inputs'])}: pass each input as a JSON "
                         "object of them") from None
    fields: str | Mapping[str, str] = prompt_runtime.runnable_inputs(value)  # untyped where not vendored
    return fields


def as_runnable() -> Any:
    """The agent as a langchain-core Runnable taking a string or a mapping of input fields
    (``invoke``, ``ainvoke``, ``batch`` and composition with ``|`` all work)."""
    from langchain_core.runnables import RunnableLambda

    async def _arun(value: Any) -> str:
        return await arun(prompt_runtime.runnable_inputs(value))

    return RunnableLambda(lambda value: run(prompt_runtime.runnable_inputs(value)), afunc=_arun, name=__package__)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=__package__.replace("_", "-"), description=(
        "Answer each INPUT (or each line of standard input) with the exported agent; a multi-field agent "
        "takes each input as a JSON object of its fields. "
        "Set AGENTOPT_BASE_URL, AGENTOPT_MODEL and AGENTOPT_API_KEY to choose the endpoint."))
    parser.add_argument("inputs", nargs="*", metavar="INPUT")
    parser.add_argument("--check", action="store_true",
                        help="replay the recorded examples and exit 1 if the answers drifted (see README)")
    args = parser.parse_args(argv)
    try:
        if args.check:
            from .regression import check

            passed, summary = check()
            print(summary)
            return 0 if passed else 1
        for item in args.inputs or [line.rstrip("\n") for line in sys.stdin if line.strip()]:
            print(run(_command_line_input(item)))
    except Exception as exc:  # one line for the user, never a traceback
        print(f"error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", file=sys.stderr)
        return 1
    return 0
