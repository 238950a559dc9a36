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

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from email.utils import parsedate_to_datetime
from typing import Protocol

import openai
from openai.types.chat import ChatCompletion
from pydantic import BaseModel, ConfigDict, Field
from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception_type,
    retry_if_not_exception_type,
    wait_exponential_jitter,
)

from agentopt.agents.budget import Used, estimate_prompt_tokens
from agentopt.agents.errors import ConfigError, LLMBadReply, LLMEmptyReply, LLMError, LLMRefused, LLMUnavailable
from agentopt.agents.gate import Endpoint, Lease, LocalGate, prefix_chain
from agentopt.agents.sandbox import register_secret
from agentopt.agents import wire
from agentopt.agents.wire import completion_request, mean_pooled

Message = dict[str, str]
LEASE_SLACK_S = 30.0  # a lease outlives its request's timeout by this much before it is reclaimed
SAVED_FIELD = "prompt_seconds_saved"  # the bundled server's usage extension (see agents/llama_server.py)
OUTAGES_RIDDEN = 3  # outages one call may wait out; after that its faults are charged like any failure
RETRY_AFTER_MAX_S = 60.0  # a longer Retry-After is waited this long (the openai client's own cap)

_RETRIABLE = (
    openai.APITimeoutError,
    openai.APIConnectionError,
    openai.RateLimitError,
    openai.InternalServerError,
    LLMBadReply,
)
_FAULTS = (openai.APIConnectionError, openai.InternalServerError)  # the endpoint's failure, not the request's


class Sampling(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    temperature: float = Field(0.0, ge=0.0, le=2.0)
    max_tokens: int = Field(64, ge=1)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    stop: tuple[str, ...] = ()


def bounded(role: Sampling, overrides: Mapping[str, object]) -> tuple[Sampling, bool]:
    """:func:`agentopt.agents.wire.bounded` on a role's :class:`Sampling`."""
    fields, clamped = wire.bounded(role.model_dump(), overrides)
    return (Sampling.model_validate(fields) if overrides else role), clamped


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    finish_reason: str = "stop"
    cached: bool = False  # served from agentopt's call cache, not the endpoint
    cached_tokens: int = 0  # prompt tokens the endpoint served from its own prompt (KV) cache
    prompt_saved_s: float = 0.0  # prompt-evaluation time that saved, where the endpoint says (the bundled server)


@dataclass(frozen=True)
class Payer:
    """Who paid for a call: the campaign and role whose budget it counts against."""

    campaign_id: str | None = None
    role: str = "task"


class CallCache(Protocol):
    """Storage of finished calls; the archive implements it in SQL, tests in memory."""

    def get(self, key: str) -> Completion | None: ...

    def put(self, key: str, request: dict[str, object], completion: Completion, payer: Payer) -> None: ...


class Gate(Protocol):
    """Admits each uncached call to an endpoint and tracks endpoint health (see :mod:`agentopt.agents.gate`)."""

    def acquire(self, role: str, urls: Sequence[str], prompt_tokens: int, max_tokens: int, ttl_s: float,
                prefix: Sequence[int] = (), campaign: str | None = None) -> Lease: ...

    def release(self, role: str, lease_id: int, used: tuple[int, ...] | None,
                fault: str | None = None, campaign: str | None = None) -> int | None: ...


class MemoryCache:
    def __init__(self) -> None:
        self._calls: dict[str, Completion] = {}

    def get(self, key: str) -> Completion | None:
        return self._calls.get(key)

    def put(self, key: str, request: dict[str, object], completion: Completion, payer: Payer) -> None:
        self._calls[key] = completion


@dataclass
class Usage:
    """Counts for one meter: a whole role, or a single example evaluated on a worker."""

    calls: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    footprint_tokens: int = 0
    latency_s: float = 0.0
    clamped: int = 0  # calls whose sampling overrides went past what the role allows
    failed: int = 0  # calls that raised an LLMError: retries spent, or an answer another try would repeat
    refused: int = 0  # of those, the ones another try would repeat (LLMRefused): running them again cannot help
    last_error: str | None = None  # the latest failure, for the person told about them
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, completion: Completion) -> None:
        with self._lock:
            self.footprint_tokens += completion.prompt_tokens + completion.completion_tokens
            if completion.cached:
                self.cache_hits += 1
                return
            self.calls += 1
            self.prompt_tokens += completion.prompt_tokens
            self.completion_tokens += completion.completion_tokens
            self.latency_s += completion.latency_s

    def clamp(self) -> None:
        with self._lock:
            self.clamped += 1

    def fail(self, exc: LLMError) -> None:
        with self._lock:
            self.failed += 1
            self.refused += isinstance(exc, LLMRefused)
            self.last_error = _describe(exc)

    def as_dict(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in ("calls", "cache_hits", "prompt_tokens", "completion_tokens", "footprint_tokens",
                                                "latency_s", "clamped", "failed", "refused")}


