"""Symbolic learning with the real bundled model as task model and proposer, on a tiny budget: the
graph agent runs with its calculator tool, trajectories are stored with the results, and every
step leaves a trace in the archive (gradients on a new candidate, or a refused edit, a rollback or
a step with nothing to learn), all visible through the CLI and the HTML report. The learned graph is exported, installed into a
fresh virtualenv and replays its recorded test answers there.

The campaign is a real ``agentopt run`` process (its exit code is the main path), but on the
session's bundled-model server rather than two servers of its own: starting them cost more than
the campaign (test_strategies_local keeps a CLI starting its own). The queries, the report and the
export after it run in this process through the CLI's entry point, as nothing in them depends on
being a separate process."""

import json
import sqlite3
from pathlib import Path

import pytest
from processes import agentopt, assert_installed_and_replayed, cli, install_exported
from test_strategies_local import served_by

from agentopt.agents.models.local_model import LocalModelServers

pytestmark = pytest.mark.local_model


def test_symbolic_learning_on_the_local_model(tmp_path: Path, local_model: LocalModelServers) -> None:
    config = tmp_path / "symbolic.json"
    config.write_text(json.dumps({
        "name": "symbolic-local", "tasks": ["gsm_symbolic"],
        "models": {"task": served_by(local_model, max_tokens=48),
                   "proposer": served_by(local_model, temperature=0.7, max_tokens=160)},
        "strategy": {"name": "symbolic", "params": {"pipeline": "calculator", "steps": 2, "batch_size": 2,
                                                    "max_losses": 1, "rewrite_samples": 1, "pipeline_every": 1,
                                                    "dev_size": 2}},
        "evaluation": {"backend": "threads", "workers": 2, "val_size": 2, "test_size": 2},
        "dedup": {"functional": "off"}}))
    db = tmp_path / "a.db"
    done = agentopt("run", str(config), "--db", str(db), "--json", timeout=900)
    assert done.returncode == 0, done.stderr
    [report] = json.loads(done.stdout)
    assert report["best_agent"]["kind"] == "graph" and report["seed_test"]["n"] == 2
    assert report["stats"]["proposer_llm_calls"] > 0
    with sqlite3.connect(db) as conn:
        traces = [json.loads(t) for (t,) in conn.execute("select trace from results where trace is not null")]
        kinds = {k for (k,) in conn.execute("select kind from notes")}
    assert traces and all({"node", "prompt", "inputs", "reply", "output"} <= set(s) for t in traces for s in t)
    assert any(s["node"] == "expr" and s["tool"] == "calculator" for t in traces for s in t)
    assert kinds & {"gradients", "rejected_edit", "rollback", "step"}, "every step is recorded"
    notes = cli("archive", "notes", report["campaign_id"], "--db", str(db), "--json")
    assert notes.returncode == 0 and len(json.loads(notes.stdout)) >= 1
    lineage = cli("archive", "lineage", str(report["best_candidate_id"]), "--db", str(db))
    assert lineage.returncode == 0 and "digraph" in lineage.stdout
    html = cli("report", report["campaign_id"], "--db", str(db), "--out", str(tmp_path / "report"))
    assert html.returncode == 0, html.stderr
    page = (tmp_path / "report" / "index.html").read_text()
    assert '<table id="top">' in page and f"#{report['best_candidate_id']}" in page and "`expr` → tool `calculator`" in page, \
        "the report shows the graph as its kind describes it"
    exported = cli("export", str(report["best_candidate_id"]), "--out", str(tmp_path / "pkg"), "--db", str(db))
    assert exported.returncode == 0, exported.stderr
    assert "Graph agent, nodes in the order they run" in (tmp_path / "pkg" / "README.md").read_text()
    assert_installed_and_replayed(install_exported(tmp_path / "pkg", tmp_path / "installed",
                                                   local_model.endpoints[0].base_url))
