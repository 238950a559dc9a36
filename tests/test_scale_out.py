"""Faults, endpoint limits and hard budgets, against a scripted endpoint (control flow only; the
real-model versions are in test_cluster.py)."""

import time
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeEndpoint, task_aware_responder
from sqlalchemy import select
from test_campaign import config

from agentopt.agents.models.budget import Price, RoleBudget, Spend
from agentopt.agents.runtime.errors import BudgetExhausted, ConfigError
from agentopt.agents.models.gate import Admission, Endpoint, Lease
from agentopt.archive.models import Candidate, Evaluation, Result
from agentopt.archive.store import Archive, database_url
from agentopt.optimizer.engine.config import parse_config
from agentopt.optimizer.engine.runner import run_campaigns
from agentopt.optimizer.engine.ui import SilentReporter

pytestmark = pytest.mark.cluster

FLAKY = "Echo the word back."  # a perfect instruction whose calls sometimes fail


def faulty(body: dict[str, Any]) -> tuple[int, str | bytes | dict[str, Any]]:
    """500s, malformed bodies and timeouts for one candidate on three inputs; the rest answers."""
    if body["messages"][0]["content"] == FLAKY:
        word = body["messages"][-1]["content"]
        if word == "tiger":
            return 500, {"error": "overloaded"}
        if word == "ocean":
            return 200, b"<html>proxy error"
        if word == "amber":
            time.sleep(1.5)  # past the client's 1 s timeout
    return task_aware_responder(body)


def test_endpoint_faults_become_errors_and_the_faulty_candidate_is_never_ranked(tmp_path: Path,
                                                                               echo_task_file: Path) -> None:
    endpoint = FakeEndpoint(faulty)
    try:
        archive = Archive(database_url(str(tmp_path / "a.db")))
        cfg = config(echo_task_file, endpoint.url)
        cfg["models"]["task"] = {**cfg["models"]["task"], "timeout_s": 1.0, "max_attempts": 2}
        [report] = run_campaigns(parse_config(cfg), archive, SilentReporter())
    finally:
        endpoint.close()
    with archive.session() as s:
        flaky = s.scalar(select(Candidate.id).where(Candidate.payload["instruction"].as_string() == FLAKY))
        rows = s.execute(select(Result.example_id, Result.error, Result.score).where(Result.candidate_id == flaky)).all()
        val = s.scalar(select(Evaluation).where(Evaluation.candidate_id == flaky, Evaluation.split == "val"))
    errors = {r.example_id: r.error for r in rows if r.error}
    assert errors, "the scripted faults were hit"
    assert all(r.score is None for r in rows if r.error), "an error is never scored as a wrong answer"
    kinds = " ".join(errors.values())
    assert "InternalServerError" in kinds or "malformed reply body" in kinds or "Timeout" in kinds
    assert all(e.startswith("LLMUnavailable") for e in errors.values())
    assert report.stats["examples retried after an error"] >= len(errors)
    assert val is None, "a candidate with infrastructure errors never reaches the final ranking"
    assert report.best_agent["instruction"] != FLAKY and report.best_test.mean == 1.0


def test_endpoint_limits_hold_across_ray_workers(tmp_path: Path, echo_task_file: Path) -> None:
    endpoint = FakeEndpoint(task_aware_responder, delay_s=0.05)
    try:
        cfg = config(echo_task_file, "unused", evaluation={"backend": "ray", "workers": 2, "concurrency": 4})
        pool = [{"base_url": endpoint.url, "max_concurrency": 2, "requests_per_s": 40}]
        for role in ("task", "proposer"):
            cfg["models"][role] = {k: v for k, v in cfg["models"][role].items() if k != "base_url"} | {"endpoints": pool}
        run_campaigns(parse_config(cfg), Archive(database_url(str(tmp_path / "a.db"))), SilentReporter())
    finally:
        endpoint.close()
    arrivals = endpoint.arrivals
    assert endpoint.max_active == 2, "8 example slots on 2 workers, but never more than 2 requests at once"
    duration = arrivals[-1] - arrivals[0]
    assert len(arrivals) <= 40 + 40 * duration + 1, "a token bucket admits at most burst + rate x time"


def test_budgets_stop_the_search_and_say_which(tmp_path: Path, echo_task_file: Path) -> None:
    endpoint = FakeEndpoint(task_aware_responder)
    try:
        archive = Archive(database_url(str(tmp_path / "a.db")))
        cfg = parse_config(config(echo_task_file, endpoint.url, budget={"task": {"calls": 40}, "proposer": {"calls": 4}}))
        [report] = run_campaigns(cfg, archive, SilentReporter())
    finally:
        endpoint.close()
    proposer = sum("What was the instruction?" in r["messages"][-1]["content"] for r in endpoint.requests)
    assert report.stopped_by in ("proposer.calls", "task.calls")
    assert proposer <= 4 and len(endpoint.requests) - proposer <= 40
    assert report.stats["task_llm_calls"] <= 40 and report.stats["proposer_llm_calls"] <= 4
    assert report.best_test.n == report.seed_test.n == 8, "the test reserve still scores the winner"
    assert not any("covers" in note for note in report.notes)
    assert archive.campaign(report.campaign_id).summary["stopped_by"] == report.stopped_by


