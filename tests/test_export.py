"""``agentopt export`` for every agent kind, against the scripted endpoint: the package's files and
card, no secret or local path inside, and the package's ``run`` / ``arun`` / Runnable / console
command / regression check, run in a separate interpreter that only has the exported directory.
(The fresh-virtualenv install against the real model is in the local-model tests of each kind.)

``agentopt export`` runs in this process (:func:`processes.cli`): writing a package does not depend on
being a separate process, and the package itself is still used from a separate interpreter. One
refusal goes through a real ``agentopt`` process, for the exit code and one stderr line a shell sees."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeEndpoint, embedding
from processes import agentopt, cli

from agentopt.agents.code_agent import CodeAgent
from agentopt.agents.graph import GraphAgent, Node
from agentopt.agents.prompt import Demo, PromptAgent
from agentopt.agents.kinds import answer
from agentopt.agents.runtime.prompt_runtime import answer as prompt_answer
from agentopt.agents.runtime.wire import openai_chat, openai_embed
from agentopt.archive.store import Archive, ExampleOutcome
from agentopt.optimizer.tasks import load_task

SECRET = "sk-test-never-exported-1234"
AGENTS = {
    "prompt": PromptAgent(instruction="Repeat the word.", demos=(Demo(input="pear", output="pear"),)),
    "graph": GraphAgent.build(nodes=[Node(name="expr", template="{input} plus two, as arithmetic", tool="calculator"),
                                     Node(name="answer", template="{input} given {expr}")],
                              edges=[("expr", "answer")], output="answer"),
    "retrieving prompt": PromptAgent(instruction="Repeat the word.", retrieve=1,
                                     demo_pool=(Demo(input="pear", output="pear"), Demo(input="plum", output="plum"))),
    "embedding-retrieving prompt": PromptAgent(instruction="Repeat the word.", retrieve=1, selector="embedding",
                                               demo_pool=(Demo(input="pear", output="pear"),
                                                          Demo(input="plum", output="plum"))),
    "code": CodeAgent(name="echo", thought="ask once", code="def forward(task):\n    return ask(task)['answer']\n"),
}


def first_word(body: dict[str, Any]) -> tuple[int, str | dict[str, Any]]:
    """Answers with the first word of the last message, as ``answer: word`` (a lead-in the agents strip);
    embeds as :func:`fakes.embedding`."""
    if "input" in body:
        return 200, embedding(body["input"][0])
    return 200, "answer: " + body["messages"][-1]["content"].split()[0]


@pytest.fixture
def endpoint() -> Any:
    fake = FakeEndpoint(first_word)
    yield fake
    fake.close()


def archived(tmp_path: Path, endpoint: FakeEndpoint, echo_task_file: Path, kind: str) -> tuple[Path, int]:
    """A finished campaign holding one ``kind`` agent scored on val and test with its real answers."""
    db = tmp_path / "a.db"
    archive = Archive(f"sqlite:///{db}")
    task = load_task(str(echo_task_file))
    config = {"name": "exp", "tasks": [str(echo_task_file)],
              "models": {"task": {"model": "fake-model", "base_url": endpoint.url, "max_tokens": 16},
                         "proposer": {"model": "fake-proposer", "base_url": endpoint.url},
                         "embedder": {"model": "fake-embedder", "base_url": endpoint.url}},
              "prices": {"fake-model": {"input_per_mtok": 1.0, "output_per_mtok": 2.0}},
              "task": {"name": task.name, "description": "echo the word", "metric": "exact_match",
                       "ref": str(echo_task_file)}}
    campaign = archive.create_campaign("exp", task.name, "ape", config)
    seed, _ = archive.add_candidate(campaign, PromptAgent(instruction="Say it."), "seed", rationale="seed")
    candidate, _ = archive.add_candidate(campaign, AGENTS[kind], "ape", [seed], rationale="a better one")
    chat = openai_chat("fake-model", {"temperature": 0.0, "max_tokens": 16}, endpoint.url, None)
    embed = openai_embed("fake-embedder", endpoint.url, None)
    for split in ("val", "test"):
        for example in task.split(split):
            payload = AGENTS[kind].payload()
            output = (prompt_answer(payload, example.input, chat, embed) if payload.get("selector") == "embedding"
                      else answer(payload, example.input, chat))
            usage = {"llm_calls": 2, "prompt_tokens": 30, "completion_tokens": 10, "footprint_tokens": 40}
            archive.add_result(candidate, split, ExampleOutcome(example.id, output, float(output == example.target),
                                                                None, usage))
        archive.update_evaluation(candidate, split)
    archive.finish_campaign(campaign, "finished", {"best_candidate_id": candidate})
    return db, candidate


USE = """
import asyncio, json, sys
import {package} as agent
from {package}.regression import check
print(json.dumps({{"run": agent.run("apple"), "arun": asyncio.run(agent.arun("river")),
                  "invoke": agent.as_runnable().invoke({{"input": "stone"}}),
                  "batch": agent.as_runnable().batch(["cloud", "maple"]),
                  "check": check(), "drift": check(lambda text: "wrong")}}))
