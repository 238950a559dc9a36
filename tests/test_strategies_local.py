"""Every new strategy against the real bundled model, on a tiny budget: it runs to the end, pays
only for what it asks, stores what it found, and (INSTINCT, demonstrations retrieved by embeddings)
embeds with the model's own server.

Starting a campaign's own llama.cpp servers (two chat servers, and an embedding server for the
strategies that embed) and the CLI's imports cost more than these tiny campaigns themselves, so
most cases run in this process through the CLI's entry point (:func:`cli`), with the task model and
the proposer on the session's bundled-model server and the embedder on this module's embedding
server: the same model, the same requests, the same archive. ``SELF_SERVED`` still runs as a real
``agentopt run`` process with ``model: local``, so the CLI starting and stopping its own chat and
embedding servers stays covered end to end, with its exit code."""

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
from processes import agentopt, cli

from agentopt.agents.models.local_model import LOCAL_MODEL_NAME, LocalModelServers
from agentopt.optimizer.strategies.optuna_search import study_name

pytestmark = pytest.mark.local_model

POOL = {"n_subsamples": 2, "demos_per_subsample": 3, "samples_per_subsample": 2, "candidate_demos": 2}
TINY: dict[str, dict[str, Any]] = {
    "random": {**POOL, "queries": 3},
    "opro": {"steps": 1, "per_step": 3},
    "instinct": {**POOL, "queries": 4, "n_init": 2, "paraphrase_top": 1, "paraphrase_samples": 2, "hidden": 32},
    "optuna": {**POOL, "n_trials": 4, "minibatch": 2, "promote_every": 2, "demo_sets": 2,
               "bootstrap_examples": 4, "startup_trials": 2},
    "reflective": {"iterations": 4, "minibatch": 3, "merge_every": 2},
    "optuna retrieving": {**POOL, "n_trials": 4, "minibatch": 2, "promote_every": 2, "demo_sets": 0,
                          "startup_trials": 2, "retrieve": [2]},  # one choice: every trial retrieves
    "reflective retrieving-by-embeddings": {"iterations": 2, "minibatch": 3, "mutations": ["retrieve"],
                                            "retrieval": "embedding"},
    "portfolio": {"budget": 40, "members": [{"name": "random", "params": {**POOL, "queries": 2}},
                                            {"name": "instinct", "params": {**POOL, "queries": 3, "n_init": 2,
                                                                            "paraphrase_top": 0}}]},
}
SELF_SERVED = "instinct"
"""The case whose CLI process starts its own servers: INSTINCT needs both the chat and the embedding ones."""
EMBEDS = {"instinct", "portfolio", "reflective retrieving-by-embeddings"}
"""The cases whose campaigns ask the embedder role."""


@pytest.fixture(scope="module")
def embedding_server() -> Iterator[LocalModelServers]:
    """The bundled model in embedding mode, as a campaign starts it (one server, one thread)."""
    with LocalModelServers(1, 1, embedding=True) as servers:
        yield servers


def served_by(servers: LocalModelServers, **role: Any) -> dict[str, Any]:
    """A role on already-running bundled-model servers, named as an OpenAI-compatible model."""
    return {"model": LOCAL_MODEL_NAME, "endpoints": [{"base_url": e.base_url, "max_concurrency": 2}
                                                     for e in servers.endpoints], **role}


def campaign(name: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    """``SELF_SERVED``'s config names ``model: local`` and the servers the CLI starts; the others'
    roles are on the session's chat server and, for a case that embeds, this module's embedding server."""
    task, proposer = {"max_tokens": 12}, {"temperature": 0.9, "max_tokens": 40}
    config: dict[str, Any] = {
        "name": f"local-{name}", "tasks": ["larger_animal"],
        "strategy": {"name": name.split()[0], "params": TINY[name]},
        "evaluation": {"backend": "threads", "workers": 2, "val_size": 4, "test_size": 4},
        "dedup": {"probe_size": 2}}  # functional dedup on the real model is test_dedup's and test_end_to_end's
    if name == SELF_SERVED:
        return {**config, "local_model": {"servers": 2},
                "models": {"task": {"model": "local", **task}, "proposer": {"model": "local", **proposer}}}
    chat: LocalModelServers = request.getfixturevalue("local_model")
    models = {"task": served_by(chat, **task), "proposer": served_by(chat, **proposer)}
    if name in EMBEDS:
        models["embedder"] = served_by(request.getfixturevalue("embedding_server"))
    return {**config, "models": models}


@pytest.mark.parametrize("name", sorted(TINY))
def test_strategy_on_the_local_model(tmp_path: Path, name: str, request: pytest.FixtureRequest) -> None:
    config = tmp_path / "c.json"
    config.write_text(json.dumps(campaign(name, request)))
    db = tmp_path / "a.db"
    args = ("run", str(config), "--db", str(db), "--json")
    done = agentopt(*args, timeout=900) if name == SELF_SERVED else cli(*args)
    assert done.returncode == 0, done.stderr
    [report] = json.loads(done.stdout)
    assert report["best_test"]["n"] + report["best_test"]["n_errors"] == 4
    with sqlite3.connect(db) as conn:
        roles = dict(conn.execute("select role, count(*) from llm_calls group by role").fetchall())
        val_rows = conn.execute("select count(*) from results where split = 'val'").fetchone()[0]
    assert roles.get("task", 0) == report["stats"]["task_llm_calls"] > 0 and val_rows > 0
    assert roles.get("proposer", 0) == report["stats"]["proposer_llm_calls"]
    assert report["stats"]["proposer_llm_calls"] > 0 or TINY[name].get("mutations") == ["retrieve"], \
        "every strategy but retrieval alone asks its proposer"
    if name in ("instinct", "portfolio"):
        assert roles.get("embedder", 0) > 0, "candidates were embedded by the bundled model"
    if "retrieving" in name:
        with sqlite3.connect(db) as conn:
            payloads = [json.loads(row[0]) for row in conn.execute("select payload from candidates")]
        selector = "embedding" if "embeddings" in name else None
        assert any(p.get("retrieve") and p.get("selector") == selector for p in payloads), "a candidate retrieved"
    if "embeddings" in name:
        assert roles.get("embedder", 0) > 0, "inputs and the pool were embedded by the bundled model"
    if name.startswith("reflective"):
        with sqlite3.connect(db) as conn:
            kinds = {row[0] for row in conn.execute("select kind from notes")}
        assert kinds & {"reflection", "iteration"}, "each iteration says what it tried and why"
    if name == "optuna":
        study = optuna.load_study(study_name=study_name(report["campaign_id"]), storage=f"sqlite:///{db}")
        assert len(study.trials) == TINY["optuna"]["n_trials"]
