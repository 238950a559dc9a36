from typing import Any

import pytest
from fakes import FakeEndpoint

from agentopt.agents.models.budget import Price, RoleBudget, Spend
from agentopt.agents.runtime.errors import ConfigError, LLMEmptyReply, LLMError, LLMUnavailable
from agentopt.agents.models.gate import LocalGate
from agentopt.agents.models.llm import Endpoint, LLMClient, MemoryCache, Sampling, cache_key
from agentopt.agents.runtime.wire import SamplingRefused, openai_chat

MESSAGES = [{"role": "user", "content": "hi"}]


def client(endpoint: FakeEndpoint, max_attempts: int = 3, **kwargs: Any) -> LLMClient:
    return LLMClient([Endpoint(base_url=endpoint.url, model="fake")], MemoryCache(), max_attempts=max_attempts,
                     timeout_s=5, **kwargs)


def scripted(*replies: tuple[int, Any]) -> FakeEndpoint:
    queue = list(replies)
    return FakeEndpoint(lambda body: queue.pop(0) if len(queue) > 1 else queue[0])


def test_transient_failures_are_retried_then_succeed() -> None:
    endpoint = scripted((500, {"error": "boom"}), (429, {"error": "slow down"}), (200, "hello"))
    try:
        reply = client(endpoint, max_attempts=4).chat(MESSAGES)
        assert reply.text == "hello" and len(endpoint.requests) == 3
    finally:
        endpoint.close()


def test_persistent_failure_is_a_typed_error_after_bounded_attempts() -> None:
    endpoint = scripted((503, {"error": "down"}))
    try:
        with pytest.raises(LLMUnavailable, match="gave up after 3 attempts"):
            client(endpoint).chat(MESSAGES)
        assert len(endpoint.requests) == 3
    finally:
        endpoint.close()


def test_malformed_body_is_retried_and_never_an_empty_answer() -> None:
    endpoint = scripted((200, b"<html>proxy error"))  # a proxy's page: the next try may reach the model
    try:
        with pytest.raises(LLMUnavailable, match="malformed reply body"):
            client(endpoint).chat(MESSAGES)
        assert len(endpoint.requests) == 3
    finally:
        endpoint.close()


def test_a_completion_without_a_message_is_an_error_without_retry() -> None:
    endpoint = scripted((200, {"choices": []}))  # the endpoint's answer: another try gets the same
    try:
        with pytest.raises(LLMEmptyReply, match="no message content"):
            client(endpoint).chat(MESSAGES)
        assert len(endpoint.requests) == 1
    finally:
        endpoint.close()


def test_empty_reply_is_an_error_without_retry() -> None:
    endpoint = scripted((200, "   "))
    try:
        with pytest.raises(LLMEmptyReply):
            client(endpoint).chat(MESSAGES)
        assert len(endpoint.requests) == 1
    finally:
        endpoint.close()


def test_client_error_is_not_retried() -> None:
    endpoint = scripted((400, {"error": "bad request"}))
    try:
        with pytest.raises(LLMError, match="refused the request"):
            client(endpoint).chat(MESSAGES)
        assert len(endpoint.requests) == 1
    finally:
        endpoint.close()


def test_cache_serves_repeats_and_keys_on_every_sampling_parameter() -> None:
    endpoint = scripted((200, "hello"))
    try:
        llm = client(endpoint)
        first = llm.chat(MESSAGES)
        again = llm.chat(MESSAGES)
        assert not first.cached and again.cached and again.text == "hello"
        assert len(endpoint.requests) == 1
        llm.chat(MESSAGES, temperature=0.5)
        llm.chat(MESSAGES, sample=1)
        llm.chat(MESSAGES, max_tokens=7)
        assert len(endpoint.requests) == 4
        assert llm.usage.calls == 4 and llm.usage.cache_hits == 1
        assert llm.usage.prompt_tokens == 40 and llm.usage.completion_tokens == 8
        assert endpoint.requests[-1]["max_tokens"] == 7, "max_tokens must be sent as such (llama.cpp ignores the newer name)"
    finally:
        endpoint.close()


def test_cache_key_depends_on_model_messages_params_and_sample() -> None:
    base = cache_key("m", MESSAGES, Sampling(), 0)
    assert base == cache_key("m", list(MESSAGES), Sampling(), 0)
    assert len({base, cache_key("n", MESSAGES, Sampling(), 0), cache_key("m", [{"role": "user", "content": "ho"}], Sampling(), 0),
                cache_key("m", MESSAGES, Sampling(top_p=0.9), 0), cache_key("m", MESSAGES, Sampling(), 1)}) == 5


