"""Endpoint health: a dead endpoint is noticed, its traffic goes elsewhere, the campaign pauses while
a role has none, stops as ``endpoint_down`` past the outage limit, and resume finishes it.

The rule itself is tested on :class:`Admission` with an injected clock; the rest against fake
endpoints on loopback that are really taken off the network (connections refused) and brought
back on the same port.
"""

import io
import json
import pickle
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from fakes import FakeEndpoint, task_aware_responder
from processes import cli, stored_results, wait_until
from test_campaign import config

from agentopt.agents.models.budget import Price, RoleBudget, Spend
from agentopt.agents.runtime.errors import BudgetExhausted, LLMUnavailable
from agentopt.agents.models.gate import Admission, Endpoint, EndpointHealth, Halted, Health, Lease, LocalGate, Seen
from agentopt.agents.models.llm import LLMClient, MemoryCache
from agentopt.archive.store import Archive, database_url
from agentopt.optimizer.engine.campaign import CampaignReport, CampaignStopped
from agentopt.optimizer.engine.config import parse_config
from agentopt.optimizer.engine.runner import run_campaigns
from agentopt.optimizer.engine.ui import OutageColumn, RichReporter, SilentReporter

REFUSED = "APIConnectionError: Connection error."
QUICK = Health(probe_initial_s=0.2, probe_max_s=1.0)


def _admission(**health: Any) -> Admission:
    return Admission([Endpoint(base_url=u, model="m") for u in ("a", "b")], Health(**health))


def _lease(gate: Admission, urls: list[str], now: float) -> Lease:
    lease = gate.try_acquire("task", urls, 10, 5, 60, now)
    assert isinstance(lease, Lease), f"expected a lease, got a wait of {lease}"
    return lease


def _fail(gate: Admission, url: str, now: float) -> None:
    lease = _lease(gate, [url], now)
    assert lease.url == url and not lease.probe
    gate.release("task", lease.id, None, REFUSED, now)


# --- the rule ------------------------------------------------------------------------------------

def test_consecutive_failures_mark_an_endpoint_down_and_its_traffic_goes_to_the_others() -> None:
    gate = _admission()
    _fail(gate, "a", 0.0)
    _fail(gate, "a", 0.0)
    gate.release("task", _lease(gate, ["a"], 0.0).id, None)  # a failure that is the request's: no verdict
    gate.release("task", _lease(gate, ["a"], 0.0).id, (10, 2))  # an answer breaks the streak
    _fail(gate, "a", 0.0)
    _fail(gate, "a", 0.0)
    assert gate.report(0.0)["a"].up, "two in a row are not three"
    _fail(gate, "a", 1.0)
    assert gate.report(2.0)["a"] == EndpointHealth(up=False, down_for_s=1.0, last_error=REFUSED, outages=0)
    probe = _lease(gate, ["a", "b"], 1.0)
    assert probe.probe and probe.url == "a", "a fresh outage is probed at once"
    leases = [_lease(gate, ["a", "b"], 1.0) for _ in range(4)]
    assert {(lease.url, lease.probe) for lease in leases} == {("b", False)}, "the traffic goes to the endpoint up"


def test_an_answer_to_a_call_sent_before_the_failures_does_not_bring_the_endpoint_back() -> None:
    gate = _admission()
    early = _lease(gate, ["a"], 0.0)  # in flight when the server dies
    for _ in range(3):
        _fail(gate, "a", 0.0)
    gate.release("task", early.id, (10, 2))
    assert not gate.report(0.0)["a"].up
    assert gate.spent("task") == Spend(1, 10, 2, 0.0), "its answer is still booked"


