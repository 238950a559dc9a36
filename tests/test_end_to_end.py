"""A real campaign on the bundled model, on Ray, then the archive, a re-run and an export."""

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from agentopt.agents.models.local_model import SERVER_SCRIPT
from processes import (
    agentopt,
    assert_installed_and_replayed,
    cli,
    install_exported,
    interrupt_campaign,
    wait_until,
)

pytestmark = pytest.mark.local_model

TINY = """
name: tiny
tasks: [singular_to_plural]
models:
  task: {model: local, max_tokens: 16}
  proposer: {model: local, temperature: 0.9, max_tokens: 40}
local_model: {servers: 1, threads: 1}  # one core: pytest-xdist runs another test beside it
strategy:
  name: ape
  params: {n_subsamples: 2, demos_per_subsample: 4, samples_per_subsample: 2, candidate_demos: 2,
           batch_size: 3, pulls_per_round: 2, racing_budget: 12, mc_rounds: 1, mc_top: 1, mc_samples: 1,
           mc_budget: 3, top_k: 2}
evaluation: {backend: ray, workers: 2, val_size: 6, test_size: 6}
"""


@pytest.fixture(scope="module")
def campaign(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    tmp = tmp_path_factory.mktemp("e2e")
    (tmp / "tiny.yaml").write_text(TINY)
    result = agentopt("run", str(tmp / "tiny.yaml"), "--db", str(tmp / "a.db"), "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    return tmp, json.loads(result.stdout)


def test_campaign_runs_on_ray_with_the_real_model(campaign: tuple[Path, list[dict[str, Any]]]) -> None:
    tmp, [report] = campaign
    assert report["stats"]["task_llm_calls"] > 0 and report["stats"]["proposer_llm_calls"] > 0
    assert report["best_test"]["n"] + report["best_test"]["n_errors"] == 6
    assert report["seed_test"]["n"] + report["seed_test"]["n_errors"] == 6
    assert report["best_agent"]["kind"] == "prompt"
    with sqlite3.connect(tmp / "a.db") as conn:
        rationales = [r for (r,) in conn.execute("select rationale from candidates where campaign_id = ?",
                                                 (report["campaign_id"],))]
    assert "seed instruction with demonstrations" in rationales, "the seed must race with the kept demos"
    stats = report["stats"]
    rejected = sum(v for k, v in stats.items() if k.startswith("rejected: "))
    proposed = sum(r != "seed" and not r.startswith("seed instruction") for r in rationales)
    assert stats["proposals"] == 2 * 2 + 1 * 1, "forward samples plus Monte Carlo variations"
    assert proposed + rejected + stats.get("content duplicates", 0) >= stats["proposals"], "every proposal is accounted for"


def test_ctrl_c_stops_the_real_campaign_and_leaves_no_process(tmp_path: Path) -> None:
    (tmp_path / "tiny.yaml").write_text(TINY)
    below = interrupt_campaign(tmp_path / "tiny.yaml", tmp_path / "a.db", after_results=2, timeout=300)
    with sqlite3.connect(tmp_path / "a.db") as conn:
        assert conn.execute("select count(*) from llm_calls").fetchone()[0] >= 2, "finished calls stay cached"
    for name in (SERVER_SCRIPT.name, "raylet", "gcs_server"):
        assert any(name in command.split() for command in below.values()), f"the campaign ran no {name}: {below}"
    assert wait_until(lambda: not any(Path(f"/proc/{pid}").exists() for pid in below), timeout=60), \
        f"outlived the run: {[below[p] for p in below if Path(f'/proc/{p}').exists()]}"


def test_rerun_makes_zero_llm_calls(campaign: tuple[Path, list[dict[str, Any]]]) -> None:
    tmp, [first] = campaign
    result = agentopt("run", str(tmp / "tiny.yaml"), "--db", str(tmp / "a.db"), "--json")
    [again] = json.loads(result.stdout)
    assert again["stats"]["task_llm_calls"] == 0 and again["stats"]["proposer_llm_calls"] == 0
    assert again["stats"]["task_cache_hits"] > 0
    assert again["best_agent"] == first["best_agent"]


def test_export_installs_in_a_fresh_venv_and_replays(campaign: tuple[Path, list[dict[str, Any]]],
                                                      local_model: Any) -> None:
    tmp, [report] = campaign
    out = tmp / "pkg"
    result = cli("export", str(report["best_candidate_id"]), "--out", str(out), "--db", str(tmp / "a.db"))
    assert result.returncode == 0, result.stderr
    card = (out / "README.md").read_text()
    assert "singular_to_plural" in card and "| test |" in card and "smollm2-135m-instruct" in card
    assert str(tmp) not in "".join(p.read_text() for p in out.rglob("*") if p.is_file())
    steps = install_exported(out, tmp / "installed", local_model.endpoints[0].base_url)
    assert_installed_and_replayed(steps)


def test_archive_queries_and_dedup_on_the_real_campaign(campaign: tuple[Path, list[dict[str, Any]]]) -> None:
    """The queries run in-process (the CLI's entry point, no import cost); the campaign, its re-run and
    Ctrl-C are real processes."""
    tmp, [report] = campaign
    db, best = str(tmp / "a.db"), report["best_candidate_id"]
    stats = report["stats"]
    with sqlite3.connect(tmp / "a.db") as conn:
        rows = conn.execute("select id, twin_id, functional_hash from candidates where campaign_id = ?",
                            (report["campaign_id"],)).fetchall()
        evaluated = {c for (c,) in conn.execute("select candidate_id from evaluations where split != 'train'")}
        seed = conn.execute("select id from candidates where campaign_id = ? and rationale = 'seed'",
                            (report["campaign_id"],)).fetchone()[0]
    hashes = {cid: fh for cid, _, fh in rows}
    for cid, twin, fh in rows:
        if twin is not None:
            assert fh == hashes[twin] and cid not in evaluated, "a twin shares the fingerprint and is never evaluated"
    assert stats["full evaluations"] + stats["functional duplicates"] == len(rows)
    assert stats["functional dedup"] == "verify"
    top = json.loads(cli("archive", "top", "--campaign", report["campaign_id"], "--json", "--db", db).stdout)
    assert top and all(r["tokens_mean"] > 0 for r in top), "real token footprints are stored"
    front = json.loads(cli("archive", "pareto", "--campaign", report["campaign_id"], "--json", "--db", db).stdout)
    assert front and [r["tokens_mean"] for r in front] == sorted(r["tokens_mean"] for r in front)
    lineage = json.loads(cli("archive", "lineage", str(best), "--format", "json", "--db", db).stdout)
    assert best in [n["id"] for n in lineage["nodes"]]
    diff = json.loads(cli("archive", "diff", str(seed), str(best), "--json", "--db", db).stdout)
    assert diff["splits"]["test"]["shared_examples"] == 6
    compared = json.loads(cli("archive", "compare", "--task", "singular_to_plural", "--json", "--db", db).stdout)
    assert report["campaign_id"] in [c["id"] for c in compared]
