"""The real thing: the bundled model, a multi-node Ray cluster, a hard budget, and a killed driver."""

import json
import signal
import sqlite3
import subprocess
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from processes import AGENTOPT, agentopt, cli, stored_results, wait_until

pytestmark = [pytest.mark.local_model, pytest.mark.cluster]

APE_TINY = {"n_subsamples": 2, "demos_per_subsample": 3, "samples_per_subsample": 2, "candidate_demos": 2,
            "batch_size": 4, "pulls_per_round": 2, "racing_budget": 24, "mc_rounds": 0, "top_k": 2}


def _config(tmp_path: Path, **overrides: Any) -> Path:
    data = {"name": "cluster", "tasks": ["larger_animal"], "local_model": {"servers": 1, "threads": 1},
            "strategy": {"name": "ape", "params": APE_TINY},
            "evaluation": {"backend": "ray", "workers": 2, "concurrency": 2, "val_size": 10, "test_size": 10},
            **overrides}
    path = tmp_path / "cluster.yaml"
    path.write_text(json.dumps(data))
    return path


@pytest.fixture(scope="module")
def two_node_cluster() -> Iterator[str]:
    """A Ray head and a second node process, each with its own CPU, on this machine: started once for
    the module (about 12 s) and joined by each test's campaign, whose Ray job ends with its process."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    try:
        yield cluster.address
    finally:
        cluster.shutdown()


def test_campaign_on_a_two_node_cluster_spreads_evaluations_and_obeys_a_budget(
        tmp_path: Path, two_node_cluster: str) -> None:
    db = tmp_path / "a.db"
    config = _config(tmp_path, budget={"task": {"calls": 70}})
    dry = cli("run", str(config), "--dry-run")
    assert dry.returncode == 0 and "calls ≤" in dry.stdout and not db.exists()
    done = agentopt("run", str(config), "--db", str(db), "--address", two_node_cluster, "--json", timeout=900)
    assert done.returncode == 0, done.stderr
    [report] = json.loads(done.stdout)
    with sqlite3.connect(db) as conn:
        nodes = {r[0].split("/")[0] for r in conn.execute("select worker from results where worker is not null")}
        task_calls = conn.execute("select count(*) from llm_calls where role = 'task'").fetchone()[0]
    assert len(nodes) >= 2, f"evaluations ran on more than one node: {nodes}"
    assert task_calls <= 70 and report["stats"]["task_llm_calls"] == task_calls
    assert report["stopped_by"] in (None, "task.calls")
    assert report["best_test"]["n"] + report["best_test"]["n_errors"] == 10


def test_real_model_campaign_killed_with_sigkill_resumes_to_the_end(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    config = _config(tmp_path, evaluation={"backend": "threads", "workers": 1, "concurrency": 2,
                                           "val_size": 10, "test_size": 10})
    proc = subprocess.Popen([AGENTOPT, "run", str(config), "--db", str(db), "--quiet"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert wait_until(lambda: stored_results(db) >= 12, 600), "the campaign never got going"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    with sqlite3.connect(db) as conn:
        campaign = conn.execute("select id from campaigns").fetchone()[0]
        calls_before = {r[0] for r in conn.execute("select key from llm_calls")}
        results_before = conn.execute("select count(*) from results where error is null").fetchone()[0]
    resumed = agentopt("resume", campaign, "--db", str(db), "--force", "--json", timeout=900)
    assert resumed.returncode == 0, resumed.stderr
    [report] = json.loads(resumed.stdout)
    with sqlite3.connect(db) as conn:
        calls_after = {r[0] for r in conn.execute("select key from llm_calls")}
        results_after = conn.execute("select count(*) from results where error is null").fetchone()[0]
        status = conn.execute("select status from campaigns").fetchone()[0]
    assert status == "finished" and calls_before <= calls_after and results_after >= results_before
    assert report["stats"]["task_llm_calls"] + report["stats"]["proposer_llm_calls"] == len(calls_after), \
        "the ledger counts each stored call once: nothing before the kill was paid again"
    assert report["best_test"]["n"] == 10


RANDOM_TINY = {"n_subsamples": 2, "demos_per_subsample": 3, "samples_per_subsample": 2, "queries": 3, "batch": 2,
               "dev_size": 4}


def test_sweep_of_four_campaigns_on_a_two_node_cluster_overlaps_and_keeps_the_endpoint_limit(
        tmp_path: Path, two_node_cluster: str, local_model: Any) -> None:
    """The real model behind a counting proxy: the limit of 2 in flight holds across the campaigns."""
    import httpx

    from fakes import FakeEndpoint

    target = local_model.endpoints[0]

    def forward(body: dict[str, Any]) -> tuple[int, Any]:
        reply = httpx.post(f"{target.base_url}/chat/completions", json={**body, "model": target.model}, timeout=120)
        return reply.status_code, reply.json()

    proxy = FakeEndpoint(forward)
    role = {"model": target.model, "endpoints": [{"base_url": proxy.url, "max_concurrency": 2}], "max_attempts": 2}
    sweep = {"name": "real", "tasks": ["larger_animal"],
             "models": {"task": role, "proposer": {**role, "temperature": 0.9, "max_tokens": 48}},
             "evaluation": {"backend": "threads", "workers": 1, "concurrency": 2, "val_size": 4, "test_size": 4},
             "dedup": {"probe_size": 2},  # what is asserted is where and how many at once, not how well
             "matrix": {"strategies": [{"name": "ape", "params": {**APE_TINY, "racing_budget": 12}},
                                       {"name": "random", "params": RANDOM_TINY}], "seeds": [0, 1]},
             "sweep": {"concurrency": 4}}
    path = tmp_path / "sweep.yaml"
    path.write_text(json.dumps(sweep))
    db = tmp_path / "a.db"
    try:
        done = agentopt("sweep", str(path), "--db", str(db), "--address", two_node_cluster, "--json", timeout=1200)
    finally:
        proxy.close()
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert [o["status"] for o in report["campaigns"]] == ["finished"] * 4
    with sqlite3.connect(db) as conn:
        spans = conn.execute("select created_at, finished_at from campaigns order by created_at").fetchall()
        nodes = {r[0].split("/")[0] for r in conn.execute("select worker from results where worker is not null")}
    print("campaign start / end:", *spans, sep="\n  ")
    starts, ends = [datetime.fromisoformat(s) for s, _ in spans], [datetime.fromisoformat(e) for _, e in spans]
    print(f"start spread: {(max(starts) - min(starts)).total_seconds():.1f} s")
    assert len(spans) == 4 and max(starts) < min(ends), f"all 4 at once: each started before any finished: {spans}"
    assert len(nodes) >= 2, f"campaign drivers ran on more than one node: {nodes}"
    assert 0 < proxy.max_active <= 2, f"{proxy.max_active} requests at once on an endpoint limited to 2"
    compared = cli("archive", "compare", "--sweep", report["sweep_id"], "--db", str(db), "--out",
                        str(tmp_path / "cmp"))
    assert compared.returncode == 0, compared.stderr
    assert "Holm" in (tmp_path / "cmp" / "compare.md").read_text()