def test_probes_back_off_confirm_the_outage_cost_nothing_and_bring_the_endpoint_back() -> None:
    gate = _admission(probe_initial_s=1.0, probe_max_s=3.0)
    gate.configure("task", RoleBudget(calls=100), Price(), Spend())
    for _ in range(3):
        _fail(gate, "a", 0.0)
    before = _lease(gate, ["a", "b"], 0.0)
    gate.release("task", before.id, (10, 2))
    assert before.url == "a" and before.probe
    assert gate.report(0.0)["a"].up, "an answered probe: the failures were the requests', not an outage"

    for _ in range(3):
        _fail(gate, "a", 10.0)
    probes = []
    for now in (10.0, 11.0, 13.0, 16.0, 19.0):  # waits of 1, 2, then 3 (the cap), 3
        assert gate.try_acquire("task", ["a"], 10, 5, 60, now - 0.1) == pytest.approx(0.1), f"no probe before {now}"
        probe = _lease(gate, ["a"], now)
        assert probe.probe and probe.url == "a"
        probes.append(probe)
        gate.release("task", probe.id, None, REFUSED, now)
    assert gate.endpoints["a"].seen.outages == 1, "one outage, confirmed by its first failed probe"
    back = _lease(gate, ["a"], 22.0)
    gate.release("task", back.id, (10, 1))
    assert back.probe and gate.report(22.0)["a"].up
    real = _lease(gate, ["a"], 22.0)
    gate.release("task", real.id, (10, 2))
    assert not real.probe and real.seen == {"a": Seen(outages=1, answered=back.id)}, "what a caller judges faults by"
    assert gate.spent("task") == Spend(1, 10, 2, 0.0), "only the real call is booked, never a probe"


def test_a_role_without_endpoints_waits_then_stops_as_endpoint_down() -> None:
    gate = _admission(outage_limit_s=10.0, probe_initial_s=100.0, probe_max_s=100.0)
    for url in ("a", "b"):
        for _ in range(3):
            _fail(gate, url, 0.0)
        gate.release("task", _lease(gate, [url], 0.0).id, None, REFUSED, 0.0)  # the first probe fails
    assert gate.try_acquire("task", ["a", "b"], 10, 5, 60, 9.0) > 0, "calls wait while no endpoint is up"
    with pytest.raises(Halted, match="no endpoint of role task answered for 10s") as stopped:
        gate.try_acquire("task", ["a", "b"], 10, 5, 60, 10.0)
    assert stopped.value.budget == "endpoint_down" and isinstance(stopped.value, BudgetExhausted)
    gate.configure("task", RoleBudget(), Price(), Spend())
    with pytest.raises(Halted):
        gate.try_acquire("proposer", ["b"], 10, 5, 60, 11.0)


def test_halt_stops_waiting_and_later_calls_with_its_reason_for_good() -> None:
    gate = LocalGate([Endpoint(base_url="a", model="m", max_concurrency=1)])
    held = gate.acquire("task", ["a"], 10, 5, 60)
    thread, out = _in_thread(lambda: gate.acquire("task", ["a"], 10, 5, 60))
    time.sleep(0.5)
    assert thread.is_alive(), "waiting for the endpoint's one slot"
    gate.halt("endpoint_down", "local model server on port 8081 keeps dying (SIGILL)")
    gate.halt("other", "a second halt does not replace the first")
    thread.join(5)
    assert isinstance(out[0], Halted) and out[0].budget == "endpoint_down", "a waiting call is stopped too"
    gate.release("task", held.id, None)
    gate.configure("task", RoleBudget(), Price(), Spend())
    with pytest.raises(Halted, match="port 8081 keeps dying") as stopped:
        gate.acquire("proposer", ["a"], 1, 1, 60)
    again = pickle.loads(pickle.dumps(stopped.value))
    assert (again.budget, again.detail) == ("endpoint_down", "local model server on port 8081 keeps dying (SIGILL)")


# --- one client against a real (fake) server -------------------------------------------------------

def _client(endpoint: FakeEndpoint, max_attempts: int) -> LLMClient:
    endpoints = [Endpoint(base_url=endpoint.url, model="fake")]
    return LLMClient(endpoints, MemoryCache(), max_attempts=max_attempts, timeout_s=5, gate=LocalGate(endpoints, QUICK))


