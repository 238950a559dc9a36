"""What one LLM call is: its sampling, its cache key, its completion, who pays for it, where it is
stored and how a role's usage counts it. :class:`~agentopt.agents.models.llm.LLMClient` makes the calls.
"""

import hashlib
import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field

from agentopt.agents.runtime import wire
from agentopt.agents.runtime.errors import LLMError, LLMRefused

Message = dict[str, str]


class Sampling(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    temperature: float = Field(0.0, ge=0.0, le=2.0)
    max_tokens: int = Field(64, ge=1)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    stop: tuple[str, ...] = ()


def bounded(role: Sampling, overrides: Mapping[str, object]) -> tuple[Sampling, bool]:
    """:func:`agentopt.agents.runtime.wire.bounded` on a role's :class:`Sampling`."""
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
            self.last_error = describe_error(exc)

    def as_dict(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in ("calls", "cache_hits", "prompt_tokens", "completion_tokens", "footprint_tokens",
                                                "latency_s", "clamped", "failed", "refused")}


def cache_key(model: str, messages: Sequence[Message], sampling: Sampling, sample: int) -> str:
    return request_key({"model": model, "messages": list(messages), "sampling": sampling.model_dump(), "sample": sample})


def request_key(request: dict[str, object]) -> str:
    """Every field of a request, so a cached answer is only reused for exactly that request."""
    return hashlib.sha256(json.dumps(request, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def describe_error(exc: BaseException | None) -> str:
    """An exception in one line, as usage records it and error messages quote it."""
    if exc is None:
        return "unknown error"
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
