"""Sweeps: a matrix of campaigns run at once on Ray, sharing the gate's limits and one archive;
resumable after the driver is killed; bad matrices refused before anything runs.

Bad matrices are refused in this process (:func:`processes.cli`): validating a file does not depend on
being a separate process. Sweeps, their exit codes and the SIGKILLed driver use real ``agentopt``
processes.
"""

import json
import signal
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeEndpoint, identity, task_aware_responder
from processes import AGENTOPT, agentopt, cli, wait_until
from test_campaign import APE_SMALL
from test_strategies import SMALL

from sqlalchemy import func, select

from agentopt.agents.runtime.errors import ConfigError
from agentopt.archive.models import Result
from agentopt.archive.store import Archive, database_url
from agentopt.optimizer.frontends.status import compare_sweep, sweep_status
from agentopt.optimizer.engine.sweep import run_sweep
from agentopt.optimizer.engine.sweep_config import parse_sweep
from agentopt.optimizer.engine.ui import SilentReporter

pytestmark = pytest.mark.cluster

LIMIT = 3  # requests in flight on the endpoint, across every campaign of the sweep


def sweep_data(task: Path, url: str, **extra: Any) -> dict[str, Any]:
    role = {"model": "fake", "endpoints": [{"base_url": url, "max_concurrency": LIMIT}], "max_attempts": 1}
    return {"name": "sw", "tasks": [str(task)], "models": {"task": role, "proposer": {**role, "temperature": 0.9}},
            "evaluation": {"backend": "threads", "workers": 1, "concurrency": 2},
            "matrix": {"strategies": [{"name": "ape", "params": APE_SMALL}, {"name": "random", "params": SMALL["random"]}],
                       "seeds": [0, 1]},
            "sweep": {"concurrency": 4}, **extra}