def test_a_call_waits_out_an_outage_with_its_attempts_intact() -> None:
    endpoint = FakeEndpoint(lambda body: (200, "hello"))
    endpoint.close()
    llm = _client(endpoint, max_attempts=1)
    got: list[Any] = []
    thread = threading.Thread(target=lambda: got.append(llm.chat([{"role": "user", "content": "hi"}]).text))
    try:
        thread.start()
        # down for three of QUICK's longest probe intervals: several probes failed while the call waited
        assert wait_until(lambda: (llm.gate.health()[endpoint.url].down_for_s or 0.0) >= 3 * QUICK.probe_max_s, 60)
        assert thread.is_alive() and not got, "the call waits for the endpoint instead of failing"
        endpoint.reopen()
        thread.join(30)
    finally:
        endpoint.close()
    assert got == ["hello"] and llm.usage.calls == 1
    assert [r["max_tokens"] for r in endpoint.requests] == [1, 64], "one 1-token probe, then the call itself"


def test_a_request_that_fails_on_a_healthy_endpoint_is_an_error_after_bounded_attempts() -> None:
    endpoint = FakeEndpoint(lambda body: (500, {"error": "boom"}) if body["messages"][-1]["content"] == "boom"
                            else (200, "ok"))
    try:
        with pytest.raises(LLMUnavailable, match="gave up after 3 attempts: InternalServerError"):
            _client(endpoint, max_attempts=2).chat([{"role": "user", "content": "boom"}])
    finally:
        endpoint.close()
    sent = [r["messages"][-1]["content"] for r in endpoint.requests]
    assert sent == ["boom", "boom", "boom", "Say OK."], "the probe answered, so the failures were the request's"


# --- campaigns ----------------------------------------------------------------------------------------

class Recorder(SilentReporter):
    """What a person would have been shown: endpoint health changes and errors so far."""

    def __init__(self) -> None:
        self.health: list[dict[str, bool]] = []
        self.errors = 0

    def advance(self, n: int = 1, errors: int = 0) -> None:
        self.errors += errors

    def endpoints(self, health: Any) -> None:
        self.health.append({url: h.up for url, h in health.items()})


def _errors(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("select count(*) from results where error is not null").fetchone()[0])


def _in_thread(fn: Any) -> tuple[threading.Thread, list[Any]]:
    """Run ``fn`` on a thread; the list receives its return value or its exception."""
    out: list[Any] = []

    def target() -> None:
        try:
            out.append(fn())
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            out.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, out


OUTAGE_S, OUTAGE_PROBE_MAX_S = 10.0, 0.5  # 20 probe intervals: more than a 30 s outage at probes 2 s apart


@pytest.mark.slow
def test_campaign_pauses_through_a_long_outage_and_stores_no_error(tmp_path: Path, echo_task_file: Path) -> None:
    endpoint = FakeEndpoint(task_aware_responder, delay_s=0.2)
    db = tmp_path / "a.db"
    reporter = Recorder()
    data = config(echo_task_file, endpoint.url)  # max_attempts 1: an outage must not use it up
    cfg = parse_config(data | {"health": {"probe_max_s": OUTAGE_PROBE_MAX_S}})
    try:
        thread, out = _in_thread(lambda: run_campaigns(cfg, Archive(database_url(str(db))), reporter))
        assert wait_until(lambda: stored_results(db) >= 10, 120), "the campaign never got going"
        endpoint.close()
        during = stored_results(db)
        time.sleep(OUTAGE_S)
        assert thread.is_alive(), "paused, not finished or failed"
        in_flight = (cfg.evaluation.workers or 1) * cfg.evaluation.concurrency
        assert stored_results(db) <= during + in_flight, "only the examples already sent were stored"
        endpoint.reopen()
        thread.join(300)
    finally:
        endpoint.close()
    [report] = out[0]
    assert isinstance(report, CampaignReport) and report.best_test.n == 8
    assert _errors(db) == 0 and reporter.errors == 0, "no example was stored as an error for the outage"
    assert {endpoint.url: False} in reporter.health and reporter.health[-1] == {endpoint.url: True}
    notes = Archive(database_url(str(db))).notes(report.campaign_id, kind="endpoints")
    assert [n.data["endpoints"][endpoint.url]["up"] for n in notes] == [False, True]


