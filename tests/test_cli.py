import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeEndpoint, task_aware_responder
from processes import agentopt, interrupt_campaign

from agentopt.agents.prompt import PromptAgent
from agentopt.archive.store import Archive, database_url


def counts(db: Path) -> dict[str, int]:
    with sqlite3.connect(db) as conn:
        tables = [r[0] for r in conn.execute("select name from sqlite_master where type='table'")]
        return {t: conn.execute(f"select count(*) from {t}").fetchone()[0] for t in tables}


def fake_config(path: Path, task: Path, url: str, strategy: str = "{name: ape}") -> Path:
    """A campaign YAML whose task model and proposer are the fake endpoint at ``url``."""
    path.write_text(f"""
tasks: [{task}]
models:
  task: {{model: fake, base_url: "{url}"}}
  proposer: {{model: fake, base_url: "{url}", temperature: 0.9}}
strategy: {strategy}
evaluation: {{backend: threads}}
""")
    return path


@pytest.fixture
def filled_db(tmp_path: Path, fake_endpoint: FakeEndpoint, echo_task_file: Path) -> Path:
    config = fake_config(tmp_path / "c.yaml", echo_task_file, fake_endpoint.url, "{name: ape, params: {"
                         "n_subsamples: 2, samples_per_subsample: 2, racing_budget: 12, mc_rounds: 0, top_k: 2}}")
    db = tmp_path / "a.db"
    result = agentopt("run", str(config), "--db", str(db))
    assert result.returncode == 0, result.stderr
    assert "Test accuracy" in result.stdout and "echo" in result.stdout.lower()
    return db


BAD_CONFIGS = {
    "malformed.yaml": ("tasks: [a\n  b: ]", "malformed YAML"),
    "unknown_task.yaml": ("tasks: [nope]\n", "unknown task 'nope'"),
    "unknown_strategy.yaml": ("tasks: [antonyms]\nstrategy: {name: magic}\n", "unknown strategy 'magic'"),
    "bad_param.yaml": ("tasks: [antonyms]\nstrategy: {params: {racing_budget: 0}}\n", "strategy.params.racing_budget"),
    "typo.yaml": ("tasks: [antonyms]\nevaluation: {bakend: ray}\n", "evaluation.bakend"),
    "bad_rows.yaml": ("tasks: [rows.jsonl]\n", "rows.jsonl:2: not valid JSON"),
    "unreachable.yaml": ("tasks: [antonyms]\nmodels: {task: {model: m, base_url: 'http://127.0.0.1:9/v1'}, "
                         "proposer: {model: m, base_url: 'http://127.0.0.1:9/v1'}}\nevaluation: {backend: threads}\n",
                         "cannot reach model endpoint"),
}


