"""Functional deduplication in a campaign: merges, the verify policy, and when it must stay off."""

from pathlib import Path
from typing import Any

import pytest
from fakes import FakeEndpoint, task_aware_responder
from sqlalchemy import select
from test_campaign import config

from agentopt.agents.llm import LLMClient, Sampling
from agentopt.agents.prompt import Demo, PromptAgent
from agentopt.archive.cache import SqlCallCache
from agentopt.archive.models import Candidate, Evaluation
from agentopt.archive.store import Archive
from agentopt.optimizer.config import parse_config
from agentopt.optimizer.dedup import FunctionalDedup, fingerprint
from agentopt.optimizer.evaluation import ThreadEvaluator
from agentopt.optimizer.runner import run_campaigns
from agentopt.optimizer.tasks import load_task
from agentopt.optimizer.tasks.metrics import normalise
from agentopt.optimizer.ui import SilentReporter


def test_fingerprint_normalises_like_the_metrics_and_refuses_errors() -> None:
    ids = ["a", "b"]
    assert fingerprint(ids, {"a": "Cold.", "b": " hot"}) == fingerprint(ids, {"a": "cold", "b": "Hot!"})
    assert fingerprint(ids, {"a": "cold", "b": "hot"}) != fingerprint(ids, {"a": "cold", "b": "warm"})
    assert fingerprint(ids, {"a": "cold", "b": None}) is None, "an error on a probe means no fingerprint"
    assert fingerprint(ids, {"a": "cold"}) is None


def candidates(archive: Archive, campaign_id: str) -> list[Candidate]:
    with archive.session() as s:
        return list(s.scalars(select(Candidate).where(Candidate.campaign_id == campaign_id).order_by(Candidate.id)))


def test_paraphrases_that_behave_alike_are_merged_and_never_evaluated(db_url: str, fake_endpoint: FakeEndpoint,
                                                                       echo_task_file: Path) -> None:
    archive = Archive(db_url)
    [report] = run_campaigns(parse_config(config(echo_task_file, fake_endpoint.url)), archive, SilentReporter())
    rows = candidates(archive, report.campaign_id)
    twins = [c for c in rows if c.twin_id is not None]
    assert twins, "the fake's echo paraphrases answer identically"
    by_id = {c.id: c for c in rows}
    for dup in twins:
        twin = by_id[dup.twin_id]
        assert twin.twin_id is None and twin.id < dup.id and twin.functional_hash == dup.functional_hash
        assert ("echo" in twin.payload["instruction"].lower()) == ("echo" in dup.payload["instruction"].lower())
        assert dup.content_hash != twin.content_hash
    with archive.session() as s:
        evaluated = set(s.scalars(select(Evaluation.candidate_id).where(Evaluation.split != "train")))
    assert not evaluated & {c.id for c in twins}, "a duplicate is never evaluated on val or test"
    stats = report.stats
    assert stats["functional duplicates"] == len(twins)
    assert stats["full evaluations"] + stats["functional duplicates"] == len(rows)
    assert "echo" in report.best_agent["instruction"].lower() and report.best_test.mean == 1.0


def _sometimes_responder(probe_inputs: set[str]) -> Any:
    """'Echo, but only sometimes.' echoes exactly the first probe set, so it matches a real echo
    prompt there and differs everywhere else: a false merge unless the match is verified."""

    def respond(body: dict[str, Any]) -> tuple[int, str]:
        last = body["messages"][-1]["content"]
        if "What was the instruction?" in last:
            return 200, ["Echo the input word.", "Echo, but only sometimes."][body.get("seed", 0) % 2]
        instruction = body["messages"][0]["content"].lower()
        if "sometimes" in instruction:
            return 200, last if last in probe_inputs else "wrong"
        return task_aware_responder(body)

    return respond


