"""The gate every uncached LLM call passes: endpoint choice, concurrency, rate limits and budgets.

One gate serves a whole run. In a Ray run it lives in one actor that every worker asks before a
call, so per-endpoint limits and budgets hold across the cluster, not per process. The rule itself
(:class:`Admission`) is plain, clock-injected code; :class:`LocalGate` adds the waiting.
"""

import itertools
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from agentopt.agents.budget import Price, RoleBudget, Spend
from agentopt.agents.errors import BudgetExhausted


class Endpoint(BaseModel):
    """Where a model is served, and how hard it may be pushed. The API key is read from the
    environment variable named here, so it never sits in a config file, the archive or generated code."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_url: str
    model: str
    api_key_env: str | None = None
    max_concurrency: int | None = Field(None, ge=1, description="requests in flight at once, across all workers")
    requests_per_s: float | None = Field(None, gt=0, description="request rate limit, across all workers")
    tokens_per_min: float | None = Field(None, gt=0, description="token rate limit (prompt + completion)")


@dataclass
class Bucket:
    """A token bucket: ``rate`` units per second, at most ``capacity`` banked."""

    capacity: float
    rate: float
    level: float = field(init=False)
    updated: float | None = None

    def __post_init__(self) -> None:
        self.level = self.capacity

    def refill(self, now: float) -> None:
        if self.updated is not None:
            self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
        self.updated = now

    def wait_for(self, amount: float, now: float) -> float:
        """Seconds until ``amount`` (capped at the capacity) can be taken; 0 if it can be now."""
        self.refill(now)
        missing = min(amount, self.capacity) - self.level
        return 0.0 if missing <= 0 else missing / self.rate

    def take(self, amount: float) -> None:
        self.level -= min(amount, self.capacity)


@dataclass
class EndpointState:
    endpoint: Endpoint
    in_flight: int = 0
    served: int = 0
    requests: Bucket | None = None
    tokens: Bucket | None = None

    def __post_init__(self) -> None:
        e = self.endpoint
        if e.requests_per_s:
            self.requests = Bucket(max(1.0, e.requests_per_s), e.requests_per_s)
        if e.tokens_per_min:
            self.tokens = Bucket(e.tokens_per_min, e.tokens_per_min / 60)

    def wait(self, tokens: float, now: float) -> float:
        if self.endpoint.max_concurrency is not None and self.in_flight >= self.endpoint.max_concurrency:
            return float("inf")  # until a call on it finishes
        waits = [b.wait_for(n, now) for b, n in ((self.requests, 1), (self.tokens, tokens)) if b is not None]
        return max(waits, default=0.0)


@dataclass
class Ledger:
    budget: RoleBudget = field(default_factory=RoleBudget)
    price: Price = field(default_factory=Price)
    spent: Spend = field(default_factory=Spend)
    reserved: Spend = field(default_factory=Spend)


class Lease(NamedTuple):
    """Permission for one call: the endpoint to use, and the id to hand back when it is done."""

    id: int
    url: str


@dataclass(frozen=True)
class Held:
    role: str
    url: str
    tokens: int
    reserved: Spend
    expires: float


class Admission:
    """Which endpoint may take a call now, or how long to wait; raises when a budget is spent.

    A lease not handed back by its expiry (its worker died mid-call) is reclaimed, so a killed
    process cannot hold an endpoint slot or a budget reservation for ever.
    """

    def __init__(self, endpoints: Sequence[Endpoint]) -> None:
        self.endpoints = {e.base_url: EndpointState(e) for e in endpoints}
        self.ledgers: dict[str, Ledger] = {}
        self.held: dict[int, Held] = {}
        self.next_id = itertools.count()
        self.deadline: float | None = None
        self.stopped: str | None = None

    def configure(self, role: str, budget: RoleBudget, price: Price, spent: Spend) -> None:
        ledger = self.ledgers.setdefault(role, Ledger())
        ledger.budget, ledger.price, ledger.spent = budget, price, spent
        self.stopped = None

    def set_deadline(self, deadline: float | None) -> None:
        self.deadline = deadline
        self.stopped = None

    def spent(self, role: str) -> Spend:
        return self.ledgers.get(role, Ledger()).spent

    def try_acquire(self, role: str, urls: Sequence[str], prompt_tokens: int, max_tokens: int, ttl_s: float,
                    now: float) -> Lease | float:
        """A lease on an endpoint, or seconds to wait before asking again."""
        for lease_id in [i for i, h in self.held.items() if h.expires <= now]:
            self.release(self.held[lease_id].role, lease_id, None)
        ledger = self.ledgers.setdefault(role, Ledger())
        if self.deadline is not None and now >= self.deadline:
            self.stopped = "wall_time_s"
        estimate = Spend.of_call(prompt_tokens, max_tokens, ledger.price)
        what = (ledger.spent + ledger.reserved + estimate).over(ledger.budget)
        if what is not None:
            self.stopped = f"{role}.{what}"
        if self.stopped:
            raise BudgetExhausted(self.stopped)
        tokens = prompt_tokens + max_tokens
        states = [self.endpoints[u] for u in urls]
        waits = [s.wait(tokens, now) for s in states]
        ready = [s for s, w in zip(states, waits, strict=True) if w == 0.0]
        if not ready:
            return min(waits)
        chosen = min(ready, key=lambda s: (s.in_flight, s.served))
        chosen.in_flight += 1
        chosen.served += 1
        if chosen.requests:
            chosen.requests.take(1)
        if chosen.tokens:
            chosen.tokens.take(tokens)
        ledger.reserved += estimate
        lease = Lease(next(self.next_id), chosen.endpoint.base_url)
        self.held[lease.id] = Held(role, lease.url, tokens, estimate, now + ttl_s)
        return lease

    def release(self, role: str, lease_id: int, used: tuple[int, int] | None) -> None:
        """A call finished: ``used`` is its (prompt, completion) tokens, ``None`` if it failed.

        A late release of a reclaimed lease still books what the call used."""
        ledger = self.ledgers.setdefault(role, Ledger())
        held = self.held.pop(lease_id, None)
        if held is not None:
            state = self.endpoints[held.url]
            state.in_flight -= 1
            ledger.reserved -= held.reserved
            if state.tokens:  # settle the token bucket with what the call really used
                state.tokens.level += held.tokens - sum(used or (0, 0))
        if used is not None:
            ledger.spent += Spend.of_call(*used, ledger.price)


class LocalGate:
    """Thread-safe waiting around :class:`Admission`; also the body of the cluster-wide Ray actor."""

    def __init__(self, endpoints: Sequence[Endpoint]) -> None:
        self._admission = Admission(endpoints)
        self._changed = threading.Condition()

    def configure(self, role: str, budget: RoleBudget, price: Price, spent: Spend) -> None:
        with self._changed:
            self._admission.configure(role, budget, price, spent)
            self._changed.notify_all()

    def set_deadline(self, deadline: float | None) -> None:
        with self._changed:
            self._admission.set_deadline(deadline)

    def spent(self, role: str) -> Spend:
        with self._changed:
            return self._admission.spent(role)

    def stopped(self) -> str | None:
        with self._changed:
            return self._admission.stopped

    def acquire(self, role: str, urls: Sequence[str], prompt_tokens: int, max_tokens: int, ttl_s: float) -> Lease:
        with self._changed:
            while True:
                got = self._admission.try_acquire(role, urls, prompt_tokens, max_tokens, ttl_s, time.time())
                if isinstance(got, Lease):
                    return got
                self._changed.wait(timeout=min(got, 1.0))

    def release(self, role: str, lease_id: int, used: tuple[int, int] | None) -> None:
        with self._changed:
            self._admission.release(role, lease_id, used)
            self._changed.notify_all()
