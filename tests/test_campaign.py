from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeEndpoint, task_aware_responder
from sqlalchemy import func, select

from agentopt.agents.models.llm import LLMClient
from agentopt.agents.prompt import PromptAgent
from agentopt.archive.models import Candidate, Result
from agentopt.archive.store import Archive, database_url
from agentopt.optimizer.engine import evaluation
from agentopt.optimizer.engine.config import parse_config
from agentopt.optimizer.engine.runner import run_campaigns
from agentopt.optimizer.strategies import STRATEGIES, Trial
from agentopt.optimizer.strategies.base import Answer, GeneratorStrategy, Search
from agentopt.optimizer.engine.ui import SilentReporter

APE_SMALL = {"n_subsamples": 3, "demos_per_subsample": 3, "samples_per_subsample": 2, "batch_size": 3,
             "pulls_per_round": 3, "racing_budget": 30, "mc_rounds": 1, "mc_top": 2, "mc_samples": 2,
             "mc_budget": 12, "top_k": 2}


def config(task: Path, url: str, **overrides: Any) -> dict[str, Any]:
    role = {"model": "fake", "base_url": url, "max_attempts": 1}
    return {"name": "t", "tasks": [str(task)], "models": {"task": role, "proposer": {**role, "temperature": 0.9}},
            "strategy": {"name": "ape", "params": APE_SMALL}, "evaluation": {"backend": "threads", "workers": 2},
            **overrides}


def test_ape_finds_the_echo_instruction_and_scores_it_on_test(tmp_path: Path, fake_endpoint: FakeEndpoint,
                                                              echo_task_file: Path) -> None:
    archive = Archive(database_url(str(tmp_path / "a.db")))
    [report] = run_campaigns(parse_config(config(echo_task_file, fake_endpoint.url)), archive, SilentReporter())
    assert "echo" in report.best_agent["instruction"].lower()
    assert report.best_test.mean == 1.0 and report.seed_test.mean == 0.0
    assert report.stats["proposals"] == 3 * 2 + 2 * 2
    assert report.stats["task_llm_calls"] > 0 and report.stats["proposer_llm_calls"] > 0
    with archive.session() as s:
        test_candidates = set(s.scalars(select(Result.candidate_id).where(Result.split == "test")))
        strategies = dict(s.execute(select(Candidate.id, Candidate.strategy)).all())
    assert test_candidates == {report.best_candidate_id, *(c for c, st in strategies.items() if st == "seed")}
    assert len(test_candidates) == 2, "only the seed and the winner ever see the test split"
    assert archive.campaign(report.campaign_id).status == "finished"


def test_second_run_makes_no_llm_call(tmp_path: Path, fake_endpoint: FakeEndpoint, echo_task_file: Path) -> None:
    archive = Archive(database_url(str(tmp_path / "a.db")))
    cfg = parse_config(config(echo_task_file, fake_endpoint.url))
    [first] = run_campaigns(cfg, archive, SilentReporter())
    calls = len(fake_endpoint.requests)
    [second] = run_campaigns(cfg, archive, SilentReporter())
    assert len(fake_endpoint.requests) == calls
    assert second.stats["task_llm_calls"] == 0 and second.stats["proposer_llm_calls"] == 0
    assert second.stats["task_cache_hits"] > 0
    assert second.best_agent == first.best_agent
    assert (second.best_test.mean, second.best_test.n) == (first.best_test.mean, first.best_test.n)