def _intervals(db: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(db) as conn:
        return conn.execute("select created_at, finished_at from campaigns where sweep_id is not null").fetchall()


def _most_at_once(intervals: list[tuple[str, str]]) -> int:
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = most = 0
    for _, step in events:
        running += step
        most = max(most, running)
    return most


def test_a_sweep_runs_its_campaigns_at_once_within_the_endpoint_limit_and_resumes_to_nothing(
        tmp_path: Path, echo_task_file: Path) -> None:
    endpoint = FakeEndpoint(task_aware_responder, delay_s=0.05)
    db = tmp_path / "a.db"
    archive = Archive(database_url(str(db)))
    try:
        plan = parse_sweep(sweep_data(echo_task_file, endpoint.url))
        assert len(plan.cells) == 4 and len({c.arm for c in plan.cells}) == 2
        result = run_sweep(plan, archive, SilentReporter())
        assert result.status == "finished", result.outcomes
        assert [o.status for o in result.outcomes] == ["finished"] * 4
        assert endpoint.max_active <= LIMIT, f"{endpoint.max_active} requests at once, limit {LIMIT}"
        intervals = _intervals(db)
        print("campaign start / end:", *intervals, sep="\n  ")
        assert _most_at_once(intervals) >= 2, f"campaigns overlapped in time: {intervals}"
        calls = len(endpoint.requests)
        again = run_sweep(plan, archive, SilentReporter(), sweep_id=result.sweep_id)
        assert again.skipped == 4 and not again.outcomes and len(endpoint.requests) == calls
    finally:
        endpoint.close()
    status = sweep_status(archive, result.sweep_id)
    assert status.counts == {"finished": 4} and set(status.best) == {"echo"}
    assert status.active_s > 0, "the heartbeat counts the sweep's driven time"
    assert status.spend["task"]["calls"] + status.spend["proposer"]["calls"] == len(set(endpoint.identities()))
    compared = compare_sweep(archive, result.sweep_id)
    assert len(compared.pairs) == 1 and compared.pairs[0].cells == 2 and not compared.failed
    assert {s.arm for s in compared.scores} == {c.arm for c in plan.cells}
    printed = str(compared)  # what print(agentopt.compare_sweep(...)) shows: the tables and the method
    assert "Method: Scores are crossed" in printed and "Holm" in printed and "| echo |" in printed
    with sqlite3.connect(db) as conn:
        assert conn.execute("pragma integrity_check").fetchone()[0] == "ok"
        per_campaign = conn.execute("select count(distinct c.id) from campaigns c join candidates k "
                                    "on k.campaign_id = c.id join results r on r.candidate_id = k.id").fetchone()[0]
    assert per_campaign == 4, "every concurrent writer's rows are there"


def test_a_sweeps_budget_holds_over_all_its_campaigns(tmp_path: Path, echo_task_file: Path) -> None:
    endpoint = FakeEndpoint(task_aware_responder)
    archive = Archive(database_url(str(tmp_path / "a.db")))
    try:
        plan = parse_sweep(sweep_data(echo_task_file, endpoint.url, sweep={"concurrency": 2,
                                                                           "budget": {"task_calls": 60}}))
        result = run_sweep(plan, archive, SilentReporter())
    finally:
        endpoint.close()
    assert result.status == "stopped" and len(result.outcomes) < len(plan.cells), "no campaign starts past the limit"
    spent = sweep_status(archive, result.sweep_id).spend
    with archive.session() as s:
        test_answers = s.scalar(select(func.count(Result.id)).where(Result.split == "test"))
    assert spent["task"]["calls"] - test_answers <= 60, "the searches kept to the sweep's budget"
    summaries = [archive.campaign(o.campaign_id).summary for o in result.outcomes]
    assert "task.calls" in [s["stopped_by"] for s in summaries]
    assert all(s["best_test"]["n"] > 0 for s in summaries), "a campaign the sweep's budget stopped still scored on test"


def test_a_sweeps_wall_time_budget_counts_the_time_of_earlier_runs(tmp_path: Path, echo_task_file: Path) -> None:
    endpoint = FakeEndpoint(task_aware_responder)
    archive = Archive(database_url(str(tmp_path / "a.db")))
    plan = parse_sweep(sweep_data(echo_task_file, endpoint.url, sweep={"budget": {"wall_time_s": 60}}))
    sweep_id = archive.create_sweep(plan.name, plan.record())
    archive.beat_sweep(sweep_id, 45.0)
    archive.beat_sweep(sweep_id, 20.0)  # two earlier runs: 65 s driven, past the 60 s limit
    archive.finish_sweep(sweep_id, "interrupted", {})
    try:
        result = run_sweep(plan, archive, SilentReporter(), sweep_id=sweep_id)
    finally:
        endpoint.close()
    assert (result.status, result.outcomes) == ("stopped", ()), "no campaign starts past the sweep's wall time"
    assert not archive.sweep_campaigns(sweep_id)
    stored = archive.sweep(sweep_id)
    assert stored.summary["stopped_by"] == "wall_time_s" and stored.active_s >= 65.0
    status = sweep_status(archive, sweep_id)
    assert (status.wall_time_limit_s, status.limits["task"]["calls"]) == (60, None)


def test_one_failing_campaign_is_marked_failed_and_the_others_finish(tmp_path: Path, echo_task_file: Path) -> None:
    (tmp_path / "strictmetric.py").write_text(  # passes the check before the start, then breaks its contract
        "calls = [0]\n"
        "def nan_after_first(output, target):\n"
        "    calls[0] += 1\n"
        "    return 1.0 if calls[0] == 1 else float('nan')\n")
    endpoint = FakeEndpoint(task_aware_responder)
    data = sweep_data(echo_task_file, endpoint.url)
    data["matrix"] = {"tasks": [str(echo_task_file), {"path": str(echo_task_file), "name": "strict",
                                                      "metric": "strictmetric:nan_after_first"}],
                      "strategies": [{"name": "ape", "params": APE_SMALL}]}
    path = tmp_path / "sweep.yaml"
    path.write_text(json.dumps(data))
    db = tmp_path / "a.db"
    try:
        done = agentopt("sweep", str(path), "--db", str(db), "--json", cwd=tmp_path, timeout=600)
    finally:
        endpoint.close()
    assert done.returncode == 1, done.stdout + done.stderr
    report = json.loads(done.stdout)
    by_status = {o["status"]: o for o in report["campaigns"]}
    assert report["status"] == "failed" and set(by_status) == {"finished", "failed"}
    assert "MetricContractError" in by_status["failed"]["error"]
    status = json.loads(agentopt("status", report["sweep_id"], "--db", str(db), "--json").stdout)
    assert status["counts"] == {"failed": 1, "finished": 1}
    shown = agentopt("status", report["sweep_id"], "--db", str(db), cwd=tmp_path)
    assert shown.returncode == 0 and "1 failed, 1 finished" in shown.stdout and "driven " in shown.stdout, shown.stdout


@pytest.mark.parametrize("matrix, message", [
    ({}, "matrix: empty"),
    ({"strategies": ["ape", {"name": "nope"}]}, "matrix.strategies.1: unknown strategy 'nope'"),
    ({"seeds": [0, "one"]}, "matrix.seeds.1: Input should be a valid integer"),
    ({"seeds": [0, 1.5]}, "matrix.seeds.1"),
    ({"seeds": []}, "matrix.seeds: an empty list"),
])
def test_a_bad_matrix_is_one_line_before_anything_runs(tmp_path: Path, echo_task_file: Path,
                                                       matrix: dict[str, Any], message: str) -> None:
    path = tmp_path / "sweep.yaml"
    path.write_text(json.dumps({**sweep_data(echo_task_file, "http://127.0.0.1:9/v1"), "matrix": matrix}))
    done = cli("sweep", str(path), "--db", str(tmp_path / "a.db"))
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert not (tmp_path / "a.db").exists()


def test_a_cell_that_does_not_validate_is_named() -> None:
    with pytest.raises(ConfigError, match=r"matrix.strategies.0.params.nope: Extra inputs"):
        parse_sweep({"tasks": ["larger_animal"], "matrix": {"strategies": [{"name": "opro", "params": {"nope": 1}}]}})
    with pytest.raises(ConfigError, match=r"cell larger_animal / ape .*temperature.* / seed 0: models.task.temperature"):
        parse_sweep({"tasks": ["larger_animal"], "matrix": {"models": [{}, {"task": {"temperature": 9}}]}})


def test_a_labelled_strategy_names_its_arm_and_keeps_its_cells() -> None:
    ape = {"name": "ape", "params": {"top_k": 2}}
    plain = parse_sweep({"tasks": ["larger_animal"], "matrix": {"strategies": [ape]}})
    labelled = parse_sweep({"tasks": ["larger_animal"], "matrix": {"strategies": [{**ape, "label": "ape-2"}]}})
    assert [c.arm for c in plain.cells] == ["ape(top_k=2)"] and [c.arm for c in labelled.cells] == ["ape-2"]
    assert [c.key for c in plain.cells] == [c.key for c in labelled.cells]  # a label renames, the campaign is the same
    assert labelled.cells[0].config.strategy.params == {"top_k": 2}
    with pytest.raises(ConfigError, match=r"matrix.strategies: two strategies are both called 'same'"):
        parse_sweep({"tasks": ["larger_animal"], "matrix": {"strategies": [{**ape, "label": "same"},
                                                                           {"name": "random", "label": "same"}]}})


def test_sigkilled_sweep_driver_resumes_without_paying_twice(tmp_path: Path, echo_task_file: Path) -> None:
    endpoint = FakeEndpoint(task_aware_responder, delay_s=0.1)
    path = tmp_path / "sweep.yaml"
    path.write_text(json.dumps(sweep_data(echo_task_file, endpoint.url, sweep={"concurrency": 2})))
    db = tmp_path / "a.db"

    def finished() -> int:
        try:
            with sqlite3.connect(db) as conn:
                return int(conn.execute("select count(*) from campaigns where status = 'finished'").fetchone()[0])
        except sqlite3.Error:
            return 0

    try:
        proc = subprocess.Popen([AGENTOPT, "sweep", str(path), "--db", str(db), "--quiet"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        assert wait_until(lambda: finished() >= 1, 300), "no campaign finished"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        done_before = finished()
        assert done_before < 4, "the kill came before the sweep's end"
        with sqlite3.connect(db) as conn:
            sweep_id = conn.execute("select id from sweeps").fetchone()[0]
            stored = {identity(r["messages"], r["sample"]) for r in
                      (json.loads(row[0]) for row in conn.execute("select request from llm_calls"))}
        refused = agentopt("sweep", "resume", sweep_id, "--db", str(db))
        assert refused.returncode == 2 and "live process" in refused.stderr
        seen_before = len(endpoint.requests)
        resumed = agentopt("sweep", "resume", sweep_id, "--db", str(db), "--force", "--json", timeout=600)
        assert resumed.returncode == 0, resumed.stderr
    finally:
        endpoint.close()
    report = json.loads(resumed.stdout)
    assert report["status"] == "finished" and report["skipped"] >= done_before
    after = endpoint.identities()[seen_before:]
    repeated = set(after) & stored
    assert not repeated, f"{len(repeated)} calls whose answers were stored were paid again"
    status = json.loads(agentopt("status", sweep_id, "--db", str(db), "--json").stdout)
    assert status["counts"] == {"finished": 4}


def test_a_sweep_on_either_database(db_url: str, echo_task_file: Path) -> None:
    endpoint = FakeEndpoint(task_aware_responder)
    try:
        data = sweep_data(echo_task_file, endpoint.url)
        data["matrix"]["strategies"] = data["matrix"]["strategies"][:1]
        archive = Archive(db_url)
        result = run_sweep(parse_sweep(data), archive, SilentReporter())
    finally:
        endpoint.close()
    assert result.status == "finished" and len(result.outcomes) == 2
    assert sweep_status(archive, result.sweep_id).counts == {"finished": 2}
    assert [s.id for s in archive.sweeps()] == [result.sweep_id]