"""


@pytest.mark.parametrize("kind", sorted(AGENTS))
@pytest.mark.slow
def test_export_every_kind(tmp_path: Path, endpoint: FakeEndpoint, echo_task_file: Path, kind: str) -> None:
    db, candidate = archived(tmp_path, endpoint, echo_task_file, kind)
    out = tmp_path / "pkg"
    done = cli("export", str(candidate), "--out", str(out), "--db", str(db), env={"OPENAI_API_KEY": SECRET})
    assert done.returncode == 0, done.stderr
    package = f"agentopt_echo_{candidate}"
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert {"pyproject.toml", "README.md", "tests/test_regression.py", f"{package}/__init__.py",
            f"{package}/agent.json", f"{package}/regression.json", f"{package}/regression.py",
            f"{package}/_agentopt/sandbox.py", f"{package}/_agentopt/sandbox_child.py",
            f"{package}/_agentopt/prompt_runtime.py"} <= files
    text = "".join(p.read_text() for p in out.rglob("*") if p.is_file())
    assert str(tmp_path) not in text and SECRET not in text and endpoint.url not in text
    vendored = "".join(p.read_text() for p in (out / package / "_agentopt").glob("*.py"))
    assert not re.search(r"^\s*(from|import) agentopt", vendored, re.MULTILINE), "the runtime imports no agentopt"
    card = (out / "README.md").read_text()
    if kind.endswith("retrieving prompt"):
        shipped = json.loads((out / package / "agent.json").read_text())["payload"]
        assert shipped["retrieve"] == 1 and len(shipped["demo_pool"]) == 2, "the pool and k ship with the agent"
        assert "Retrieved per input: the 1 most similar of a pool of 2" in (out / "README.md").read_text()
    for expected in (f"A **{AGENTS[kind].kind}** agent", "| test | 100.0 |", "| val | 100.0 |", "fake-model", "fake-proposer",
                     "2.0 LLM requests and 40 tokens per answer", "$0.000050", "### Lineage", "a better one",
                     "`seed`", "8 test examples"):
        assert expected in card, expected
    recorded = json.loads((out / package / "regression.json").read_text())
    assert len(recorded) == 8 and all(r["output"] == r["input"] == r["target"] for r in recorded)

    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(out), "AGENTOPT_BASE_URL": endpoint.url,
           "AGENTOPT_MODEL": "served-name"}
    calls_before = len(endpoint.requests)
    used = subprocess.run([sys.executable, "-c", USE.format(package=package)], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=300)
    assert used.returncode == 0, used.stderr[-3000:]
    got = json.loads(used.stdout)
    assert (got["run"], got["arun"], got["invoke"], got["batch"]) == ("apple", "river", "stone", ["cloud", "maple"])
    assert got["check"][0] and got["check"][1].startswith("8/8 recorded answers reproduced")
    assert not got["drift"][0] and got["drift"][1].startswith("0/8") and "got 'wrong'" in got["drift"][1]
    chats = [r for r in endpoint.requests if "messages" in r]
    assert chats[-1]["model"] == "served-name" and chats[-1]["seed"] == 0
    embedded = {r["model"] for r in endpoint.requests[calls_before:] if "input" in r}
    assert embedded == ({"fake-embedder"} if "embedding" in kind else set()), \
        "the selector ships with the agent: it embeds with the embedder it was optimised with"
    console = [sys.executable, "-c", f"import sys, {package}; sys.exit({package}.main())"]
    assert subprocess.run([*console, "tiger"], capture_output=True, text=True, env=env, timeout=120).stdout == "tiger\n"
    assert subprocess.run([*console, "--check"], capture_output=True, text=True, env=env, timeout=300).returncode == 0
    down = subprocess.run([*console, "tiger"], capture_output=True, text=True, timeout=120,
                          env={**env, "AGENTOPT_BASE_URL": "http://127.0.0.1:9/v1"})
    assert down.returncode == 1 and down.stderr.startswith("error: ") and "Traceback" not in down.stderr


@pytest.mark.slow
def test_export_refusals_are_one_line(tmp_path: Path, endpoint: FakeEndpoint, echo_task_file: Path) -> None:
    db, candidate = archived(tmp_path, endpoint, echo_task_file, "prompt")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    for launch, args, message in [(cli, [str(candidate), "--out", str(tmp_path / "full")], "is not empty"),
                                  (cli, ["1", "--out", str(tmp_path / "x")], "no scored test or validation example"),
                                  (agentopt, ["999", "--out", str(tmp_path / "x")], "no candidate 999")]:
        done = launch("export", *args, "--db", str(db))
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert done.returncode != 0 and len(lines) == 1 and message in lines[0], done.stderr
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"
    echo_task_file.rename(tmp_path / "moved.jsonl")
    done = cli("export", str(candidate), "--out", str(tmp_path / "y"), "--db", str(db))
    assert done.returncode != 0 and "Traceback" not in done.stderr and not (tmp_path / "y").exists()
