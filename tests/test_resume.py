"""Crash safety: SIGKILL the driver or a Ray worker mid-campaign; nothing is lost or paid twice.

The reference is the same campaign run without interruption against an identical scripted
endpoint: the killed-and-resumed archive must hold exactly its candidates and results, and every
request the endpoint saw twice must be one whose answer had not been stored before the kill.

The status queries, the refusal to resume a campaign whose heartbeat is fresh and the resume of a
finished campaign run in this process (:func:`processes.cli`): they only read the archive, and the
first two must land within the 30 s the killed driver's last heartbeat stays fresh, which a loaded
machine's two CLI start-ups (seconds each) could use up. The campaign and the forced resume on Ray
are real ``agentopt`` processes, the resume's exit code included.
"""

import json
import os
import signal
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeEndpoint, identity, task_aware_responder
from processes import AGENTOPT, agentopt, cli, stored_results, wait_until
from test_campaign import config

from agentopt.archive.store import Archive, database_url
from agentopt.optimizer.engine.config import parse_config
from agentopt.optimizer.engine.runner import run_campaigns
from agentopt.optimizer.engine.ui import SilentReporter

pytestmark = pytest.mark.cluster

RAY = {"backend": "ray", "workers": 2, "concurrency": 2}


def _archive_state(db: Path) -> tuple[set[str], set[tuple[str, str, str]], int]:
    """Candidate hashes, (candidate hash, split, example) of results, and error rows."""
    with sqlite3.connect(db) as conn:
        hashes = {r[0] for r in conn.execute("select content_hash from candidates")}
        results = set(conn.execute("select c.content_hash, r.split, r.example_id from results r "
                                   "join candidates c on c.id = r.candidate_id").fetchall())
        errors = conn.execute("select count(*) from results where error is not null").fetchone()[0]
    return hashes, results, errors


def _cached_identities(db: Path) -> set[str]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("select request from llm_calls").fetchall()
    return {identity(r["messages"], r["sample"]) for r in (json.loads(row[0]) for row in rows)}


def _reference(tmp_path: Path, task: Path) -> tuple[set[str], set[tuple[str, str, str]], set[str]]:
    endpoint = FakeEndpoint(task_aware_responder)
    try:
        db = tmp_path / "reference.db"
        run_campaigns(parse_config(config(task, endpoint.url)), Archive(database_url(str(db))), SilentReporter())
    finally:
        endpoint.close()
    hashes, results, _ = _archive_state(db)
    return hashes, results, set(endpoint.identities())


def _start(tmp_path: Path, task: Path, endpoint: FakeEndpoint, db: Path) -> subprocess.Popen[str]:
    path = tmp_path / "campaign.yaml"
    path.write_text(json.dumps(config(task, endpoint.url, evaluation=RAY)))
    return subprocess.Popen([AGENTOPT, "run", str(path), "--db", str(db), "--quiet"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _campaign_id(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        return str(conn.execute("select id from campaigns").fetchone()[0])


def test_sigkill_of_the_driver_then_resume_loses_nothing_and_pays_nothing_twice(tmp_path: Path,
                                                                                echo_task_file: Path) -> None:
    ref_hashes, ref_results, ref_requests = _reference(tmp_path, echo_task_file)
    endpoint = FakeEndpoint(task_aware_responder, delay_s=0.1)
    db = tmp_path / "a.db"
    try:
        proc = _start(tmp_path, echo_task_file, endpoint, db)
        assert wait_until(lambda: stored_results(db) >= 25, 180), "the campaign never got going"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        paid_before_kill = _cached_identities(db)
        campaign = _campaign_id(db)

        refused = cli("resume", campaign, "--db", str(db))
        assert refused.returncode == 2 and "is being run by a live process" in refused.stderr
        status = cli("status", campaign, "--db", str(db), "--json")
        assert json.loads(status.stdout)["status"].startswith("running (heartbeat")

        resumed = agentopt("resume", campaign, "--db", str(db), "--force", "--quiet", timeout=600)
        assert resumed.returncode == 0, resumed.stderr
    finally:
        endpoint.close()
    hashes, results, errors = _archive_state(db)
    assert (hashes, results, errors) == (ref_hashes, ref_results, 0), "exactly the uninterrupted campaign's work"
    seen: dict[str, int] = {}
    for request in endpoint.identities():
        seen[request] = seen.get(request, 0) + 1
    repeated = {r for r, n in seen.items() if n > 1}
    assert set(seen) == ref_requests
    assert not repeated & paid_before_kill, "no call whose answer was stored before the kill was made again"
    assert len(repeated) <= RAY["workers"] * RAY["concurrency"] + 2, "only calls in flight at the kill repeat"
    report: dict[str, Any] = json.loads(cli("status", campaign, "--db", str(db), "--json").stdout)
    assert report["status"] == "finished"
    assert report["spend"]["task"]["calls"] + report["spend"]["proposer"]["calls"] == len(set(seen))
    again = cli("resume", campaign, "--db", str(db))
    assert again.returncode == 0 and "already finished" in again.stdout


def test_sigkill_of_a_ray_worker_mid_campaign_is_survived(tmp_path: Path, echo_task_file: Path) -> None:
    ref_hashes, ref_results, _ = _reference(tmp_path, echo_task_file)
    endpoint = FakeEndpoint(task_aware_responder, delay_s=0.1)
    db = tmp_path / "a.db"

    def a_worker_pid() -> int | None:
        try:
            with sqlite3.connect(db) as conn:
                row = conn.execute("select worker from results where worker is not null limit 1").fetchone()
        except sqlite3.Error:
            return None
        return int(row[0].split("/")[1]) if row else None

    try:
        proc = _start(tmp_path, echo_task_file, endpoint, db)
        assert wait_until(lambda: a_worker_pid() is not None and stored_results(db) >= 20, 180)
        victim = a_worker_pid()
        assert victim is not None
        os.kill(victim, signal.SIGKILL)
        _, stderr = proc.communicate(timeout=600)
    finally:
        endpoint.close()
    assert proc.returncode == 0, stderr
    hashes, results, errors = _archive_state(db)
    assert (hashes, results, errors) == (ref_hashes, ref_results, 0), "the killed worker's examples ran elsewhere"
    with sqlite3.connect(db) as conn:
        workers = {r[0] for r in conn.execute("select distinct worker from results")}
    assert any(w.endswith(f"/{victim}") for w in workers), "the victim had done work before it was killed"
    assert len(workers) >= 3, "a replacement worker took over"