@pytest.mark.slow
def test_both_endpoints_down_past_the_limit_stop_the_campaign_and_resume_finishes_it(
        tmp_path: Path, echo_task_file: Path) -> None:
    a, b = FakeEndpoint(task_aware_responder, delay_s=0.2), FakeEndpoint(task_aware_responder, delay_s=0.2)
    db = tmp_path / "a.db"
    data = config(echo_task_file, "unused")
    for role in ("task", "proposer"):
        data["models"][role] = {k: v for k, v in data["models"][role].items() if k != "base_url"} | {
            "endpoints": [{"base_url": a.url}, {"base_url": b.url}]}
    cfg = parse_config(data | {"health": {"outage_limit_s": 3.0, "probe_initial_s": 0.5, "probe_max_s": 1.0}})
    try:
        thread, out = _in_thread(lambda: run_campaigns(cfg, Archive(database_url(str(db))), SilentReporter()))
        assert wait_until(lambda: stored_results(db) >= 10, 120), "the campaign never got going"
        a.close()
        progressed = stored_results(db) + 10
        assert wait_until(lambda: stored_results(db) >= progressed, 120), "it carried on with the other endpoint"
        b.close()
        closed = time.monotonic()
        thread.join(60)
        assert not thread.is_alive() and time.monotonic() - closed < 20, "stopped within bounded time"
        [stopped] = out
        assert isinstance(stopped, CampaignStopped) and stopped.stopped_by == "endpoint_down"
        archive = Archive(database_url(str(db)))
        campaign = archive.campaign(stopped.campaign_id)
        assert campaign.status == "stopped" and campaign.summary["stopped_by"] == "endpoint_down"
        assert _errors(db) == 0
        status = json.loads(cli("status", stopped.campaign_id, "--db", str(db), "--json").stdout)
        assert status["stopped_by"] == "endpoint_down" and "no endpoint of role" in status["stop_detail"]
        assert status["errors"] == 0 and not any(h["up"] for h in status["endpoints"]["endpoints"].values())
        assert all(h["down_for_s"] >= 3.0 for h in status["endpoints"]["endpoints"].values()), \
            "the outage's length runs to the stop, not frozen at its first moment"

        a.reopen()
        b.reopen()
        [report] = run_campaigns(cfg, archive, SilentReporter(), resume=stopped.campaign_id)
    finally:
        a.close()
        b.close()
    assert report.campaign_id == stopped.campaign_id and report.best_test.n == 8
    assert archive.campaign(report.campaign_id).status == "finished" and _errors(db) == 0


def test_a_run_that_cannot_reach_its_endpoint_writes_no_archive(tmp_path: Path, echo_task_file: Path) -> None:
    path = tmp_path / "campaign.yaml"
    path.write_text(json.dumps(config(echo_task_file, "http://127.0.0.1:9/v1")))
    failed = cli("run", str(path), "--db", str(tmp_path / "a.db"), "--quiet")
    assert failed.returncode == 2 and "cannot reach model endpoint http://127.0.0.1:9/v1" in failed.stderr
    assert not (tmp_path / "a.db").exists()


def test_the_progress_bar_counts_an_outage_as_it_goes_on() -> None:
    """Health is reported when it changes; the bar's length of the outage must keep counting."""
    reporter = RichReporter(Console(file=io.StringIO(), force_terminal=True))
    try:
        reporter.endpoints({"a": EndpointHealth(up=False, down_for_s=12.0)})
        [task] = reporter.progress.tasks
        assert OutageColumn().render(task).plain == "down for 12s"
        task.fields["down_since"] -= 30  # half a minute later, with no new report
        assert OutageColumn().render(task).plain == "down for 42s"
        reporter.endpoints({"a": EndpointHealth(up=True)})
        assert OutageColumn().render(task).plain == ""
    finally:
        reporter.close()
