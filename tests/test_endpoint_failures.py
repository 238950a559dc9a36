"""Endpoints that answer, but fail every call for good (401, a reply without a message, replies slower
than the timeout), stop the campaign as ``error_rate`` with a non-zero exit instead of a finished
campaign that reports the seed; what cannot change on retry is sent once; a timed-out request is
sent at most ``max_attempts`` times; ``Retry-After`` is honoured; every attempt the endpoint received
is on the gate's ledger; lost proposals are counted where errors are shown.

Against fake OpenAI-compatible servers on loopback (control flow only). The CLI's campaigns against
them run its entry point in this process (:func:`processes.cli`), as the exit code does not depend on
a separate process; the real model's refusals go through the installed ``agentopt``, which starts
the model servers and shows the exit code a shell sees.
"""

import json
import sqlite3
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from fakes import FakeEndpoint, task_aware_responder
from processes import agentopt, cli
from test_campaign import config

from agentopt.agents.models.budget import Spend, estimate_prompt_tokens
from agentopt.agents.runtime.errors import LLMEmptyReply, LLMRefused, LLMUnavailable
from agentopt.agents.models.gate import Admission, Endpoint, Halted, Health, Lease, LocalGate
from agentopt.agents.models.llm import RETRY_AFTER_MAX_S, LLMClient, MemoryCache, Sampling, retry_after
from agentopt.archive.store import Archive, database_url
from agentopt.optimizer.engine.campaign import CampaignStopped
from agentopt.optimizer.engine.config import parse_config
from agentopt.optimizer.engine.failures import ERROR_RATE, FailureWatch
from agentopt.optimizer.engine.runner import run_campaigns
from agentopt.optimizer.frontends.status import status
from agentopt.optimizer.engine.ui import SilentReporter

MESSAGES = [{"role": "user", "content": "hi"}]
UNAUTHORIZED = (401, {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}})


def _split(task_file: Path, task_url: str, proposer_url: str, **overrides: Any) -> dict[str, Any]:
    """The test campaign with the task model and the proposer on different endpoints."""
    data = config(task_file, task_url, **overrides)
    data["models"]["proposer"] = {**data["models"]["proposer"], "base_url": proposer_url}
    return data


def _task_requests(endpoint: FakeEndpoint) -> Counter[str]:
    """How many times the endpoint was asked each distinct task request (probes left out)."""
    return Counter(i for r, i in zip(endpoint.requests, endpoint.identities(), strict=True) if r["max_tokens"] > 1)


def _campaign(db: Path) -> tuple[str, dict[str, Any], int, int]:
    """The one campaign's status and summary, its stored results and how many are errors."""
    with sqlite3.connect(db) as conn:
        state, summary = conn.execute("select status, summary from campaigns").fetchone()
        results, errors = conn.execute("select count(*), count(error) from results").fetchone()
    return state, json.loads(summary), results, errors


def _stopped(cfg: dict[str, Any], db: Path) -> CampaignStopped:
    with pytest.raises(CampaignStopped) as stopped:
        run_campaigns(parse_config(cfg), Archive(database_url(str(db))), SilentReporter())
    return stopped.value


# --- campaigns against endpoints that fail every call -------------------------------------------------

def test_a_401_on_every_completion_stops_the_campaign_with_a_non_zero_exit(tmp_path: Path,
                                                                          echo_task_file: Path) -> None:
    endpoint = FakeEndpoint(lambda body: UNAUTHORIZED)  # while /v1/models answers, so the start-up check passes
    data = config(echo_task_file, endpoint.url)
    for role in ("task", "proposer"):
        data["models"][role]["max_attempts"] = 3
    path, db = tmp_path / "campaign.yaml", tmp_path / "a.db"
    path.write_text(json.dumps(data))
    try:
        run = cli("run", str(path), "--db", str(db), "--quiet")
    finally:
        endpoint.close()
    assert run.returncode == 2, run.stdout + run.stderr
    assert "stopped (error_rate)" in run.stderr and "401" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1 and "Traceback" not in run.stderr
    state, summary, results, errors = _campaign(db)
    assert state == "stopped" and summary["stopped_by"] == ERROR_RATE
    assert results == errors > 0, "every result is kept, as an error"
    asked = Counter(endpoint.identities())
    assert asked and max(asked.values()) == 1, "a refusal is not retried, by the client or by a second pass"


