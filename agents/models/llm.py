"""One client for every OpenAI-compatible endpoint, with caching, bounded retries and usage.

Every call is keyed on (model, messages, every sampling parameter, sample index). A hit returns the
stored completion without touching the network, so a repeated or resumed run pays for nothing twice.
Transport failures are retried a bounded number of times and then raised as :class:`LLMUnavailable`
(after the wait a 429's ``Retry-After`` asks for, when it asks for more than the backoff); an answer
another try would repeat (401/403, another 4xx, a completion without a message) is raised at once
as :class:`LLMRefused`. None is ever turned into an empty answer. A failure caused by an endpoint
outage is not the call's: it waits for the endpoint and tries again (see :class:`Attempts`); a
timeout is always the call's, since the endpoint may have done, and billed, the work, and a request
is sent at most ``max_attempts`` times in all, however often it is asked for (see :class:`TimedOut`). Every attempt
the endpoint received is booked on the gate's ledger, answered or not. The role decides sampling: a
caller may only lower ``max_tokens`` and pick a temperature in the role's range (see :func:`bounded`).
"""

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Protocol

import openai
from openai.types.chat import ChatCompletion
from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception_type,
    retry_if_not_exception_type,
    wait_exponential_jitter,
)

from agentopt.agents.models.budget import Used, estimate_prompt_tokens
from agentopt.agents.runtime.errors import ConfigError, LLMBadReply, LLMEmptyReply, LLMError, LLMRefused, LLMUnavailable
from agentopt.agents.models.gate import Endpoint, Lease, LocalGate, prefix_chain
from agentopt.agents.models.llm_attempts import OUTAGES_RIDDEN, RETRY_AFTER_MAX_S, Attempts, TimedOut, retry_after
from agentopt.agents.models.llm_calls import (
    CallCache,
    Completion,
    MemoryCache,
    Message,
    Payer,
    Sampling,
    Usage,
    bounded,
    cache_key,
    describe_error,
    request_key,
)
from agentopt.agents.runtime.sandbox import register_secret
from agentopt.agents.runtime.wire import completion_request, mean_pooled

__all__ = ["LEASE_SLACK_S", "OUTAGES_RIDDEN", "RETRY_AFTER_MAX_S", "SAVED_FIELD", "Attempts", "CallCache",
           "Completion", "Endpoint", "Gate", "LLMClient", "MemoryCache", "Message", "Payer", "Sampling", "TimedOut",
           "Usage", "bounded", "cache_key", "request_key", "retry_after"]
"""The client, and what its callers have always imported from here (defined in llm_calls and llm_attempts)."""

LEASE_SLACK_S = 30.0  # a lease outlives its request's timeout by this much before it is reclaimed
SAVED_FIELD = "prompt_seconds_saved"  # the bundled server's usage extension (see agents/models/llama_server.py)

_RETRIABLE = (
    openai.APITimeoutError,
    openai.APIConnectionError,
    openai.RateLimitError,
    openai.InternalServerError,
    LLMBadReply,
)
_FAULTS = (openai.APIConnectionError, openai.InternalServerError)  # the endpoint's failure, not the request's


class Gate(Protocol):
    """Admits each uncached call to an endpoint and tracks endpoint health (see :mod:`agentopt.agents.models.gate`)."""

    def acquire(self, role: str, urls: Sequence[str], prompt_tokens: int, max_tokens: int, ttl_s: float,
                prefix: Sequence[int] = (), campaign: str | None = None) -> Lease: ...

    def release(self, role: str, lease_id: int, used: tuple[int, ...] | None,
                fault: str | None = None, campaign: str | None = None) -> int | None: ...


