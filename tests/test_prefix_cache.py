"""Prefix-aware scheduling and prompt caching: the gate's affinity rule, prefix runs in the pump,
cached tokens in the ledger and in prices. Control flow only; the real server's counts are
checked in test_local_model.py."""

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeEndpoint, completion
from pydantic import ValidationError

from agentopt.agents.models.budget import Price, RoleBudget, Spend, Used
from agentopt.agents.models.gate import (
    BLOCK_CHARS,
    WAIT_BLOCKS,
    Admission,
    Endpoint,
    Lease,
    LocalGate,
    prefix_chain,
    shared,
)
from agentopt.agents.models.llama_server import PromptCost, reused_tokens
from agentopt.agents.models.llm import LLMClient, MemoryCache, Payer
from agentopt.agents.prompt import PromptAgent
from agentopt.archive.cache import SqlCallCache
from agentopt.archive.store import Archive, Paid, database_url
from agentopt.optimizer.engine.budgets import ledger
from agentopt.optimizer.engine.evaluation import InOrder, Job, PrefixRuns, ThreadEvaluator

INSTRUCTION = "Name the larger of the two animals, in one word. " * 4


def _messages(instruction: str, example: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": instruction}, {"role": "user", "content": example}]


def test_prompts_sharing_an_instruction_share_its_prefix_blocks() -> None:
    a = prefix_chain(_messages(INSTRUCTION, "Which is larger, a cat or a blue whale? Think of their weight."))
    b = prefix_chain(_messages(INSTRUCTION, "Which is larger, an ant or a dog? Think of their length, then say."))
    common = shared(a, b)
    assert common * BLOCK_CHARS >= len(INSTRUCTION) - BLOCK_CHARS, "the whole instruction is a shared prefix"
    assert common < min(len(a), len(b)), "the examples differ"
    other = prefix_chain(_messages("Reply with the smaller animal. " * 6, "cat or whale?"))
    assert shared(a, other) == 0
    assert prefix_chain([{"role": "user", "content": "hi"}]) == (), "shorter than a block: no prefix to share"


# --- the gate's rule --------------------------------------------------------------------------------

def _gate(affinity: bool = True, **limits: Any) -> Admission:
    return Admission([Endpoint(base_url=u, model="m", **limits) for u in ("a", "b")], affinity=affinity)


def _acquire(gate: Admission, prefix: Sequence[int]) -> Lease | float:
    return gate.try_acquire("task", ["a", "b"], 10, 5, 60, now=0.0, prefix=prefix)


A, B, C = (prefix_chain(_messages(text * 12, "x")) for text in ("Answer briefly. ", "Be exact now. ", "Think first. "))


def test_calls_go_where_their_prefix_was_served_and_wait_for_it_while_the_other_endpoint_is_busy() -> None:
    gate = _gate(max_concurrency=2)
    a1, b1, a2, b2 = (_acquire(gate, p) for p in (A, B, A, B))
    assert isinstance(a1, Lease) and isinstance(b1, Lease) and isinstance(a2, Lease) and isinstance(b2, Lease)
    assert a1.url == a2.url != b1.url == b2.url, "each prefix keeps to one endpoint"
    gate.release("task", b1.id, Used(10, 2))
    assert _acquire(gate, A) == float("inf"), "A's endpoint is full and B's still has work: A waits"
    b3 = _acquire(gate, B)
    assert isinstance(b3, Lease) and b3.url == b1.url
    gate.release("task", b2.id, Used(10, 2))
    gate.release("task", b3.id, Used(10, 2))
    stolen = _acquire(gate, A)
    assert isinstance(stolen, Lease) and stolen.url == b1.url, "an idle endpoint takes the waiting prefix"
    assert isinstance(_acquire(gate, C), Lease), "a new prefix takes any free slot"


def test_a_call_waits_only_for_a_full_endpoint_holding_a_real_part_of_its_prompt() -> None:
    gate = _gate(max_concurrency=1)
    opening = prefix_chain(_messages("You are a helpful assistant. Answer briefly.", "x"))
    other = prefix_chain(_messages("You are a helpful assistant. Answer briefly." + " Now be exact." * 12, "y"))
    assert 0 < shared(opening, other) < WAIT_BLOCKS
    first, second = _acquire(gate, A), _acquire(gate, opening)
    assert isinstance(first, Lease) and isinstance(second, Lease)
    gate.release("task", first.id, Used(10, 2))
    third = _acquire(gate, other)
    assert isinstance(third, Lease) and third.url == first.url, "a shared opening is not worth waiting for"
    slow = Admission([Endpoint(base_url="a", model="m", requests_per_s=0.001), Endpoint(base_url="b", model="m")])
    held, elsewhere = _acquire(slow, A), _acquire(slow, B)
    assert isinstance(held, Lease) and isinstance(elsewhere, Lease) and held.url == "a"
    moved = _acquire(slow, A)
    assert isinstance(moved, Lease) and moved.url == "b", "a holder held back by its rate limit is not waited for"


def test_a_holder_with_a_free_slot_keeps_its_run_and_a_full_one_never_keeps_another_idle() -> None:
    gate = _gate(max_concurrency=2)
    first, second = _acquire(gate, A), _acquire(gate, A)
    assert isinstance(first, Lease) and isinstance(second, Lease) and first.url == second.url, \
        "the holder has a free slot: the run stays, though the other endpoint idles"
    third = _acquire(gate, A)
    assert isinstance(third, Lease) and third.url != first.url, "the holder is full: the idle endpoint takes it"
    fourth = _acquire(gate, A)
    assert isinstance(fourth, Lease) and fourth.url == third.url, "both endpoints now hold the prefix"


def test_a_new_prefix_goes_where_the_last_run_ended() -> None:
    gate = _gate(max_concurrency=2)
    a1, a2 = _acquire(gate, A), _acquire(gate, A)
    assert isinstance(a1, Lease) and isinstance(a2, Lease)
    gate.release("task", a1.id, Used(10, 2))
    a3, b1 = _acquire(gate, A), _acquire(gate, B)  # A's last call; B's run starts elsewhere
    assert isinstance(a3, Lease) and isinstance(b1, Lease) and a3.url == a1.url != b1.url
    gate.release("task", a2.id, Used(10, 2))
    b2 = _acquire(gate, B)
    assert isinstance(b2, Lease) and b2.url == b1.url
    gate.release("task", b1.id, Used(10, 2))  # one call in flight on each; A's endpoint has served more
    c1 = _acquire(gate, C)
    assert isinstance(c1, Lease) and c1.url == a1.url, "C goes where nothing was admitted for longest, not into B's run"


def test_affinity_yields_to_load_balance_without_concurrency_limits() -> None:
    gate = _gate()
    leases = [_acquire(gate, A) for _ in range(4)]
    urls = [lease.url for lease in leases if isinstance(lease, Lease)]
    assert len(urls) == 4 and urls.count("a") - urls.count("b") <= 2, urls


def test_without_affinity_calls_go_to_the_least_loaded_endpoint() -> None:
    gate = _gate(affinity=False, max_concurrency=2)
    urls = [lease.url for lease in (_acquire(gate, p) for p in (A, A, A, A)) if isinstance(lease, Lease)]
    assert sorted(urls) == ["a", "a", "b", "b"] and urls[0] != urls[1], "alternating, whatever the prefix"


# --- prefix runs in the pump ------------------------------------------------------------------------

def _jobs(runs: dict[int, int]) -> list[Job]:
    return [Job(c, "train", f"e{i}", "x", {}) for c, n in runs.items() for i in range(n)]


def _drain(schedule: PrefixRuns | InOrder, limit: int) -> list[str]:
    started, in_flight = [], []
    while True:
        while len(in_flight) < limit and (job := schedule.take()) is not None:
            in_flight.append(job)
            started.append(f"{job.candidate_id}{job.example_id}")
        if not in_flight:
            return started
        schedule.finished(done := in_flight.pop(0))
        assert done is not None


def test_prefix_runs_give_each_lane_one_candidate_at_a_time_and_steal_at_the_end() -> None:
    started = _drain(PrefixRuns(_jobs({1: 5, 2: 5, 3: 3}), lanes=2), limit=4)
    assert started[:4] == ["1e0", "2e0", "1e1", "2e1"], "lanes start interleaved, one candidate each"
    assert sorted(started) == sorted(f"{c}e{i}" for c, n in {1: 5, 2: 5, 3: 3}.items() for i in range(n))
    assert started.index("3e0") > started.index("1e4"), "candidate 3 waits for a lane to finish its run"
    assert _drain(InOrder(_jobs({1: 2, 2: 2})), limit=4) == ["1e0", "1e1", "2e0", "2e1"]


def test_a_lost_job_runs_again() -> None:
    schedule = PrefixRuns(_jobs({1: 2}), lanes=2)
    first = schedule.take()
    assert first is not None
    schedule.finished(first)
    schedule.put_back(first)
    again = [schedule.take(), schedule.take()]
    assert sorted(job.example_id for job in again if job) == ["e0", "e1"]
    assert schedule.take() is None


# --- cached tokens as data --------------------------------------------------------------------------

def test_cached_tokens_cost_the_cached_rate_and_estimates_stay_upper_bounds() -> None:
    price = Price(input_per_mtok=2.0, output_per_mtok=8.0, cached_input_per_mtok=0.5)
    assert price.cost(1_000_000, 0, cached_tokens=600_000) == pytest.approx(0.8 + 0.3)
    assert Price(input_per_mtok=2.0).cost(100, 0, 100) == Price(input_per_mtok=2.0).cost(100, 0), "default: no discount"
    with pytest.raises(ValidationError, match="cannot exceed"):
        Price(input_per_mtok=1.0, cached_input_per_mtok=2.0)
    gate = _gate()
    gate.configure("task", RoleBudget(usd=1.0), price, Spend())
    lease = _acquire(gate, A)
    assert isinstance(lease, Lease)
    gate.release("task", lease.id, Used(1_000_000, 0, 600_000))
    assert gate.spent("task") == Spend(1, 1_000_000, 0, pytest.approx(1.1), 600_000)


def test_the_client_records_what_the_endpoint_served_from_its_prompt_cache(tmp_path: Path) -> None:
    def reply(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        answer = completion("ok")
        answer["usage"] = {"prompt_tokens": 200, "completion_tokens": 2, "total_tokens": 202,
                           "prompt_tokens_details": {"cached_tokens": 180}, "prompt_seconds_saved": 0.25}
        return 200, answer

    endpoint = FakeEndpoint(reply)
    archive = Archive(database_url(str(tmp_path / "a.db")))
    try:
        llm = LLMClient([Endpoint(base_url=endpoint.url, model="fake")], SqlCallCache(archive))
        llm.payer = Payer("c1")
        first = llm.chat(_messages(INSTRUCTION, "cat or whale?"))
        again = llm.chat(_messages(INSTRUCTION, "cat or whale?"))
    finally:
        endpoint.close()
    assert (first.cached_tokens, first.prompt_saved_s) == (180, 0.25)
    assert again.cached and again.cached_tokens == 180, "the call cache keeps what the call reported"
    assert archive.spend("c1") == {"task": Paid(1, 200, 2, 180, 0.25)}
    prices = {role: Price(input_per_mtok=1.0, cached_input_per_mtok=0.1) for role in ("task", "proposer", "judge")}
    task = ledger(archive, "c1", prices)["task"]
    assert task["cached_tokens"] == 180 and task["prompt_saved_s"] == 0.2
    assert task["usd"] == pytest.approx((20 * 1.0 + 180 * 0.1) / 1e6)


def test_reused_tokens_follow_llama_cpp_prefix_rule() -> None:
    assert reused_tokens([1, 2, 3, 9], [1, 2, 3, 4, 5], exact_ready=True) == 3
    assert reused_tokens([1, 2, 3], [1, 2, 3], exact_ready=True) == 3, "the whole prompt, logits live"
    assert reused_tokens([1, 2, 3], [1, 2, 3], exact_ready=False) == 2, "one token replayed for fresh logits"
    assert reused_tokens([1, 2, 3, 4], [1, 2, 3], exact_ready=True) == 2, "a prompt inside the cache"
    assert reused_tokens([7], [1, 2], exact_ready=True) == 0


def test_the_saving_per_cached_token_comes_from_long_evaluations() -> None:
    cost = PromptCost()
    assert cost.per_token() == 0.0
    for tokens in (5, 10, 200, 400):
        cost.add(tokens, 0.010 + 0.002 * tokens)  # a fixed 10 ms pass plus 2 ms per token
    assert cost.per_token() == pytest.approx((0.41 + 0.81) / 600), "the short passes are left out"


def _main_endpoint_share(affinity: bool) -> float:
    """The mean share of a candidate's calls served by the endpoint that served most of them, for
    4 candidates x 10 examples on 2 scripted endpoints."""
    servers = [FakeEndpoint(lambda body: (200, "ok"), delay_s=0.02) for _ in range(2)]
    try:
        endpoints = [Endpoint(base_url=s.url, model="fake", max_concurrency=2) for s in servers]
        llm = LLMClient(endpoints, MemoryCache(), gate=LocalGate(endpoints, affinity=affinity))
        agents = [PromptAgent(instruction=f"Instruction number {i}: answer with one word. " * 3) for i in range(4)]
        jobs = [Job(i, "train", f"e{k}", f"example {k}", agent.payload()) for i, agent in enumerate(agents)
                for k in range(10)]
        evaluator = ThreadEvaluator(llm, workers=4, lanes=2 if affinity else None)
        try:
            evaluator.evaluate(jobs, lambda job, outcome: None)
        finally:
            evaluator.close()
        counts = [[sum(r["messages"][0]["content"] == agent.instruction for r in s.requests) for s in servers]
                  for agent in agents]
        return sum(max(c) / sum(c) for c in counts) / len(counts)
    finally:
        for server in servers:
            server.close()


def test_a_candidates_calls_keep_to_one_endpoint_with_prefix_runs_and_not_without() -> None:
    """Not all of them: a round's first calls may reach the gate in any order, and an endpoint
    that would idle takes a call whose prefix another holds."""
    after, before = _main_endpoint_share(affinity=True), _main_endpoint_share(affinity=False)
    assert after >= 0.75 and before <= 0.65, (after, before)
