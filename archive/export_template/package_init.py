"""An agent exported by agentopt. Its behaviour lives in ``agent.json``; see the README card.

Endpoint and model come from the environment, so the same package runs against the local
llama.cpp server, vLLM, Ollama or a hosted API:
  AGENTOPT_BASE_URL  (default http://127.0.0.1:8080/v1)
  AGENTOPT_MODEL     (default: the model the agent was optimised for)
  AGENTOPT_API_KEY   (default: none, for local servers)
"""

import json
import os
import sys
from importlib.resources import files
from typing import Any

from . import prompt_runtime

AGENT: dict[str, Any] = json.loads(files(__package__).joinpath("agent.json").read_text(encoding="utf-8"))


def _client() -> Any:
    from openai import OpenAI

    return OpenAI(
        base_url=os.environ.get("AGENTOPT_BASE_URL", "http://127.0.0.1:8080/v1"),
        api_key=os.environ.get("AGENTOPT_API_KEY") or "not-needed",
        max_retries=3,
    )


def run(input_text: str) -> str:
    """Answer one input the way the optimised agent does."""
    messages = prompt_runtime.to_openai(prompt_runtime.render(AGENT["payload"], input_text))
    reply = _client().chat.completions.create(
        model=os.environ.get("AGENTOPT_MODEL", AGENT["model"]), messages=messages, **AGENT["sampling"]
    )
    text = reply.choices[0].message.content if reply.choices else None
    if not text or not text.strip():
        raise RuntimeError("the model returned an empty reply")
    return prompt_runtime.postprocess(text, AGENT["payload"].get("postprocess"))


def main() -> None:
    """Answer each command-line argument, or each line of standard input."""
    inputs = sys.argv[1:] or [line.rstrip("\n") for line in sys.stdin if line.strip()]
    for item in inputs:
        print(run(item))
