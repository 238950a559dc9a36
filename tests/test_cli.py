"""The CLI end to end: campaigns, bad input, archive queries and Ctrl-C.

All but two cases run the CLI's own entry point in this process (:func:`processes.cli`): their
campaigns run against the in-process fake endpoint and nothing in them depends on being a separate
process, while each child would pay seconds of imports. A missing config also goes through the
installed ``agentopt`` in a child, for the exit code a shell sees, and Ctrl-C needs a process to signal.
"""

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeEndpoint, task_aware_responder
from processes import agentopt, cli, interrupt_campaign

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


@pytest.fixture(scope="module")
def filled_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One finished campaign for the module: the tests that use it only read it, and the bad-input
    cases check that they left it as it was, so one campaign serves them all."""
    tmp_path = tmp_path_factory.mktemp("filled")
    task = tmp_path / "echo.jsonl"  # a task whose right answer is the input itself
    task.write_text("".join(f'{{"input": "word{i}", "target": "word{i}"}}\n' for i in range(20)))
    endpoint = FakeEndpoint(task_aware_responder)
    try:
        config = fake_config(tmp_path / "c.yaml", task, endpoint.url, "{name: ape, params: {"
                             "n_subsamples: 2, samples_per_subsample: 2, racing_budget: 12, mc_rounds: 0, top_k: 2}}")
        db = tmp_path / "a.db"
        result = cli("run", str(config), "--db", str(db))
        assert result.returncode == 0, result.stderr
        assert "Test accuracy" in result.stdout and "echo" in result.stdout.lower()
        yield db
    finally:
        endpoint.close()


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
def test_bad_input_is_one_line_and_keeps_the_archive(tmp_path: Path, filled_db: Path, name: str) -> None:
    text, message = BAD_CONFIGS[name]
    (tmp_path / name).write_text(text)
    (tmp_path / "rows.jsonl").write_text('{"input": "a", "target": "b"}\n{"input": oops}\n')
    before = counts(filled_db)
    result = cli("run", name, "--db", str(filled_db), cwd=tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result.stderr
    assert counts(filled_db) == before


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
        result = cli(*args, cwd=tmp_path)
        assert result.returncode == 2 and result.stderr.startswith("error:") and message in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.slow
def test_a_missing_config_exits_2_from_the_installed_command(tmp_path: Path) -> None:
    """The exit code a shell sees, through the console script in a child of its own."""
    child = agentopt("run", "nothere.yaml", cwd=tmp_path)
    assert child.returncode == 2 and child.stderr.startswith("error:") and "config file not found" in child.stderr
    assert len(child.stderr.strip().splitlines()) == 1, child.stderr


def test_archive_queries(filled_db: Path) -> None:
    top = json.loads(cli("archive", "top", "-k", "3", "--db", str(filled_db), "--json").stdout)
    assert 1 <= len(top) <= 3 and top[0]["mean"] >= top[-1]["mean"]
    assert {"candidate_id", "ci_low", "ci_high", "payload", "task"} <= set(top[0])
    shown = json.loads(cli("archive", "show", str(top[0]["candidate_id"]), "--db", str(filled_db), "--json").stdout)
    assert shown["payload"] == top[0]["payload"] and shown["evaluations"]["val"]["n"] > 0
    campaigns = json.loads(cli("archive", "campaigns", "--db", str(filled_db), "--json").stdout)
    assert campaigns[0]["status"] == "finished"
    assert "Evaluations" in cli("archive", "show", str(top[0]["candidate_id"]), "--db", str(filled_db)).stdout
    test_top = cli("archive", "top", "--split", "test", "--db", str(filled_db))
    assert test_top.returncode == 0 and "Top 10 on test" in test_top.stdout


def test_archive_notes_and_show_print_what_the_search_noted(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    archive = Archive(database_url(str(db)))
    campaign = archive.create_campaign("c", "antonyms", "symbolic", {})
    candidate, _ = archive.add_candidate(campaign, PromptAgent(instruction="Give the opposite."), "symbolic")
    archive.add_note(campaign, "loss", {"text": "the [bold]answer[/] " + "was far too long " * 20}, candidate)
    archive.add_note(campaign, "rejected", {"edit": {"node": "think", "prompt": "Be brief."}, "reason": "worse"})
    archive.engine.dispose()
    listed = cli("archive", "notes", campaign, "--db", str(db))
    assert listed.returncode == 0 and f"Notes of campaign {campaign}" in listed.stdout, listed.stderr
    rows = [line for line in listed.stdout.splitlines() if line.startswith("│")]
    assert len(rows) == 2 and "the [bold]answer[/] was far too long" in rows[0] and "..." in rows[0]
    assert rows[1].split("│")[2].strip() == "-" and '"reason": "worse"' in rows[1], "no candidate: an edit rejected"
    as_json = json.loads(cli("archive", "notes", campaign, "--json", "--db", str(db)).stdout)
    assert [(n["candidate_id"], n["kind"]) for n in as_json] == [(candidate, "loss"), (None, "rejected")]
    assert as_json[1]["data"] == {"edit": {"node": "think", "prompt": "Be brief."}, "reason": "worse"}
    for option, value, kinds in (("--kind", "rejected", ["rejected"]), ("--candidate", str(candidate), ["loss"])):
        only = cli("archive", "notes", campaign, option, value, "--json", "--db", str(db))
        assert [n["kind"] for n in json.loads(only.stdout)] == kinds
    shown = cli("archive", "show", str(candidate), "--db", str(db))
    assert shown.returncode == 0 and "note: loss\n  text: the [bold]answer[/] was far" in shown.stdout
    assert "rejected" not in shown.stdout, "a candidate shows only its own notes"


def test_tasks_list_and_help() -> None:
    rows = json.loads(cli("tasks", "list", "--json").stdout)
    assert len(rows) >= 8 and {"name", "metric", "train", "val", "test"} <= set(rows[0])
    helptext = cli("--help").stdout
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
