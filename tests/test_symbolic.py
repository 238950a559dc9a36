"""Symbolic learning against a scripted proposer: the loss is back-propagated into a prompt
rewrite, invalid rewrites and pipeline edits are refused and recorded (never applied), a step that
lowers the batch score is rolled back, and the learned graph's lineage and gradients are stored."""

import json
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeEndpoint
from processes import cli
from test_campaign import config

from agentopt.agents.runtime.errors import ConfigError
from agentopt.agents.graph import GraphAgent
from agentopt.agents.graph_edits import RemoveNode, apply_edit
from agentopt.archive.store import Archive, database_url
from agentopt.optimizer.engine.config import parse_config
from agentopt.optimizer.engine.runner import run_campaigns
from agentopt.optimizer.strategies import language_grad as lg
from agentopt.optimizer.engine.ui import SilentReporter

SEED = {"nodes": [{"name": "answer", "template": "Say something about: {input}"}], "output": "answer"}
PARAMS = {"steps": 2, "batch_size": 4, "max_losses": 2, "rewrite_samples": 2, "pipeline_every": 1, "dev_size": 5,
          "pipeline": SEED}


def scripted(rewrites: list[str], knows: str = "abcdefghijklmnopqrstuvwxyz") -> Any:
    """Task calls: a template starting 'Repeat' repeats the word if it starts with a letter in
    ``knows``; anything else answers 'wrong'. Proposer calls follow the strategy's prompts."""

    def reply(body: dict[str, Any]) -> tuple[int, str]:
        prompt = body["messages"][-1]["content"]
        if prompt.startswith("Question:") and "Expected answer" in prompt:
            return 200, "The answer should have been the word itself."
        if prompt.startswith("One step of a pipeline"):
            return 200, "Suggestion: ask the model to repeat the word.\nRequirement: nothing."
        if prompt.startswith("Improve this prompt template"):
            return 200, rewrites[body.get("seed", 0) % len(rewrites)]
        if prompt.startswith("A pipeline runs these steps"):
            return 200, json.dumps({"op": "add_edge", "source": "answer", "target": "answer"})
        word = prompt.rsplit(": ", 1)[-1].strip()
        return 200, word if prompt.startswith("Repeat") and word[:1] in knows else "wrong"

    return reply


def run(tmp_path: Path, task: Path, responder: Any, params: dict[str, Any]) -> tuple[Any, Archive]:
    endpoint = FakeEndpoint(responder)
    try:
        cfg = parse_config(config(task, endpoint.url, strategy={"name": "symbolic", "params": params},
                                  dedup={"functional": "off"}))
        archive = Archive(database_url(str(tmp_path / "a.db")))
        [report] = run_campaigns(cfg, archive, SilentReporter())
    finally:
        endpoint.close()
    return report, archive


def test_gradients_rewrite_the_prompt_and_refused_edits_are_recorded(tmp_path: Path, echo_task_file: Path) -> None:
    rewrites = ["Repeat the word.", "Repeat the word: {input}"]  # sample 0 loses {input}, sample 1 keeps it
    report, archive = run(tmp_path, echo_task_file, scripted(rewrites), PARAMS)
    assert report.seed_test.mean == 0.0
    baseline = archive.candidate(report.seed_test.candidate_id).payload
    assert baseline["nodes"][0]["template"] == SEED["nodes"][0]["template"], "the baseline on test is the seed pipeline"
    assert report.best_agent["kind"] == "graph"
    assert report.best_agent["nodes"][0]["template"] == "Repeat the word: {input}"
    assert report.best_test.mean == 1.0
    refused = [n.data for n in archive.notes(report.campaign_id, kind="rejected_edit")]
    assert any("lost template variable {input}" in r["reason"] for r in refused)
    assert any(r["optimizer"] == "pipeline" and r["reason"].startswith("cycle") for r in refused)
    learned = report.best_candidate_id
    gradients = archive.notes(report.campaign_id, candidate_id=learned, kind="gradients")
    assert gradients and "repeat the word" in gradients[0].data[0]["text"]
    assert archive.notes(report.campaign_id, candidate_id=learned, kind="loss")
    [seed_id] = archive.parents(learned)
    assert archive.candidate(seed_id).payload["nodes"][0]["template"] == SEED["nodes"][0]["template"]
    lineage = cli("archive", "lineage", str(learned), "--db", str(tmp_path / "a.db"))
    assert lineage.returncode == 0 and f"{seed_id} -> {learned}" in lineage.stdout


def test_a_step_that_lowers_the_batch_score_is_rolled_back(tmp_path: Path, echo_task_file: Path) -> None:
    half = {"nodes": [{"name": "answer", "template": "Repeat: {input}"}], "output": "answer"}
    report, archive = run(tmp_path, echo_task_file, scripted(["Say nothing about: {input}"], knows="abcdefghijkl"),
                          {**PARAMS, "pipeline": half, "pipeline_every": 0, "steps": 1})
    [rollback] = archive.notes(report.campaign_id, kind="rollback")
    assert rollback.data["batch_score_after"] < rollback.data["batch_score_before"]
    assert report.best_agent["nodes"][0]["template"] == "Repeat: {input}", "the worse graph is never kept"
    assert report.stats["rollbacks"] == 1


@pytest.mark.parametrize(("pipeline", "reason"), [
    ("nonexistent", "unknown pipeline"),
    ({"nodes": [{"name": "a", "template": "{b}"}], "output": "a"}, "dangling input"),
])
def test_a_bad_seed_pipeline_is_a_config_error(tmp_path: Path, echo_task_file: Path, pipeline: Any,
                                               reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        parse_config(config(echo_task_file, "http://127.0.0.1:9/v1",
                            strategy={"name": "symbolic", "params": {"pipeline": pipeline}}))


def test_the_run_summary_names_a_graph_winner(tmp_path: Path, echo_task_file: Path) -> None:
    endpoint = FakeEndpoint(scripted(["Repeat the word: {input}"]))
    try:
        path = tmp_path / "symbolic.json"
        path.write_text(json.dumps(config(echo_task_file, endpoint.url, dedup={"functional": "off"},
                                          strategy={"name": "symbolic", "params": {**PARAMS, "steps": 1}})))
        done = cli("run", str(path), "--db", str(tmp_path / "a.db"), "--quiet")
    finally:
        endpoint.close()
    assert done.returncode == 0, done.stderr
    assert "best graph agent: graph: answer" in done.stdout


def test_the_edit_menu_can_make_the_calculator_step_the_answer() -> None:
    seed = GraphAgent.build(**lg.seed_pipelines("Add the two numbers.")["calculator"])
    options = lg.menu(seed)
    removals = [e for e in options if isinstance(e, RemoveNode)]
    assert {e.name for e in removals} == {"expr", "answer"}
    shortened = apply_edit(seed, next(e for e in removals if e.name == "answer"))
    assert shortened.output == "expr" and [n.name for n in shortened.nodes] == ["expr"]
    assert all(lg.describe(e) for e in options)