def test_completions_without_choices_stop_the_campaign_and_are_not_retried(tmp_path: Path,
                                                                          echo_task_file: Path) -> None:
    task, proposer = FakeEndpoint(lambda body: (200, {"choices": []})), FakeEndpoint(task_aware_responder)
    data = _split(echo_task_file, task.url, proposer.url, health={"error_window": 5})
    data["models"]["task"]["max_attempts"] = 3
    try:
        stopped = _stopped(data, tmp_path / "a.db")
    finally:
        task.close()
        proposer.close()
    assert stopped.stopped_by == ERROR_RATE and "5 of the latest 5 examples failed" in str(stopped)
    state, summary, results, errors = _campaign(tmp_path / "a.db")
    assert state == "stopped" and summary["stopped_by"] == ERROR_RATE and results == errors >= 5
    asked = _task_requests(task)
    assert asked and max(asked.values()) == 1, f"a reply without a message is not retried: {asked}"


def test_replies_slower_than_the_timeout_are_sent_at_most_max_attempts_times(tmp_path: Path,
                                                                             echo_task_file: Path) -> None:
    def slow(body: dict[str, Any]) -> tuple[int, str]:
        if body["max_tokens"] > 1:  # generating takes long; a 1-token health probe does not
            time.sleep(1.0)
        return task_aware_responder(body)

    task, proposer = FakeEndpoint(slow), FakeEndpoint(task_aware_responder)
    data = _split(echo_task_file, task.url, proposer.url, health={"error_window": 4})
    data["models"]["task"] |= {"timeout_s": 0.3, "max_attempts": 2}
    try:
        stopped = _stopped(data, tmp_path / "a.db")
    finally:
        task.close()
        proposer.close()
    assert stopped.stopped_by == ERROR_RATE
    asked = _task_requests(task)
    assert asked and max(asked.values()) <= 2, f"a timed-out request is re-sent within max_attempts: {asked}"
    state, _, results, errors = _campaign(tmp_path / "a.db")
    assert state == "stopped" and results == errors >= 4


def test_lost_proposals_are_counted_in_progress_status_and_the_report(tmp_path: Path, echo_task_file: Path) -> None:
    refused: list[int] = []

    def some_refused(body: dict[str, Any]) -> tuple[int, Any]:
        if body.get("seed", 0) % 2:
            refused.append(body["seed"])
            return 403, {"error": "quota"}
        return task_aware_responder(body)

    class Recorder(SilentReporter):
        shown = 0

        def lost(self, n: int) -> None:
            self.shown += n

    task, proposer = FakeEndpoint(task_aware_responder), FakeEndpoint(some_refused)
    archive, reporter = Archive(database_url(str(tmp_path / "a.db"))), Recorder()
    try:
        [report] = run_campaigns(parse_config(_split(echo_task_file, task.url, proposer.url)), archive, reporter)
    finally:
        task.close()
        proposer.close()
    assert refused and len(proposer.requests) > len(refused), "some proposals were lost, not all"
    lost = len(refused)
    assert reporter.shown == lost, "shown on the progress line"
    assert report.stats["proposals lost to proposer errors"] == lost
    assert any(f"{lost} proposer calls failed for good" in note and "403" in note for note in report.notes)
    current = status(archive, report.campaign_id)
    assert current.proposals_lost == lost and current.as_dict()["proposals_lost"] == lost
    shown = cli("status", report.campaign_id, "--db", str(tmp_path / "a.db"))
    assert f"{lost} proposals lost to proposer errors" in " ".join(shown.stdout.split()), shown.stdout + shown.stderr


# --- one client against a failing endpoint ---------------------------------------------------------