@dataclass
class Attempts:
    """One call's failures, judged as the gate learns more, so an outage never uses up a call's attempts.

    Failures other than faults are charged at once. A fault (connection error, timeout, 5xx) stays
    open until the endpoint shows what it was: an outage confirmed after the attempt was admitted
    excuses it (the call waits for the endpoint and tries again), an answer to a call admitted
    after the fault was reported charges it. An open fault is retried at once, without backoff:
    the gate paces it (a down endpoint is only probed, with backoff), and a quick retry is what
    lets the gate tell an outage from a bad request before a restarted server hides it. Without
    health tracking (``seen`` is ``None``) a fault is charged at once. Waiting is bounded too:
    after ``OUTAGES_RIDDEN`` outages, faults are charged."""

    limit: int
    charged: int = 0
    timeouts: int = 0
    ridden: int = 0
    open: list[tuple[str, int, int]] = field(default_factory=list)  # (url, outages at admission, fault's tick)
    last: BaseException | None = None
    judging: bool = False  # the last failure is an open fault: ask the gate again at once, it paces the retry

    @property
    def spent(self) -> bool:
        return self.charged >= self.limit

    def failed(self, exc: BaseException) -> None:
        self.charged += 1
        self.last, self.judging = exc, False

    def timed_out(self, exc: BaseException) -> None:
        self.timeouts += 1
        self.failed(exc)

    def faulted(self, lease: Lease, tick: int | None, exc: BaseException) -> None:
        """``tick``: what the gate answered to the fault's release (``None``: it tracks no health)."""
        self.last, self.judging = exc, False
        if lease.seen is None or tick is None or self.ridden >= OUTAGES_RIDDEN:
            self.charged += 1
            return
        self.open.append((lease.url, lease.seen[lease.url].outages, tick))
        self.judging = True

    def settle(self, lease: Lease) -> None:
        """Judge the open faults by what ``lease`` says of their endpoints now."""
        if lease.seen is None or not self.open:
            return
        still, excused = [], False
        for url, outages, tick in self.open:
            now = lease.seen[url]
            if now.outages > outages:
                excused = True
            elif now.answered >= tick:
                self.charged += 1
            else:
                still.append((url, outages, tick))
        self.open = still
        self.ridden += excused


@dataclass
class TimedOut:
    """Attempts that timed out, per request key, over a client's life (its views share it). The
    endpoint may have run, and billed, each one, so a request that timed out is sent at most
    ``max_attempts`` times in all, even when a campaign asks for it again (a second pass, another
    trial on the same example). Per process: a Ray worker keeps its own."""

    counts: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def get(self, key: str) -> int:
        with self._lock:
            return self.counts.get(key, 0)

    def add(self, key: str, n: int) -> None:
        with self._lock:
            self.counts[key] = self.counts.get(key, 0) + n


def cache_key(model: str, messages: Sequence[Message], sampling: Sampling, sample: int) -> str:
    return request_key({"model": model, "messages": list(messages), "sampling": sampling.model_dump(), "sample": sample})


def request_key(request: dict[str, object]) -> str:
    """Every field of a request, so a cached answer is only reused for exactly that request."""
    return hashlib.sha256(json.dumps(request, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


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
                                 f"{_describe(last)}") from None
        except openai.APIStatusError as exc:
            raise LLMRefused(f"{self.model}: endpoint refused the request: {_describe(exc)}") from None
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
            self.gate.release(role, lease.id, Used(prompt_estimate, max_tokens), _describe(exc), campaign=campaign)
            attempts.timed_out(exc)
            raise
        except _FAULTS as exc:
            asked = Used(0, 0) if isinstance(exc, openai.APIStatusError) else None  # a 5xx was received
            attempts.faulted(lease, self.gate.release(role, lease.id, asked, _describe(exc), campaign=campaign), exc)
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
            fault = _describe(exc)
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
                raise LLMUnavailable(f"cannot reach model endpoint {endpoint.base_url}: {_describe(exc)}") from None


def _api_key(endpoint: Endpoint) -> str:
    if endpoint.api_key_env is None:
        return "not-needed"
    key = os.environ.get(endpoint.api_key_env)
    if not key:
        raise ConfigError(f"environment variable {endpoint.api_key_env} (API key for {endpoint.base_url}) is not set")
    register_secret(key)  # masked by value in sandboxes, whatever its variable is called
    return key


def retry_after(exc: BaseException | None) -> float:
    """Seconds the endpoint asked to be left alone (``retry-after-ms``, or ``Retry-After`` in
    seconds or as a date) on the reply that failed, at most ``RETRY_AFTER_MAX_S``; 0 if it did not say."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or {}
    seconds = 0.0
    try:
        if (ms := headers.get("retry-after-ms")) is not None:
            seconds = float(ms) / 1000
        elif (value := headers.get("retry-after")) is not None:
            seconds = float(value) if value.strip().replace(".", "", 1).isdigit() else \
                parsedate_to_datetime(value).timestamp() - time.time()
    except (TypeError, ValueError):  # a header that says nothing usable: the backoff decides
        return 0.0
    return min(seconds, RETRY_AFTER_MAX_S) if seconds > 0 else 0.0  # NaN and the past: no wait


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "unknown error"
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
