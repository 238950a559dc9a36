"""Meta Agent Search with the real bundled model as meta agent and task model, on a tiny budget:
seed code agents run in the sandbox through the parent's client, and whatever the 135M meta agent
writes is either evaluated or kept as a failed generation with its reason. The winner is exported,
installed into a fresh virtualenv and replays its recorded test answers, still in the sandbox.

The campaign is a real ``agentopt run`` process (its exit code is the main path), but on the
session's bundled-model server rather than two servers of its own: starting them cost more than
the campaign (test_strategies_local keeps a CLI starting its own). The export after it runs in this
process through the CLI's entry point, as nothing in it depends on being a separate process."""

import json
import sqlite3
from pathlib import Path

import pytest
from processes import agentopt, assert_installed_and_replayed, cli, install_exported
from test_strategies_local import served_by

from agentopt.agents.models.local_model import LocalModelServers

pytestmark = pytest.mark.local_model


def test_meta_agent_search_on_the_local_model(tmp_path: Path, local_model: LocalModelServers) -> None:
    config = tmp_path / "adas.json"
    config.write_text(json.dumps({
        "name": "adas-local", "tasks": ["gsm_symbolic"],
        "models": {"task": served_by(local_model, max_tokens=48),
                   "proposer": served_by(local_model, temperature=0.7, max_tokens=200)},
        "strategy": {"name": "adas", "params": {"generations": 1, "seeds": ["chain_of_thought", "step_back"],
                                                "reflexions": 1, "debug_turns": 1, "debug_examples": 1,
                                                "meta_max_tokens": 200}},
        "evaluation": {"backend": "threads", "workers": 2, "val_size": 3, "test_size": 3},
        "dedup": {"functional": "off"}}))
    db = tmp_path / "a.db"
    done = agentopt("run", str(config), "--db", str(db), "--json", timeout=900)
    assert done.returncode == 0, done.stderr
    [report] = json.loads(done.stdout)
    stats = report["stats"]
    assert stats["proposals"] >= 1 and stats["task_llm_calls"] > 0
    with sqlite3.connect(db) as conn:
        kinds = {r[0] for r in conn.execute("select kind from candidates")}
        seed_rows = conn.execute("select count(*) from results r join candidates c on c.id = r.candidate_id "
                                 "where c.kind = 'code' and r.split = 'val'").fetchone()[0]
    assert "code" in kinds and seed_rows >= 2 * 3, "both seed code agents were scored on validation"
    made = stats["proposals"] - sum(v for k, v in stats.items() if k.startswith("rejected:"))
    assert made >= 0 and stats.get("failed generations", 0) <= 1
    assert report["best_agent"]["kind"] == "code"
    exported = cli("export", str(report["best_candidate_id"]), "--out", str(tmp_path / "pkg"), "--db", str(db))
    assert exported.returncode == 0, exported.stderr
    assert "```python" in (tmp_path / "pkg" / "README.md").read_text()
    assert_installed_and_replayed(install_exported(tmp_path / "pkg", tmp_path / "installed",
                                                   local_model.endpoints[0].base_url))
