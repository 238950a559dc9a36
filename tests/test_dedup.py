"""Functional deduplication in a campaign: merges, the verify policy, and when it must stay off."""

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeEndpoint, task_aware_responder
from sqlalchemy import select
from test_campaign import config

from agentopt.agents.runtime import prompt_runtime
from agentopt.agents.code_agent import CodeAgent
from agentopt.agents.models.llm import LLMClient, Sampling
from agentopt.agents.prompt import Demo, PromptAgent
from agentopt.archive.cache import SqlCallCache
from agentopt.archive.models import Candidate, Evaluation
from agentopt.archive.store import Archive, ExampleOutcome
from agentopt.optimizer.engine.config import parse_config
from agentopt.optimizer.engine.dedup import FunctionalDedup, fingerprint
from agentopt.optimizer.strategies.counters import Counters
from agentopt.optimizer.engine.evaluation import Job, ThreadEvaluator
from agentopt.optimizer.engine.runner import run_campaigns
from agentopt.optimizer.tasks import Example, load_task
from agentopt.optimizer.tasks.metrics import get_metric, normalise
from agentopt.optimizer.engine.ui import SilentReporter


def test_fingerprint_compares_the_metrics_key_and_refuses_errors() -> None:
    ids = ["a", "b"]
    key = get_metric("exact_match").key
    assert fingerprint(ids, {"a": "Cold.", "b": " hot"}, key) == fingerprint(ids, {"a": "cold", "b": "Hot!"}, key)
    assert fingerprint(ids, {"a": "cold", "b": "hot"}, key) != fingerprint(ids, {"a": "cold", "b": "warm"}, key)
    assert fingerprint(ids, {"a": "cold", "b": None}, key) is None, "an error on a probe means no fingerprint"
    assert fingerprint(ids, {"a": "cold"}, key) is None
    raw = get_metric("last_number").key
    assert fingerprint(ids, {"a": "-5", "b": "1"}, raw) != fingerprint(ids, {"a": "5", "b": "1"}, raw), \
        "normalising would strip the minus sign that last_number scores"


def _dedup_of(archive: Archive, outputs: dict[str, dict[str, str]], key: Any, probe: Sequence[Example]) -> FunctionalDedup:
    """Functional dedup whose 'evaluation' stores each candidate's scripted outputs (by instruction)."""
    def run_jobs(jobs: list[Job]) -> None:
        for job in jobs:
            output = outputs[job.payload["code"]][job.example_id]
            archive.add_result(job.candidate_id, job.split, ExampleOutcome(job.example_id, output, None, None, {}))

    return FunctionalDedup(archive, "trust", tuple(probe), (), run_jobs, Counters(), key)


def test_code_differing_only_in_indentation_is_never_merged_on_a_metric_that_runs_it(tmp_path: Path) -> None:
    """HumanEval scores ``if x:\n  return 1`` and a mis-indented copy differently; its key is the raw
    output, so the two are different behaviours. A text metric's normalised key would merge them."""
    probe = [Example(f"train-{i}", f"def f{i}(x):", "{}") for i in range(2)]
    good = {e.id: f"def f{i}(x):\n    if x:\n        return 1\n    return 0" for i, e in enumerate(probe)}
    flat = {e.id: f"def f{i}(x):\n    if x:\n    return 1\n    return 0" for i, e in enumerate(probe)}
    outputs = {"good": good, "flat": flat}
    agents = [CodeAgent(name=n, code=f"def forward(task):\n    return {n!r}") for n in outputs]
    for metric, merged in (("humaneval", False), ("exact_match", True)):
        archive = Archive(f"sqlite:///{tmp_path / (metric + '.db')}")
        campaign = archive.create_campaign("c", "humaneval", "adas", {})
        ids = [archive.add_candidate(campaign, agent, "adas")[0] for agent in agents]
        by_code = {agent.code: outputs[agent.name] for agent in agents}
        dedup = _dedup_of(archive, by_code, get_metric(metric).key, probe)
        twins = dedup.twins({i: agent.payload() for i, agent in zip(ids, agents, strict=True)})
        assert bool(twins) is merged, metric


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


def _answers(archive: Archive, candidate_id: int, examples: Sequence[Example]) -> dict[str, str] | None:
    """A candidate's stored answers, normalised as fingerprints compare them; ``None`` if any failed."""
    outputs = archive.outputs(candidate_id, "train", [e.id for e in examples])
    if len(outputs) < len(examples) or any(v is None for v in outputs.values()):
        return None
    return {k: normalise(v or "") for k, v in outputs.items()}


def _with_postprocess(agent: PromptAgent, **changes: Any) -> PromptAgent:
    return agent.model_copy(update={"postprocess": agent.postprocess.model_copy(update=changes)})


def _answer(agent: PromptAgent, reply: str) -> str:
    return normalise(prompt_runtime.postprocess(reply, agent.postprocess.model_dump()))


