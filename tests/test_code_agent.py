"""Code agents: every seed agent runs in the sandbox with its LLM calls served by the parent's
client (cached, counted), and a failing or hostile agent is an error, never an answer."""

from typing import Any

import pytest
from fakes import FakeEndpoint

from agentopt.agents.code_agent import CodeAgent
from agentopt.agents.runtime.code_framework import SEED_AGENTS
from agentopt.agents.runtime.errors import AgentRunError
from agentopt.agents.models.llm import Endpoint, LLMClient, MemoryCache, Sampling
from agentopt.optimizer.engine.evaluation import Job, run_job

REPLY = "thinking: six sevens\nanswer: 42\ncorrect: yes\nprinciples: multiplication\nexpert: math"


def _fields(body: dict[str, Any]) -> tuple[int, str]:
    return 200, REPLY


@pytest.fixture
def llm() -> Any:
    endpoint = FakeEndpoint(_fields)
    yield LLMClient([Endpoint(base_url=endpoint.url, model="fake")], MemoryCache(), Sampling(max_tokens=64)), endpoint
    endpoint.close()


@pytest.mark.parametrize("name", sorted(SEED_AGENTS))
def test_seed_agent_runs_in_the_sandbox_through_the_parents_client(llm: Any, name: str) -> None:
    client, endpoint = llm
    thought, code = SEED_AGENTS[name]
    assert CodeAgent(name=name, thought=thought, code=code).run("What is 6 times 7?", client) == "42"
    assert client.usage.calls == len(endpoint.requests) >= 1
    if name == "self_consistency":
        assert len({r["seed"] for r in endpoint.requests}) == 5, "each sample is its own cached call"


def test_a_second_run_is_served_from_the_cache(llm: Any) -> None:
    client, endpoint = llm
    agent = CodeAgent(name="sc", code=SEED_AGENTS["self_consistency"][1])
    agent.run("q", client)
    paid = len(endpoint.requests)
    assert agent.run("q", client) == "42" and len(endpoint.requests) == paid


def test_canonical_form_ignores_names_comments_and_docstrings() -> None:
    base = CodeAgent(name="a", code="def forward(task):\n    return task\n")
    same = CodeAgent(name="b", thought="x", code='def forward(task):\n    """Doc."""\n    # note\n    return task')
    assert base.canonical() == same.canonical()
    assert base.canonical() != CodeAgent(name="a", code="def forward(task):\n    return task + '!'").canonical()


def test_hostile_agent_is_recorded_as_an_error_never_an_answer(llm: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    client, _ = llm
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-123")
    hostile = CodeAgent(name="thief", code="import os\ndef forward(task):\n    return open('/etc/passwd').read()")
    with pytest.raises(AgentRunError, match="blocked"):
        hostile.run("x", client)
    outcome = run_job(client, Job(1, "val", "e1", "x", hostile.payload(), "c"))
    assert outcome.output is None and "blocked" in (outcome.error or "")
    leaky = CodeAgent(name="leak", code="import os\ndef forward(task):\n    return repr(dict(os.environ))")
    assert "sk-secret-123" not in leaky.run("x", client)


FORGER = """import os
def forward(task):
    try:
        open('/etc/passwd').read()
    except OSError:
        pass
    os.write(3, b'{"type": "result", "ok": true, "value": "42"}\\n')
    os._exit(0)
"""


def test_an_agent_cannot_hide_a_blocked_action_behind_a_forged_answer(llm: Any) -> None:
    client, _ = llm
    with pytest.raises(AgentRunError, match="blocked: file read outside the sandbox"):
        CodeAgent(name="forger", code=FORGER).run("x", client)


@pytest.mark.local_model
def test_agent_code_cannot_lift_the_roles_sampling_on_the_real_model(local_model: Any) -> None:
    """A sandboxed agent asks the real model for 10**9 tokens at temperature 57: the reply stops at
    the role's cap, the clamp is counted, and a parameter the role owns is refused, not sent."""
    cache = MemoryCache()
    client = LLMClient(local_model.endpoints, cache, Sampling(max_tokens=8))
    greedy = ("def forward(task):\n    return call_llm([{'role': 'user', 'content': 'Count from 1 to 100.'}], "
              "temperature=57, max_tokens=10**9)\n")
    assert CodeAgent(name="greedy", code=greedy).run("x", client).strip()
    assert client.usage.calls == 1 and client.usage.completion_tokens <= 8 and client.usage.clamped == 1
    sneaky = ("def forward(task):\n    return call_llm([{'role': 'user', 'content': 'Hi.'}], "
              "top_p=0.01)\n")
    outcome = run_job(client, Job(2, "val", "e1", "x", CodeAgent(name="sneaky", code=sneaky).payload(), "c"))
    assert outcome.output is None and "top_p" in (outcome.error or ""), outcome.error
    assert len(cache._calls) == 1, "nothing was sent"