def test_metered_view_counts_separately_and_shares_the_cache() -> None:
    endpoint = scripted((200, "hello"))
    try:
        llm = client(endpoint)
        llm.chat(MESSAGES)
        view = llm.metered()
        view.chat(MESSAGES)
        assert view.usage.cache_hits == 1 and view.usage.calls == 0 and llm.usage.calls == 1
    finally:
        endpoint.close()


def test_missing_api_key_variable_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGENTOPT_TEST_KEY", raising=False)
    with pytest.raises(ConfigError, match="AGENTOPT_TEST_KEY"):
        LLMClient([Endpoint(base_url="http://127.0.0.1:9/v1", model="m", api_key_env="AGENTOPT_TEST_KEY")], MemoryCache())


def test_unreachable_endpoint_fails_fast() -> None:
    llm = LLMClient([Endpoint(base_url="http://127.0.0.1:9/v1", model="m")], MemoryCache())
    with pytest.raises(LLMUnavailable, match="cannot reach model endpoint"):
        llm.check_reachable()


def test_the_role_caps_what_a_call_may_ask_for_and_counts_what_it_clamped() -> None:
    endpoint = scripted((200, "hello"))
    try:
        llm = client(endpoint, sampling=Sampling(temperature=0.0, max_tokens=16))
        llm.chat(MESSAGES, temperature=57, max_tokens=10**9)
        llm.chat(MESSAGES, sample=1, temperature=-3, max_tokens=0)
        llm.chat(MESSAGES, sample=2, temperature=0.7, max_tokens=4)
    finally:
        endpoint.close()
    sent = [(r["temperature"], r["max_tokens"]) for r in endpoint.requests]
    assert sent == [(1.0, 16), (0.0, 1), (0.7, 4)], "clamped into [0, 1] and [1, the role's max_tokens]"
    assert llm.usage.clamped == 2


def test_sampling_overrides_the_role_does_not_allow_are_refused_before_anything_is_sent() -> None:
    endpoint = scripted((200, "hello"))
    try:
        llm = client(endpoint)
        for bad in ({"top_p": 0.1}, {"stop": ["x"]}, {"seed": 3}, {"temperature": "hot"}, {"temperature": float("nan")},
                    {"max_tokens": 2.5}, {"max_tokens": True}):
            with pytest.raises(SamplingRefused):
                llm.chat(MESSAGES, **bad)
    finally:
        endpoint.close()
    assert endpoint.requests == []


def test_an_exported_packages_chat_bounds_overrides_as_the_campaign_did() -> None:
    """Exported packages send through ``wire.openai_chat``: the same rule, so a replay asks the
    endpoint exactly what the campaign asked, and a package cannot be talked past the role's cap."""
    endpoint = scripted((200, "hello"))
    try:
        chat = openai_chat("fake", {"temperature": 0.0, "max_tokens": 16}, endpoint.url, None)
        chat(MESSAGES, temperature=57, max_tokens=10**9)
        with pytest.raises(SamplingRefused):
            chat(MESSAGES, top_p=0.1)
    finally:
        endpoint.close()
    assert [(r["temperature"], r["max_tokens"]) for r in endpoint.requests] == [(1.0, 16)]


def test_a_huge_max_tokens_override_does_not_stop_a_token_budget() -> None:
    endpoint = scripted((200, "hello"))
    endpoints = [Endpoint(base_url=endpoint.url, model="fake")]
    gate = LocalGate(endpoints)
    gate.configure("task", RoleBudget(tokens=500), Price(), Spend())
    try:
        llm = LLMClient(endpoints, MemoryCache(), Sampling(max_tokens=32), timeout_s=5, gate=gate)
        assert llm.chat(MESSAGES, max_tokens=10**9).text == "hello"
        assert llm.chat(MESSAGES, sample=1, max_tokens=10**9).text == "hello"
    finally:
        endpoint.close()
    assert gate.stopped() is None and gate.spent("task") == Spend(2, 20, 4, 0.0)


@pytest.mark.local_model
def test_real_local_model_answers_and_is_cached(local_model: Any) -> None:
    llm = LLMClient(local_model.endpoints, MemoryCache(), Sampling(max_tokens=8))
    reply = llm.chat([{"role": "user", "content": "Say hello."}])
    assert reply.text.strip() and reply.prompt_tokens > 0 and reply.completion_tokens > 0
    assert llm.chat([{"role": "user", "content": "Say hello."}]).cached
    assert llm.usage.calls == 1
