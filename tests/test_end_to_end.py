"""A real campaign on the bundled model, on Ray, then the archive, a re-run and an export."""

import json
import os
import subprocess
import sys
import venv
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.local_model
AGENTOPT = str(Path(sys.executable).parent / "agentopt")

TINY = """
name: tiny
tasks: [singular_to_plural]
models:
  task: {model: local, max_tokens: 16}
  proposer: {model: local, temperature: 0.9, max_tokens: 40}
local_model: {servers: 1}
strategy:
  name: ape
  params: {n_subsamples: 2, demos_per_subsample: 4, samples_per_subsample: 2, candidate_demos: 2,
           batch_size: 3, pulls_per_round: 2, racing_budget: 12, mc_rounds: 1, mc_top: 1, mc_samples: 1,
           mc_budget: 3, top_k: 2}
evaluation: {backend: ray, workers: 2, val_size: 6, test_size: 6}
"""


def agentopt(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([AGENTOPT, *args], capture_output=True, text=True, timeout=900,
                          env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def campaign(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    tmp = tmp_path_factory.mktemp("e2e")
    (tmp / "tiny.yaml").write_text(TINY)
    result = agentopt("run", str(tmp / "tiny.yaml"), "--db", str(tmp / "a.db"), "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    return tmp, json.loads(result.stdout)


def test_campaign_runs_on_ray_with_the_real_model(campaign: tuple[Path, list[dict[str, Any]]]) -> None:
    _, [report] = campaign
    assert report["stats"]["task_llm_calls"] > 0 and report["stats"]["proposer_llm_calls"] > 0
    assert report["best_test"]["n"] + report["best_test"]["n_errors"] == 6
    assert report["seed_test"]["n"] + report["seed_test"]["n_errors"] == 6
    assert report["best_agent"]["kind"] == "prompt"


def test_rerun_makes_zero_llm_calls(campaign: tuple[Path, list[dict[str, Any]]]) -> None:
    tmp, [first] = campaign
    result = agentopt("run", str(tmp / "tiny.yaml"), "--db", str(tmp / "a.db"), "--json")
    [again] = json.loads(result.stdout)
    assert again["stats"]["task_llm_calls"] == 0 and again["stats"]["proposer_llm_calls"] == 0
    assert again["stats"]["task_cache_hits"] > 0
    assert again["best_agent"] == first["best_agent"]


def test_export_installs_in_a_fresh_venv_and_answers(campaign: tuple[Path, list[dict[str, Any]]],
                                                      local_model: Any) -> None:
    tmp, [report] = campaign
    out = tmp / "pkg"
    result = agentopt("export", str(report["best_candidate_id"]), "--out", str(out), "--db", str(tmp / "a.db"))
    assert result.returncode == 0, result.stderr
    card = (out / "README.md").read_text()
    assert "singular_to_plural" in card and "| test |" in card and "smollm2-135m-instruct" in card
    assert str(tmp) not in "".join(p.read_text() for p in out.rglob("*") if p.is_file())
    env_dir = tmp / "venv"
    venv.create(env_dir, with_pip=True)
    install = subprocess.run([str(env_dir / "bin" / "pip"), "install", "-q", str(out)], capture_output=True, text=True,
                             timeout=900)
    assert install.returncode == 0, install.stderr[-2000:]
    script = env_dir / "bin" / out.joinpath("pyproject.toml").read_text().split('name = "')[1].split('"')[0]
    env = {"PATH": os.environ["PATH"], "AGENTOPT_BASE_URL": local_model.endpoints[0].base_url}
    answer = subprocess.run([str(script), "mouse"], capture_output=True, text=True, timeout=120, env=env)
    assert answer.returncode == 0, answer.stderr[-2000:]
    assert answer.stdout.strip()