@pytest.mark.parametrize("policy", ["verify", "trust"])
def test_verify_prevents_a_false_merge_that_trust_makes(tmp_path: Path, echo_task_file: Path, policy: str) -> None:
    probe = {e.input for e in load_task(str(echo_task_file)).train[:3]}
    endpoint = FakeEndpoint(_sometimes_responder(probe))
    try:
        archive = Archive(f"sqlite:///{tmp_path / 'a.db'}")
        params = {"n_subsamples": 1, "samples_per_subsample": 2, "batch_size": 3, "racing_budget": 12,
                  "mc_rounds": 0, "top_k": 2, "include_seed": False}
        cfg = config(echo_task_file, endpoint.url, strategy={"name": "ape", "params": params},
                     dedup={"functional": policy, "probe_size": 3})
        [report] = run_campaigns(parse_config(cfg), archive, SilentReporter())
    finally:
        endpoint.close()
    sometimes = next(c for c in candidates(archive, report.campaign_id) if "sometimes" in c.payload["instruction"])
    if policy == "trust":
        assert sometimes.twin_id is not None, "trust merges on the first probe set alone"
    else:
        assert sometimes.twin_id is None and report.stats["functional matches rejected by verify"] == 1
        assert archive.evaluations(sometimes.id)["train"].mean < 1.0, "evaluated on its own, and it is worse"


def test_functional_dedup_is_off_when_the_task_model_samples(tmp_path: Path, fake_endpoint: FakeEndpoint,
                                                              echo_task_file: Path) -> None:
    cfg = config(echo_task_file, fake_endpoint.url)
    cfg["models"]["task"]["temperature"] = 0.7
    archive = Archive(f"sqlite:///{tmp_path / 'a.db'}")
    [report] = run_campaigns(parse_config(cfg), archive, SilentReporter())
    assert report.stats["functional dedup"] == "off" and report.stats["functional duplicates"] == 0
    assert all(c.functional_hash is None for c in candidates(archive, report.campaign_id))


@pytest.mark.local_model
def test_real_model_merges_a_paraphrase_and_verify_rejects_a_near_miss(tmp_path: Path, local_model: Any) -> None:
    """Fingerprints from the bundled model itself (greedy, so repeatable). With 3 demonstrations,
    a prompt differing only in its final punctuation answers all 10 probe inputs alike and is
    merged; "each word" agrees on the first 4 probes but not on the verify set, so it is not."""
    task = load_task("singular_to_plural")
    archive = Archive(f"sqlite:///{tmp_path / 'a.db'}")
    campaign = archive.create_campaign("real", task.name, "ape", {})
    demos = tuple(Demo(input=e.input, output=e.target) for e in task.train[10:13])
    agents = {"base": PromptAgent(instruction="Give the plural of the word.", demos=demos),
              "paraphrase": PromptAgent(instruction="Give the plural of the word!", demos=demos),
              "near miss": PromptAgent(instruction="Give the plural of each word.", demos=demos),
              "different": PromptAgent(instruction="Translate the word into French.")}
    ids = {name: archive.add_candidate(campaign, agent, "ape")[0] for name, agent in agents.items()}
    llm = LLMClient(local_model.endpoints, SqlCallCache(archive), Sampling(max_tokens=16))
    evaluator = ThreadEvaluator(llm, workers=2)
    stats = {"functional duplicates": 0, "functional matches rejected by verify": 0}
    dedup = FunctionalDedup(archive, "verify", task.train[:4], task.train[4:10],
                            lambda jobs: evaluator.evaluate(jobs, lambda j, o: archive.add_result(j.candidate_id, j.split, o)),
                            stats)
    try:
        twins = dedup.twins({i: agents[name].payload() for name, i in ids.items()})
    finally:
        evaluator.close()
    assert twins == {ids["paraphrase"]: ids["base"]}
    assert stats == {"functional duplicates": 1, "functional matches rejected by verify": 1}
    assert archive.candidate(ids["paraphrase"]).twin_id == ids["base"]
    assert archive.candidate(ids["near miss"]).functional_hash == archive.candidate(ids["base"]).functional_hash
    assert archive.candidate(ids["near miss"]).twin_id is None, "agreed on the probe set, not on the verify set"
    assert archive.candidate(ids["different"]).twin_id is None
    probes = [e.id for e in task.train[:10]]
    base, paraphrase = ({k: normalise(v or "") for k, v in archive.outputs(ids[n], "train", probes).items()}
                        for n in ("base", "paraphrase"))
    assert len(base) == 10 and base == paraphrase, "merged only after agreeing on both probe sets"