def _client(endpoint: FakeEndpoint, max_attempts: int, **kwargs: Any) -> tuple[LLMClient, LocalGate]:
    endpoints = [Endpoint(base_url=endpoint.url, model="fake")]
    gate = LocalGate(endpoints, Health())
    return LLMClient(endpoints, MemoryCache(), max_attempts=max_attempts, gate=gate, **kwargs), gate


def test_a_429s_retry_after_is_waited_before_the_retry() -> None:
    replies = [(429, {"error": "rate limited"}, {"Retry-After": "2"}), (200, "hello")]
    endpoint = FakeEndpoint(lambda body: replies.pop(0))
    try:
        llm, _ = _client(endpoint, max_attempts=3, timeout_s=5)
        assert llm.chat(MESSAGES).text == "hello"
    finally:
        endpoint.close()
    first, second = endpoint.arrivals
    assert second - first >= 2.0, f"retried {second - first:.2f}s after Retry-After: 2"


def _rate_limited(headers: dict[str, str]) -> openai.RateLimitError:
    response = httpx.Response(429, headers=headers, request=httpx.Request("POST", "http://fake/v1/chat/completions"))
    return openai.RateLimitError("rate limited", response=response, body=None)


def test_retry_after_reads_seconds_milliseconds_and_dates_within_a_cap() -> None:
    assert retry_after(_rate_limited({"Retry-After": "2"})) == 2.0
    assert retry_after(_rate_limited({"retry-after-ms": "1500", "Retry-After": "9"})) == 1.5
    in_30s = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    assert 25 <= retry_after(_rate_limited({"Retry-After": in_30s})) <= 30
    assert retry_after(_rate_limited({"Retry-After": "86400"})) == RETRY_AFTER_MAX_S
    assert retry_after(_rate_limited({"Retry-After": "soon"})) == 0.0
    assert retry_after(_rate_limited({})) == 0.0 and retry_after(None) == 0.0


@pytest.mark.parametrize(("reply", "error", "message"), [
    (UNAUTHORIZED, LLMRefused, "refused the request: AuthenticationError"),
    ((200, {"choices": []}), LLMEmptyReply, "no message content"),
], ids=["401", "no message"])
def test_an_answer_another_try_would_repeat_is_raised_at_once_and_booked_as_a_call(
        reply: tuple[int, Any], error: type[Exception], message: str) -> None:
    endpoint = FakeEndpoint(lambda body: reply)
    try:
        llm, gate = _client(endpoint, max_attempts=4, timeout_s=5)
        with pytest.raises(error, match=message):
            llm.chat(MESSAGES)
    finally:
        endpoint.close()
    assert len(endpoint.requests) == 1
    assert gate.spent("task") == Spend(1, 0, 0, 0.0), "the endpoint was asked once, and the ledger says so"
    assert (llm.usage.failed, llm.usage.refused, llm.usage.calls) == (1, 1, 0)
    assert gate.health()[endpoint.url].up, "an answer, even a refusal, shows the endpoint is up"


def test_every_timed_out_attempt_is_charged_and_booked_at_what_it_asked_for() -> None:
    def slow(body: dict[str, Any]) -> tuple[int, str]:
        if body["max_tokens"] > 1:
            time.sleep(1.0)
        return 200, "late"

    endpoint = FakeEndpoint(slow)
    try:
        llm, gate = _client(endpoint, max_attempts=2, timeout_s=0.3, sampling=Sampling(max_tokens=16))
        with pytest.raises(LLMUnavailable, match="gave up after 2 attempts: APITimeoutError"):
            llm.chat(MESSAGES)
        with pytest.raises(LLMUnavailable, match="not sent again: it timed out 2 times already"):
            llm.metered().chat(MESSAGES)  # asked for again, as a campaign's second pass would
    finally:
        endpoint.close()
    assert [r["max_tokens"] for r in endpoint.requests] == [16, 16], "sent max_attempts times in all, no more"
    prompt = estimate_prompt_tokens(MESSAGES)
    assert gate.spent("task") == Spend(2, 2 * prompt, 2 * 16, 0.0), "each attempt may have been billed in full"
    assert (llm.usage.failed, llm.usage.refused) == (1, 0), "a view counts its own failures"