def test_endpoint_errors_are_recorded_as_errors_never_as_wrong_answers(tmp_path: Path, echo_task_file: Path) -> None:
    def flaky(body: dict[str, Any]) -> tuple[int, Any]:
        if body["messages"][-1]["content"] in ("tiger", "ocean"):
            return 500, {"error": "overloaded"}
        return task_aware_responder(body)

    endpoint = FakeEndpoint(flaky)
    try:
        archive = Archive(database_url(str(tmp_path / "a.db")))
        [report] = run_campaigns(parse_config(config(echo_task_file, endpoint.url)), archive, SilentReporter())
    finally:
        endpoint.close()
    with archive.session() as s:
        errors = s.scalars(select(Result).where(Result.error.is_not(None))).all()
        scored_wrong_on_failures = s.scalar(select(func.count(Result.id)).where(
            Result.example_id.in_([e.example_id for e in errors]), Result.error.is_(None)))
    assert errors and all(e.score is None and "LLMUnavailable" in e.error for e in errors)
    assert scored_wrong_on_failures == 0
    assert report.best_test.n + report.best_test.n_errors == 8, "errors are counted apart from scored examples"


def test_seed_instruction_races_with_the_kept_demonstrations(tmp_path: Path, fake_endpoint: FakeEndpoint,
                                                             echo_task_file: Path) -> None:
    archive = Archive(database_url(str(tmp_path / "a.db")))
    params = {**APE_SMALL, "candidate_demos": 2}
    cfg = parse_config(config(echo_task_file, fake_endpoint.url, strategy={"name": "ape", "params": params}))
    [report] = run_campaigns(cfg, archive, SilentReporter())
    with archive.session() as s:
        payloads = s.scalars(select(Candidate.payload).where(Candidate.campaign_id == report.campaign_id)).all()
    seed_with_demos = [p for p in payloads if p["instruction"] == "Answer the following." and p["demos"]]
    assert 1 <= len(seed_with_demos) <= APE_SMALL["n_subsamples"]
    assert all(len(p["demos"]) == 2 for p in seed_with_demos)
    proposed = [p for p in payloads if "echo" in p["instruction"].lower()]
    assert proposed and all(len(p["demos"]) == 2 for p in proposed)


class TracedPrompt(PromptAgent):
    """A prompt agent that keeps a one-step trace, as a graph agent keeps one per node."""

    def run_traced(self, input_text: str, llm: LLMClient) -> tuple[str, list[dict[str, Any]]]:
        output = self.run(input_text, llm)
        return output, [{"node": "answer", "input": input_text, "output": output}]


class NotingSearch(GeneratorStrategy):
    """One trial carrying its language loss and gradient, then an edit it rejects (no candidate)."""

    name = "noting"
    answers: list[Mapping[str, Answer]] = []

    def search(self) -> Search:
        dev = tuple(e.id for e in self.ctx.val)
        [result] = yield [Trial(PromptAgent(instruction="Echo the input word."), "val", dev,
                                notes={"loss": {"text": "right on every example"}, "gradient": {"text": "keep it"}})]
        self.answers.append(self.ctx.outputs(result.candidate_id, "val"))
        self.ctx.record("rejected", {"instruction": "Say something else.", "reason": "scored lower"})


def test_campaign_stores_notes_once_and_traces_that_strategies_read(tmp_path: Path, fake_endpoint: FakeEndpoint,
                                                                    echo_task_file: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(STRATEGIES, "noting", NotingSearch)
    monkeypatch.setattr(NotingSearch, "answers", [])
    monkeypatch.setattr(evaluation, "agent_from_payload", TracedPrompt.model_validate)
    archive = Archive(database_url(str(tmp_path / "a.db")))
    cfg = parse_config(config(echo_task_file, fake_endpoint.url, strategy={"name": "noting"}))
    [report] = run_campaigns(cfg, archive, SilentReporter())
    run_campaigns(cfg, archive, SilentReporter(), resume=report.campaign_id)  # replays the search and its notes
    echo = report.best_candidate_id
    assert [(n.kind, n.candidate_id, n.data) for n in archive.notes(report.campaign_id)] == [
        ("loss", echo, {"text": "right on every example"}), ("gradient", echo, {"text": "keep it"}),
        ("rejected", None, {"instruction": "Say something else.", "reason": "scored lower"})]
    first, replayed = NotingSearch.answers
    assert first and first == replayed
    assert all(a.trace == [{"node": "answer", "input": a.output, "output": a.output}] for a in first.values())
    assert all(r.trace is not None for r in archive.results(echo, "test"))