def _eraser(base: PromptAgent, replies: dict[str, str], erase: Sequence[Example],
            keep: Sequence[Example]) -> PromptAgent:
    """``base`` that also strips, as a lead-in, its whole answer to one input of ``erase``.

    It sends the very requests ``base`` sends, so it gets the same replies (the call cache serves
    them); post-processing those replies decides its answers: nothing for that input, ``base``'s
    answer for every input of ``keep``. The input is picked where both hold on this build's replies.
    """
    bare = _with_postprocess(base, strip_chars="")
    for example in erase:
        lead = prompt_runtime.postprocess(replies[example.id], bare.postprocess.model_dump())
        agent = _with_postprocess(base, strip_prefixes=(*base.postprocess.strip_prefixes, lead))
        if (_answer(base, replies[example.id]) and not _answer(agent, replies[example.id])
                and all(_answer(agent, replies[e.id]) == _answer(base, replies[e.id]) for e in keep)):
            return agent
    raise AssertionError(f"the model answered every one of {[e.input for e in erase]} like another input")


def _expected_twins(archive: Archive, ids: Sequence[int], probe: Sequence[Example],
                    verify: Sequence[Example]) -> tuple[dict[int, int], int]:
    """What the verify policy must decide, from the answers the candidates actually gave: each
    candidate matches the earliest one with its fingerprint, and merges only if their answers on the
    verify set agree too. Returns (merges, rejected matches)."""
    prints = {c: archive.candidate(c).functional_hash for c in ids}
    for a in ids:
        assert (prints[a] is None) == (_answers(archive, a, probe) is None)
        for b in ids:
            if prints[a] is not None and prints[b] is not None:
                assert (prints[a] == prints[b]) == (_answers(archive, a, probe) == _answers(archive, b, probe))
    matches = {c: t for c in ids if prints[c] is not None
               and (t := min(i for i in ids if prints[i] == prints[c])) != c}
    merges = {c: t for c, t in matches.items()
              if (answers := _answers(archive, c, verify)) is not None and answers == _answers(archive, t, verify)}
    return merges, len(matches) - len(merges)


@pytest.mark.local_model
def test_real_model_merges_only_alike_candidates_and_verify_rejects_a_near_miss(tmp_path: Path,
                                                                                 local_model: Any) -> None:
    """Fingerprints from the bundled model itself. Which paraphrases it answers alike depends on the
    build's floating point, so real paraphrases are checked against the answers they actually gave,
    and three candidates are built whose outcome holds on any build: the base prompt with the same
    characters stripped in another order (its answers cannot differ: merged), and the base prompt
    that strips, as a lead-in, its answer to one verify input (same probe answers, a different verify
    answer: matched, then rejected by verify) or to one probe input (a different fingerprint)."""
    task = load_task("singular_to_plural")
    probe, verify = task.train[:4], task.train[4:10]
    archive = Archive(f"sqlite:///{tmp_path / 'a.db'}")
    campaign = archive.create_campaign("real", task.name, "ape", {})
    demos = tuple(Demo(input=e.input, output=e.target) for e in task.train[10:13])
    base = PromptAgent(instruction="Give the plural of the word.", demos=demos)
    paraphrases = [base, PromptAgent(instruction="Give the plural of the word!", demos=demos),
                   PromptAgent(instruction="Give the plural of each word.", demos=demos),
                   PromptAgent(instruction="Translate the word into French.")]
    llm = LLMClient(local_model.endpoints, SqlCallCache(archive), Sampling(max_tokens=16))
    evaluator = ThreadEvaluator(llm, workers=2)
    stats = Counters()
    dedup = FunctionalDedup(archive, "verify", probe, verify,
                            lambda jobs: evaluator.evaluate(jobs, lambda j, o: archive.add_result(j.candidate_id, j.split, o)),
                            stats, task.metric.key)

    def add(agents: Sequence[PromptAgent]) -> list[int]:
        ids = [archive.add_candidate(campaign, agent, "ape")[0] for agent in agents]
        dedup.twins({i: agent.payload() for i, agent in zip(ids, agents, strict=True)})
        return ids

    try:
        ids = add(paraphrases)
        replies = {e.id: llm.chat(base.messages(e.input)).text for e in (*probe, *verify)}  # cached from here on
        built = [_with_postprocess(base, strip_chars=base.postprocess.strip_chars[::-1]),
                 _eraser(base, replies, verify, keep=probe), _eraser(base, replies, probe, keep=())]
        same, near_miss, probe_miss = add(built)
    finally:
        evaluator.close()
    merges, rejected = _expected_twins(archive, [*ids, same, near_miss, probe_miss], probe, verify)
    twins = {c.id: c.twin_id for c in candidates(archive, campaign) if c.twin_id is not None}
    assert twins == merges and (stats.functional_duplicates, stats.rejected_by_verify) == (len(merges), rejected)
    fingerprint_of = {c: archive.candidate(c).functional_hash for c in (ids[0], same, near_miss, probe_miss)}
    assert twins[same] == ids[0], "answers that cannot differ are merged"
    assert fingerprint_of[near_miss] == fingerprint_of[ids[0]] and near_miss not in twins, "verify caught it"
    assert _answers(archive, near_miss, verify) != _answers(archive, ids[0], verify)
    assert fingerprint_of[probe_miss] != fingerprint_of[ids[0]] and twins.get(probe_miss) != ids[0]