def test_the_ledger_books_a_received_request_that_failed_and_still_judges_the_endpoint() -> None:
    gate = Admission([Endpoint(base_url="a", model="m")], Health())
    for _ in range(3):
        lease = gate.try_acquire("task", ["a"], 10, 5, 60, 0.0)
        assert isinstance(lease, Lease)
        gate.release("task", lease.id, (0, 0), "InternalServerError: 500", 0.0)
    assert gate.spent("task").calls == 3 and not gate.report(0.0)["a"].up


# --- the rule --------------------------------------------------------------------------------------------

def test_failed_llm_calls_past_the_rate_stop_while_an_agents_own_errors_do_not() -> None:
    watch = FailureWatch(Health(max_error_rate=0.5, error_window=4))
    for n in range(40):  # half of the examples crash in the agent's own code: a finding, not a failure
        watch.add(None if n % 2 else "ZeroDivisionError: division by zero", llm_failed=False)
    watch.add("LLMUnavailable: gave up", llm_failed=True)
    watch.add(None, llm_failed=False)
    watch.add("LLMUnavailable: gave up", llm_failed=True)
    with pytest.raises(Halted, match="3 of the latest 4 examples failed because an LLM call failed") as stopped:
        watch.add("LLMRefused: 401", llm_failed=True)
    assert stopped.value.budget == ERROR_RATE and "the last: LLMRefused: 401" in stopped.value.detail


def test_a_run_whose_examples_all_failed_stops_once_the_window_is_full_or_at_the_end() -> None:
    watch = FailureWatch(Health(error_window=3))
    watch.add("TemplateError: no field 'x'", llm_failed=False)
    watch.add("TemplateError: no field 'x'", llm_failed=False)
    with pytest.raises(Halted, match="all 3 examples run failed"):
        watch.add("TemplateError: no field 'x'", llm_failed=False)
    short = FailureWatch(Health(error_window=20))
    short.add("TemplateError: no field 'x'", llm_failed=False)
    with pytest.raises(Halted, match="all 1 examples run failed"):
        short.ended()
    fine = FailureWatch(Health(error_window=20))
    fine.add(None, llm_failed=False)
    fine.ended()
    with pytest.raises(Halted, match="all 3 proposer calls failed for good; the last: LLMRefused"):
        fine.proposals(3, 0, "LLMRefused: 401")
    fine.proposals(3, 1, "LLMRefused: 401")


@pytest.mark.local_model
def test_a_campaign_the_real_model_refuses_every_example_stops_with_exit_2(tmp_path: Path) -> None:
    """Inputs longer than the bundled model's context: the server refuses every task call (a 4xx,
    which another try would repeat), so the campaign stops as error_rate (exit 2, one line) instead
    of reporting the seed as the winner, having sent each request once."""
    words = ["alpha", "beta", "gamma", "delta", "omega", "sigma", "kappa", "theta"]
    rows = [{"input": f"{w}{i} " + "filler " * 6000, "target": f"{w}{i}"} for i in range(3) for w in words]
    (tmp_path / "long.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (tmp_path / "c.yaml").write_text(
        "tasks: [long.jsonl]\nmodels:\n  task: {model: local, max_tokens: 8}\n"
        "  proposer: {model: local, max_tokens: 16}\nlocal_model: {servers: 1, threads: 1}\n"
        "strategy: {name: random, params: {queries: 2, n_subsamples: 1, samples_per_subsample: 1}}\n"
        "evaluation: {backend: threads, workers: 2, val_size: 4, test_size: 4}\n")
    done = agentopt("run", "c.yaml", "--db", "a.db", cwd=tmp_path, timeout=600)
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert len(lines) == 1 and "error_rate" in lines[0], done.stderr[-2000:]
    state, _, results, errors = _campaign(tmp_path / "a.db")
    assert state == "stopped" and results == errors > 0, "every result is kept, as an error"