@pytest.mark.parametrize("name", sorted(BAD_CONFIGS))
@pytest.mark.slow
def test_bad_input_is_one_line_and_keeps_the_archive(tmp_path: Path, filled_db: Path, name: str) -> None:
    text, message = BAD_CONFIGS[name]
    (tmp_path / name).write_text(text)
    (tmp_path / "rows.jsonl").write_text('{"input": "a", "target": "b"}\n{"input": oops}\n')
    before = counts(filled_db)
    result = agentopt("run", name, "--db", str(filled_db), cwd=tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result.stderr
    assert counts(filled_db) == before


@pytest.mark.slow
def test_missing_config_and_unknown_ids(tmp_path: Path, filled_db: Path) -> None:
    for args, message in [(["run", "nothere.yaml"], "config file not found"),
                          (["archive", "show", "999", "--db", str(filled_db)], "no candidate 999"),
                          (["archive", "notes", "nope", "--db", str(filled_db)], "no campaign 'nope'"),
                          (["status", "nope", "--db", str(filled_db)], "no campaign or sweep 'nope'"),
                          (["sweep", "resume", "snope", "--db", str(filled_db)], "no sweep 'snope'"),
                          (["archive", "compare", "--sweep", "snope", "--db", str(filled_db)], "no sweep 'snope'"),
                          (["archive", "top", "--db", str(tmp_path / "none.db")], "no archive at"),
                          (["export", "999", "--out", str(tmp_path / "x"), "--db", str(filled_db)], "no candidate 999"),
                          (["archive", "top", "-k", "abc", "--db", str(filled_db)], "Invalid value for '-k'"),
                          (["archive", "tpo"], "No such command 'tpo'"),
                          (["run"], "Missing argument 'config'")]:
        result = agentopt(*args, cwd=tmp_path)
        assert result.returncode == 2 and result.stderr.startswith("error:") and message in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.slow
def test_archive_queries(filled_db: Path) -> None:
    top = json.loads(agentopt("archive", "top", "-k", "3", "--db", str(filled_db), "--json").stdout)
    assert 1 <= len(top) <= 3 and top[0]["mean"] >= top[-1]["mean"]
    assert {"candidate_id", "ci_low", "ci_high", "payload", "task"} <= set(top[0])
    shown = json.loads(agentopt("archive", "show", str(top[0]["candidate_id"]), "--db", str(filled_db), "--json").stdout)
    assert shown["payload"] == top[0]["payload"] and shown["evaluations"]["val"]["n"] > 0
    campaigns = json.loads(agentopt("archive", "campaigns", "--db", str(filled_db), "--json").stdout)
    assert campaigns[0]["status"] == "finished"
    assert "Evaluations" in agentopt("archive", "show", str(top[0]["candidate_id"]), "--db", str(filled_db)).stdout
    test_top = agentopt("archive", "top", "--split", "test", "--db", str(filled_db))
    assert test_top.returncode == 0 and "Top 10 on test" in test_top.stdout


@pytest.mark.slow
def test_archive_notes_and_show_print_what_the_search_noted(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    archive = Archive(database_url(str(db)))
    campaign = archive.create_campaign("c", "antonyms", "symbolic", {})
    candidate, _ = archive.add_candidate(campaign, PromptAgent(instruction="Give the opposite."), "symbolic")
    archive.add_note(campaign, "loss", {"text": "the [bold]answer[/] " + "was far too long " * 20}, candidate)
    archive.add_note(campaign, "rejected", {"edit": {"node": "think", "prompt": "Be brief."}, "reason": "worse"})
    archive.engine.dispose()
    listed = agentopt("archive", "notes", campaign, "--db", str(db))
    assert listed.returncode == 0 and f"Notes of campaign {campaign}" in listed.stdout, listed.stderr
    rows = [line for line in listed.stdout.splitlines() if line.startswith("│")]
    assert len(rows) == 2 and "the [bold]answer[/] was far too long" in rows[0] and "..." in rows[0]
    assert rows[1].split("│")[2].strip() == "-" and '"reason": "worse"' in rows[1], "no candidate: an edit rejected"
    as_json = json.loads(agentopt("archive", "notes", campaign, "--json", "--db", str(db)).stdout)
    assert [(n["candidate_id"], n["kind"]) for n in as_json] == [(candidate, "loss"), (None, "rejected")]
    assert as_json[1]["data"] == {"edit": {"node": "think", "prompt": "Be brief."}, "reason": "worse"}
    for option, value, kinds in (("--kind", "rejected", ["rejected"]), ("--candidate", str(candidate), ["loss"])):
        only = agentopt("archive", "notes", campaign, option, value, "--json", "--db", str(db))
        assert [n["kind"] for n in json.loads(only.stdout)] == kinds
    shown = agentopt("archive", "show", str(candidate), "--db", str(db))
    assert shown.returncode == 0 and "note: loss\n  text: the [bold]answer[/] was far" in shown.stdout
    assert "rejected" not in shown.stdout, "a candidate shows only its own notes"


@pytest.mark.slow
def test_tasks_list_and_help() -> None:
    rows = json.loads(agentopt("tasks", "list", "--json").stdout)
    assert len(rows) >= 8 and {"name", "metric", "train", "val", "test"} <= set(rows[0])
    helptext = agentopt("--help").stdout
    for command in ("run", "archive", "export", "tasks", "model"):
        assert command in helptext


@pytest.mark.slow
def test_ctrl_c_mid_campaign_keeps_results_and_says_so(tmp_path: Path, echo_task_file: Path) -> None:
    def slow(body: dict[str, Any]) -> tuple[int, str]:
        time.sleep(0.2)
        return task_aware_responder(body)

    endpoint = FakeEndpoint(slow)
    config = fake_config(tmp_path / "c.yaml", echo_task_file, endpoint.url)
    try:
        interrupt_campaign(config, tmp_path / "a.db", after_results=3, timeout=60)
    finally:
        endpoint.close()
