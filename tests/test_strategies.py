"""Each search strategy end to end against the scripted endpoint: it finds the instruction that
works, stays inside its query plan, and (Optuna) leaves a study the Optuna API can load."""

import json
from pathlib import Path
from typing import Any

import optuna
import pytest
from fakes import FakeEndpoint, demo_responder
from processes import agentopt, cli
from sqlalchemy import text
from test_campaign import config

from agentopt.agents.runtime.errors import ConfigError
from agentopt.archive.store import Archive, database_url
from agentopt.optimizer.engine.budgets import estimate
from agentopt.optimizer.engine.config import parse_config
from agentopt.optimizer.engine.runner import run_campaigns
from agentopt.optimizer.strategies.optuna_search import study_name
from agentopt.optimizer.tasks import load_task
from agentopt.optimizer.engine.ui import SilentReporter

POOL = {"n_subsamples": 3, "demos_per_subsample": 3, "samples_per_subsample": 2}
SMALL = {
    "random": {**POOL, "queries": 4, "batch": 2, "dev_size": 4},
    "opro": {"steps": 2, "per_step": 4, "dev_size": 4},
    "instinct": {**POOL, "queries": 6, "n_init": 3, "batch": 2, "dev_size": 4, "paraphrase_top": 1,
                 "paraphrase_samples": 2, "hidden": 16},
    "optuna": {**POOL, "n_trials": 8, "batch": 2, "minibatch": 3, "promote_every": 4, "demo_sets": 2,
               "bootstrap_examples": 4, "startup_trials": 3},
}

APE = {**POOL, "batch_size": 2, "pulls_per_round": 2, "racing_budget": 12, "mc_rounds": 0, "top_k": 1}
SMALL["portfolio"] = {"budget": 60, "members": [{"name": "ape", "params": APE, "share": 1},
                                                {"name": "instinct", "params": SMALL["instinct"], "share": 1}]}


def _config(endpoint: FakeEndpoint, task: Path, name: str) -> dict[str, Any]:
    data = config(task, endpoint.url, strategy={"name": name, "params": SMALL[name]})
    data["models"]["embedder"] = {"model": "fake", "base_url": endpoint.url, "max_attempts": 1}
    return data


def _run(tmp_path: Path, endpoint: FakeEndpoint, task: Path, name: str) -> tuple[Any, Archive]:
    archive = Archive(database_url(str(tmp_path / "a.db")))
    [report] = run_campaigns(parse_config(_config(endpoint, task, name)), archive, SilentReporter())
    return report, archive


@pytest.mark.parametrize("name", ["instinct", "optuna", "opro", "random"])
def test_strategy_finds_the_echo_instruction_within_its_plan(tmp_path: Path, fake_endpoint: FakeEndpoint,
                                                             echo_task_file: Path, name: str) -> None:
    report, archive = _run(tmp_path, fake_endpoint, echo_task_file, name)
    assert "echo" in report.best_agent["instruction"].lower(), report.best_agent
    assert report.best_test.mean == 1.0 and report.seed_test.mean == 0.0
    cfg = parse_config(_config(fake_endpoint, echo_task_file, name))
    bound = estimate(cfg, load_task(str(echo_task_file)))
    assert report.stats["task_llm_calls"] <= bound["task_role"]["calls"]
    assert report.stats["proposer_llm_calls"] <= bound["proposer"]["calls"]


def test_optuna_study_lives_in_the_archive_database(tmp_path: Path, fake_endpoint: FakeEndpoint,
                                                   echo_task_file: Path) -> None:
    report, archive = _run(tmp_path, fake_endpoint, echo_task_file, "optuna")
    study = optuna.load_study(study_name=study_name(report.campaign_id), storage=archive.url)
    trials = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(trials) == SMALL["optuna"]["n_trials"]
    assert {"instruction", "demo_set"} <= set(trials[0].params) and "candidate_id" in trials[0].user_attrs
    assert study.best_value == 1.0
    assert Archive(archive.url).campaign(report.campaign_id).status == "finished"


def test_portfolio_members_share_proposals_archive_and_budget(tmp_path: Path, fake_endpoint: FakeEndpoint,
                                                             echo_task_file: Path) -> None:
    report, archive = _run(tmp_path, fake_endpoint, echo_task_file, "portfolio")
    assert "echo" in report.best_agent["instruction"].lower()
    with archive.session() as s:
        labels = {row[0] for row in s.execute(text("select strategy from candidates"))}
    assert {"ape", "instinct", "seed"} <= labels
    generated = POOL["n_subsamples"] * POOL["samples_per_subsample"]
    paraphrases = SMALL["instinct"]["paraphrase_top"] * SMALL["instinct"]["paraphrase_samples"]
    assert report.stats["proposer_llm_calls"] <= generated + paraphrases, "instinct re-used ape's proposals"
    assert report.stats["proposals"] >= 2 * generated


def test_portfolio_config_errors_are_one_line(tmp_path: Path, echo_task_file: Path) -> None:
    bad = config(echo_task_file, "http://127.0.0.1:9/v1", strategy={"name": "portfolio", "params": {
        "members": [{"name": "nope"}]}})
    with pytest.raises(ConfigError, match="unknown portfolio member 'nope'"):
        parse_config(bad)


BUILT_IN = {"adas", "ape", "instinct", "opro", "optuna", "portfolio", "random", "reflective", "symbolic"}


def test_strategies_command_lists_strategies_and_their_params() -> None:
    """In this process, which saves a child's seconds of imports, the registry also holds what other tests
    registered (a user's strategy is a registration away): the exact list is checked in a child below."""
    listed = cli("strategies", "--json")
    assert listed.returncode == 0
    assert BUILT_IN <= {r["name"] for r in json.loads(listed.stdout)}
    params = cli("strategies", "instinct", "--json")
    assert {"queries", "n_init", "acquisition", "lam", "nu"} <= {r["param"] for r in json.loads(params.stdout)}
    unknown = cli("strategies", "nope")
    assert unknown.returncode == 2 and "unknown strategy 'nope'" in unknown.stderr


@pytest.mark.slow
def test_the_installed_command_lists_the_built_in_strategies_and_an_unknown_one_exits_2_from_the_installed_command() -> None:
    """The exit code a shell sees, and the list a fresh process has, through the console script."""
    listed = agentopt("strategies", "--json")
    assert listed.returncode == 0 and {r["name"] for r in json.loads(listed.stdout)} == BUILT_IN
    unknown = agentopt("strategies", "nope")
    assert unknown.returncode == 2 and "unknown strategy 'nope'" in unknown.stderr


def test_optuna_searches_how_many_demonstrations_to_retrieve(tmp_path: Path, echo_task_file: Path) -> None:
    endpoint = FakeEndpoint(demo_responder)  # the task model repeats its input only after a worked example
    params = {**SMALL["optuna"], "demo_sets": 0, "retrieve": [0, 2]}
    archive = Archive(database_url(str(tmp_path / "a.db")))
    try:
        [report] = run_campaigns(parse_config(config(echo_task_file, endpoint.url, strategy={
            "name": "optuna", "params": params})), archive, SilentReporter())
    finally:
        endpoint.close()
    assert report.best_agent["retrieve"] == 2 and report.best_test.mean == 1.0 and report.seed_test.mean == 0.0
    assert len(report.best_agent["demo_pool"]) == len(load_task(str(echo_task_file)).train)
    study = optuna.load_study(study_name=study_name(report.campaign_id), storage=archive.url)
    assert {t.params["retrieve"] for t in study.trials} == {0, 2}, "k is one of the searched dimensions"