class LLMClient:
    """A role's model (task, proposer, judge): a pool of endpoints serving one model, a cache and
    default sampling. Every uncached call passes the ``gate`` (endpoint choice, limits, budgets).
    ``metered()`` gives a view that shares all of that but counts its own usage and payer."""

    def __init__(
        self,
        endpoints: Sequence[Endpoint],
        cache: CallCache,
        sampling: Sampling = Sampling(),
        timeout_s: float = 60.0,
        max_attempts: int = 4,
        gate: Gate | None = None,
        role: str = "task",
    ) -> None:
        if not endpoints:
            raise ConfigError("an LLM role needs at least one endpoint")
        if len({e.model for e in endpoints}) != 1:
            raise ConfigError("all endpoints of one role must serve the same model")
        self.endpoints = tuple(endpoints)
        self.model = endpoints[0].model
        self.cache = cache
        self.sampling = sampling
        self.max_attempts = max_attempts
        self.timeout_s = timeout_s
        self.gate: Gate = gate or LocalGate(endpoints)
        self.payer = Payer(role=role)
        self.usage = Usage()
        self.timed_out = TimedOut()
        self.embedder: LLMClient | None = None  # what agents embed with (a prompt agent retrieving by embeddings)
        self._clients = {
            e.base_url: openai.OpenAI(base_url=e.base_url, api_key=_api_key(e), timeout=timeout_s, max_retries=0)
            for e in endpoints
        }

    def _view(self) -> "LLMClient":
        view = object.__new__(LLMClient)
        view.__dict__.update(self.__dict__)
        return view

    def metered(self, campaign_id: str | None = None) -> "LLMClient":
        view = self._view()
        view.usage = Usage()
        if campaign_id is not None:
            view.payer = replace(self.payer, campaign_id=campaign_id)
        if self.embedder is not None:
            view.embedder = self.embedder.metered(campaign_id)
        return view

    def with_embedder(self, embedder: "LLMClient | None") -> "LLMClient":
        """A view whose agents embed through ``embedder``: the task model's client carries the
        embedder role's when an agent retrieves its demonstrations by embeddings."""
        view = self._view()
        view.embedder = embedder
        return view

    def resampled(self, **fields: object) -> "LLMClient":
        """A view whose role sampling is changed, validated, for a strategy's own trusted calls
        (ADAS's meta agent writes whole programs); per-call overrides, which agent code can
        choose, stay bounded by it. Shares usage, cache, gate and payer."""
        view = self._view()
        view.sampling = Sampling.model_validate({**self.sampling.model_dump(), **fields})
        return view

    def chat(self, messages: Sequence[Message], *, sample: int = 0, **overrides: object) -> Completion:
        """Complete ``messages``; ``sample`` distinguishes repeated draws at temperature > 0.
        ``overrides`` (temperature, max_tokens) are held to the role's range, see :func:`bounded`."""
        sampling, clamped = bounded(self.sampling, overrides)
        if clamped:
            self.usage.clamp()
        request = {"model": self.model, "messages": list(messages), "sampling": sampling.model_dump(), "sample": sample}
        return self._cached(request, estimate_prompt_tokens(messages), sampling.max_tokens,
                            lambda client: self._request(client, list(messages), sampling, sample), self._chat_probe,
                            prefix_chain(messages))

    def embed(self, text: str) -> tuple[float, ...]:
        """The endpoint's embedding of ``text``, mean-pooled when it returns one vector per token
        (llama.cpp's server does for a chat model); cached and budgeted like a chat call."""
        request: dict[str, object] = {"model": self.model, "embed": text}
        completion = self._cached(request, estimate_prompt_tokens([{"role": "user", "content": text}]), 0,
                                  lambda client: self._embed_request(client, text), self._embed_probe)
        return tuple(json.loads(completion.text))

    def _cached(self, request: dict[str, object], prompt_estimate: int, max_tokens: int,
                send: Callable[[openai.OpenAI], Completion], probe: Callable[[openai.OpenAI], object],
                prefix: tuple[int, ...] = ()) -> Completion:
        key = request_key(request)
        hit = self.cache.get(key)
        if hit is not None:
            completion = replace(hit, cached=True)
        else:
            try:
                completion = self._call_with_retries(key, send, probe, prompt_estimate, max_tokens, prefix)
            except LLMError as exc:
                self.usage.fail(exc)
                raise
            self.cache.put(key, request, completion, self.payer)
        self.usage.add(completion)
        return completion

    def _call_with_retries(self, key: str, send: Callable[[openai.OpenAI], Completion],
                           probe: Callable[[openai.OpenAI], object], prompt_estimate: int, max_tokens: int,
                           prefix: tuple[int, ...]) -> Completion:
        attempts = Attempts(self.max_attempts, charged=self.timed_out.get(key))
        if attempts.spent:
            raise LLMUnavailable(f"{self.model}: not sent again: it timed out {attempts.charged} times already "
                                 f"(APITimeoutError; max_attempts {self.max_attempts})")
        backoff = wait_exponential_jitter(initial=0.5, max=8.0)
        retrying = Retrying(
            stop=lambda _: attempts.spent,
            wait=lambda state: 0.0 if attempts.judging else max(
                backoff(state), retry_after(state.outcome.exception() if state.outcome else None)),
            retry=retry_if_exception_type(_RETRIABLE) & retry_if_not_exception_type(LLMRefused),
        )
        try:
            return retrying(self._call_once, send, probe, prompt_estimate, max_tokens, prefix, attempts)
        except RetryError as exc:
            last = exc.last_attempt.exception()
            raise LLMUnavailable(f"{self.model}: gave up after {attempts.charged} attempts: "
                                 f"{describe_error(last)}") from None
        except openai.APIStatusError as exc:
            raise LLMRefused(f"{self.model}: endpoint refused the request: {describe_error(exc)}") from None
        finally:
            if attempts.timeouts:
                self.timed_out.add(key, attempts.timeouts)

    def _call_once(self, send: Callable[[openai.OpenAI], Completion], probe: Callable[[openai.OpenAI], object],
                   prompt_estimate: int, max_tokens: int, prefix: tuple[int, ...], attempts: Attempts) -> Completion:
        lease = self._lease(probe, prompt_estimate, max_tokens, prefix)
        attempts.settle(lease)
        if attempts.spent:  # the open faults turned out to be this call's own: give up with the last
            self.gate.release(self.payer.role, lease.id, None, campaign=self.payer.campaign_id)
            assert attempts.last is not None  # spent only after a failure
            raise attempts.last
        role, campaign = self.payer.role, self.payer.campaign_id
        try:
            completion = send(self._clients[lease.url])
        except openai.APITimeoutError as exc:  # the endpoint got it and may bill all it was asked for
            self.gate.release(role, lease.id, Used(prompt_estimate, max_tokens), describe_error(exc), campaign=campaign)
            attempts.timed_out(exc)
            raise
        except _FAULTS as exc:
            asked = Used(0, 0) if isinstance(exc, openai.APIStatusError) else None  # a 5xx was received
            attempts.faulted(lease, self.gate.release(role, lease.id, asked, describe_error(exc), campaign=campaign), exc)
            raise
        except (openai.APIStatusError, LLMBadReply) as exc:  # it answered: received, and up
            self.gate.release(role, lease.id, Used(0, 0), campaign=campaign)
            attempts.failed(exc)
            raise
        except BaseException as exc:
            self.gate.release(role, lease.id, None, campaign=campaign)
            attempts.failed(exc)
            raise
        self.gate.release(role, lease.id,
                          Used(completion.prompt_tokens, completion.completion_tokens, completion.cached_tokens),
                          campaign=campaign)
        return completion

    def _lease(self, probe: Callable[[openai.OpenAI], object], prompt_estimate: int, max_tokens: int,
               prefix: tuple[int, ...]) -> Lease:
        """A lease for this call, after sending whatever probes the gate hands out on the way."""
        while True:
            lease = self.gate.acquire(self.payer.role, list(self._clients), prompt_estimate, max_tokens,
                                      self.timeout_s + LEASE_SLACK_S, prefix, self.payer.campaign_id)
            if not lease.probe:
                return lease
            self._probe(lease, probe)

    def _probe(self, lease: Lease, probe: Callable[[openai.OpenAI], object]) -> None:
        """One probe of a down endpoint: a real request of this client's kind, neither cached nor
        charged to a budget. Only an answer counts: a health URL can answer while the model cannot."""
        used: Used | None = None
        fault: str | None = None
        try:
            probe(self._clients[lease.url])
            used = Used(0, 0)
        except openai.RateLimitError:
            used = Used(0, 0)  # it answered: busy, not down
        except Exception as exc:  # noqa: BLE001 - whatever a probe hits keeps the endpoint down, with its reason
            fault = describe_error(exc)
        finally:
            self.gate.release(self.payer.role, lease.id, used, fault, campaign=self.payer.campaign_id)

    def _chat_probe(self, client: openai.OpenAI) -> object:
        return client.chat.completions.create(model=self.model, messages=[{"role": "user", "content": "Say OK."}],
                                              max_tokens=1, temperature=0.0)

    def _embed_probe(self, client: openai.OpenAI) -> object:
        return client.embeddings.create(model=self.model, input=["ok"])

    def _embed_request(self, client: openai.OpenAI, text: str) -> Completion:
        started = time.perf_counter()
        try:
            response = client.embeddings.create(model=self.model, input=[text])
            vectors = [response.data[0].embedding]
        except (json.JSONDecodeError, openai.APIResponseValidationError, AttributeError, IndexError) as exc:
            raise LLMBadReply(f"{self.model}: malformed embedding reply ({type(exc).__name__})") from None
        try:
            pooled = mean_pooled(vectors[0])
        except LLMError:
            raise LLMBadReply(f"{self.model}: empty embedding") from None
        usage = getattr(response, "usage", None)
        return Completion(text=json.dumps(pooled), prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
                          completion_tokens=0, latency_s=time.perf_counter() - started)

    def _request(self, client: openai.OpenAI, messages: list[Message], sampling: Sampling, sample: int) -> Completion:
        started = time.perf_counter()
        try:
            response = client.post("/chat/completions", cast_to=ChatCompletion,
                                   body=completion_request(self.model, messages, sampling.model_dump(), sample))
        except (json.JSONDecodeError, openai.APIResponseValidationError) as exc:
            raise LLMBadReply(f"{self.model}: malformed reply body ({type(exc).__name__})") from None
        latency = time.perf_counter() - started
        choices = getattr(response, "choices", None)
        if not choices or choices[0].message is None or choices[0].message.content is None:
            raise LLMEmptyReply(f"{self.model}: reply has no message content")
        text = choices[0].message.content
        if not text.strip():
            raise LLMEmptyReply(f"{self.model}: empty reply")
        usage = response.usage
        details = getattr(usage, "prompt_tokens_details", None)
        return Completion(
            text=text,
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            latency_s=latency,
            finish_reason=choices[0].finish_reason or "stop",
            cached_tokens=int(getattr(details, "cached_tokens", 0) or 0),
            prompt_saved_s=float(((usage.model_extra or {}) if usage else {}).get(SAVED_FIELD) or 0.0),
        )

    def check_reachable(self) -> None:
        """Fail fast with one clear line when an endpoint is down, before a campaign starts."""
        for endpoint in self.endpoints:
            client = self._clients[endpoint.base_url]
            try:
                client.models.list()
            except openai.APIError as exc:
                raise LLMUnavailable(f"cannot reach model endpoint {endpoint.base_url}: {describe_error(exc)}") from None


def _api_key(endpoint: Endpoint) -> str:
    if endpoint.api_key_env is None:
        return "not-needed"
    key = os.environ.get(endpoint.api_key_env)
    if not key:
        raise ConfigError(f"environment variable {endpoint.api_key_env} (API key for {endpoint.base_url}) is not set")
    register_secret(key)  # masked by value in sandboxes, whatever its variable is called
    return key