def test_money_budget_needs_a_price_and_stops_by_cost(tmp_path: Path, echo_task_file: Path) -> None:
    with pytest.raises(ConfigError, match="budget.task.usd needs a price for model 'fake'"):
        parse_config(config(echo_task_file, "http://x", budget={"task": {"usd": 1.0}}))
    endpoint = FakeEndpoint(task_aware_responder)
    try:
        cfg = parse_config(config(echo_task_file, endpoint.url, budget={"task": {"usd": 0.5}},
                                  prices={"fake": {"input_per_mtok": 10_000, "output_per_mtok": 20_000}}))
        [report] = run_campaigns(cfg, Archive(database_url(str(tmp_path / "a.db"))), SilentReporter())
    finally:
        endpoint.close()
    assert report.stopped_by == "task.usd"
    assert report.stats["budget"]["task"]["spent"]["usd"] <= 0.5


def test_wall_time_budget(tmp_path: Path, echo_task_file: Path) -> None:
    endpoint = FakeEndpoint(task_aware_responder, delay_s=0.05)
    try:
        cfg = parse_config(config(echo_task_file, endpoint.url, budget={"wall_time_s": 1.0}))
        [report] = run_campaigns(cfg, Archive(database_url(str(tmp_path / "a.db"))), SilentReporter())
    finally:
        endpoint.close()
    assert report.stopped_by == "wall_time_s"
    assert any("test score covers" in note for note in report.notes) or report.best_test.n == 8


# --- the admission rule itself ----------------------------------------------------------------------

def _pool(**limits: Any) -> Admission:
    return Admission([Endpoint(base_url=u, model="m", **limits) for u in ("a", "b")])


def test_admission_routes_to_the_least_loaded_endpoint_and_respects_concurrency() -> None:
    gate = _pool(max_concurrency=1)
    first = gate.try_acquire("task", ["a", "b"], 10, 5, 60, now=0.0)
    second = gate.try_acquire("task", ["a", "b"], 10, 5, 60, now=0.0)
    assert isinstance(first, Lease) and isinstance(second, Lease) and {first.url, second.url} == {"a", "b"}
    assert gate.try_acquire("task", ["a", "b"], 10, 5, 60, now=0.0) == float("inf")
    gate.release("task", first.id, (8, 2))
    assert gate.try_acquire("task", ["a", "b"], 10, 5, 60, now=0.0) == Lease(2, first.url)


def test_admission_rate_limit_waits_for_the_bucket() -> None:
    gate = _pool(requests_per_s=2)
    assert isinstance(gate.try_acquire("task", ["a"], 1, 1, 60, now=0.0), Lease)
    assert isinstance(gate.try_acquire("task", ["a"], 1, 1, 60, now=0.0), Lease)
    wait = gate.try_acquire("task", ["a"], 1, 1, 60, now=0.0)
    assert wait == pytest.approx(0.5)
    assert isinstance(gate.try_acquire("task", ["a"], 1, 1, 60, now=0.5), Lease)


def test_admission_budget_counts_reservations_and_books_actual_usage() -> None:
    gate = _pool()
    gate.configure("task", RoleBudget(calls=5, tokens=100), Price(), Spend())
    a, b = (gate.try_acquire("task", ["a"], 30, 10, 60, now=0.0) for _ in range(2))
    assert isinstance(a, Lease) and isinstance(b, Lease)
    with pytest.raises(BudgetExhausted, match="task.tokens"):  # 40 + 40 reserved, + 40 > 100
        gate.try_acquire("task", ["a"], 30, 10, 60, now=0.0)
    gate.configure("task", RoleBudget(calls=2), Price(), Spend())
    gate.release("task", b.id, None)  # failed: frees its reservation, costs nothing
    gate.release("task", a.id, (12, 3))
    assert gate.spent("task") == Spend(1, 12, 3, 0.0)
    assert isinstance(gate.try_acquire("task", ["a"], 30, 10, 60, now=0.0), Lease)
    with pytest.raises(BudgetExhausted, match="task.calls"):
        gate.try_acquire("task", ["a"], 30, 10, 60, now=0.0)


def test_admission_reclaims_leases_of_dead_workers_and_stops_at_the_deadline() -> None:
    gate = _pool(max_concurrency=1)
    lost = gate.try_acquire("task", ["a"], 1, 1, ttl_s=10, now=0.0)
    assert isinstance(lost, Lease)
    assert gate.try_acquire("task", ["a"], 1, 1, 10, now=5.0) == float("inf")
    assert isinstance(gate.try_acquire("task", ["a"], 1, 1, 10, now=11.0), Lease), "expired lease reclaimed"
    gate.release("task", lost.id, (4, 1))  # a late answer is still booked
    assert gate.spent("task").calls == 1
    gate.set_deadline(20.0)
    with pytest.raises(BudgetExhausted, match="wall_time_s"):
        gate.try_acquire("task", ["b"], 1, 1, 10, now=20.0)


def test_dry_run_estimate_bounds_the_real_campaign(tmp_path: Path, echo_task_file: Path,
                                                  fake_endpoint: FakeEndpoint) -> None:
    from agentopt.optimizer.engine.budgets import estimate
    from agentopt.optimizer.tasks import load_task

    cfg = parse_config(config(echo_task_file, fake_endpoint.url))
    planned = estimate(cfg, load_task(str(echo_task_file)))
    [report] = run_campaigns(cfg, Archive(database_url(str(tmp_path / "a.db"))), SilentReporter())
    assert 0 < report.stats["proposer_llm_calls"] <= planned["proposer"]["calls"]
    assert 0 < report.stats["task_llm_calls"] <= planned["task_role"]["calls"]
    assert report.stats["task_tokens"] <= planned["task_role"]["tokens"]
