"""Meta Agent Search against a scripted meta agent: broken code is debugged, a hopeless generation
is kept as failed, a working one joins the archive, and no generated code runs in this process."""

import json
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeEndpoint
from processes import raw_bytes
from sqlalchemy import text
from test_campaign import config

from agentopt.agents.runtime.errors import ConfigError
from agentopt.archive.store import Archive, database_url
from agentopt.optimizer.engine.config import parse_config
from agentopt.optimizer.engine.runner import run_campaigns
from agentopt.optimizer.strategies.adas import parse_proposal
from agentopt.optimizer.engine.ui import SilentReporter

BROKEN = "def forward(task):\n    return 1 / 0\n"
ECHO = "def forward(task):\n    return task.strip()\n"


def meta_and_task(body: dict[str, Any]) -> tuple[int, str]:
    """Generation 1 proposes broken code and fixes it when shown the error; generation 2 stays
    broken through every debug turn; task calls answer 'answer: wrong'."""
    messages = body["messages"]
    if "expert machine learning researcher" not in messages[0]["content"]:
        return 200, "thinking: hm\nanswer: wrong"
    first_generation = body.get("seed", 0) < 100
    fixed = first_generation and "failed with" in messages[-1]["content"]
    return 200, json.dumps({"thought": "echo it", "name": "echo" if fixed else "broken",
                            "code": ECHO if fixed else BROKEN})


def test_meta_agent_search_debugs_keeps_failures_and_archives_working_agents(tmp_path: Path,
                                                                            echo_task_file: Path) -> None:
    endpoint = FakeEndpoint(meta_and_task)
    try:
        params = {"generations": 2, "seeds": ["chain_of_thought", "step_back"], "reflexions": 1, "debug_turns": 2,
                  "debug_examples": 1, "dev_size": 4}
        cfg = parse_config(config(echo_task_file, endpoint.url, strategy={"name": "adas", "params": params},
                                  dedup={"functional": "off"}))
        archive = Archive(database_url(str(tmp_path / "a.db")))
        [report] = run_campaigns(cfg, archive, SilentReporter())
    finally:
        endpoint.close()
    assert report.best_agent["kind"] == "code" and report.best_agent["code"] == ECHO
    assert report.best_test.mean == 1.0
    assert report.stats["failed generations"] == 1
    with archive.session() as s:
        broken = s.execute(text("select count(*) from results r join candidates c on c.id = r.candidate_id "
                                "where c.payload like '%1 / 0%' and r.error like '%ZeroDivisionError%'")).scalar()
    assert broken >= 1, "the failed generation is stored with its errors"


def test_parse_proposal_accepts_json_or_a_code_block_and_says_why_not() -> None:
    agent, _ = parse_proposal('Sure! {"thought": "t", "name": "n", "code": "def forward(task):\\n    return task"}')
    assert agent is not None and agent.name == "n"
    fenced, _ = parse_proposal("Here:\n```python\ndef forward(task):\n    return task\n```")
    assert fenced is not None and fenced.name == "generated"
    assert parse_proposal("I cannot help with that.") == (None, "no forward function in the proposal")


HOSTILE = [
    "import os\ndef forward(task):\n    os.kill(os.getppid(), 9)\n    return task\n",
    "import os\ndef forward(task):\n    return repr(dict(os.environ))\n",
    "def forward(task):\n    return open(__import__('os').path.expanduser('~/.bashrc')).read()\n",
]


def test_hostile_generations_are_contained_and_no_secret_reaches_the_archive(
        tmp_path: Path, echo_task_file: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-123")

    def hostile_meta(body: dict[str, Any]) -> tuple[int, str]:
        if "expert machine learning researcher" not in body["messages"][0]["content"]:
            return 200, "answer: wrong"
        code = HOSTILE[body.get("seed", 0) // 100 % len(HOSTILE)]
        return 200, json.dumps({"thought": "t", "name": "h", "code": code})

    endpoint = FakeEndpoint(hostile_meta)
    db = tmp_path / "a.db"
    try:
        params = {"generations": 3, "seeds": ["chain_of_thought"], "reflexions": 0, "debug_turns": 0,
                  "debug_examples": 1, "dev_size": 2}
        cfg = parse_config(config(echo_task_file, endpoint.url, strategy={"name": "adas", "params": params},
                                  dedup={"functional": "off"}))
        [report] = run_campaigns(cfg, Archive(database_url(str(db))), SilentReporter())
    finally:
        endpoint.close()
    assert report.stats["failed generations"] == 2, "the killer and the reader are stopped; the env dump runs"
    stored = raw_bytes(sorted(tmp_path.glob("a.db*")))
    assert b"sk-secret-123" not in stored and b"blocked" in stored


def test_unknown_seed_agent_is_a_one_line_config_error(tmp_path: Path, echo_task_file: Path) -> None:
    bad = config(echo_task_file, "http://127.0.0.1:9/v1", strategy={"name": "adas", "params": {"seeds": ["nope"]}})
    with pytest.raises(ConfigError, match="unknown seed agent 'nope'"):
        parse_config(bad)
