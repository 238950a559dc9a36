"""The gate every uncached LLM call passes: endpoint choice, concurrency, rate limits, budgets and health.

One gate serves a whole run. In a Ray run it lives in one actor that every worker asks before a
call, so per-endpoint limits, budgets and endpoint health hold across the cluster, not per process.
The rule itself (:class:`Admission`) is plain, clock-injected code; :class:`LocalGate` adds the waiting.

Health: an endpoint that fails ``failures_to_down`` calls in a row (connection errors, timeouts,
5xx) is *down*. Its traffic goes to the endpoints that are up, and callers waiting for a lease are
handed *probe* leases on it: one real, 1-token request, never charged to a budget, first at once,
then with backoff. A failed probe confirms the outage (so calls that failed on it are excused, see
:class:`~agentopt.agents.models.llm.LLMClient`); a probe that answers brings the endpoint back. While a role
has no endpoint up its calls wait; after ``outage_limit_s`` the gate halts the run (``endpoint_down``).

Prefix affinity: an endpoint answers a prompt faster when it starts with what the endpoint last
processed (llama.cpp re-uses the KV cache of its last prompt; vLLM, SGLang and the hosted APIs cache
prefixes across requests). Each call brings its prompt as a :func:`prefix_chain`; the gate remembers
the chain it last admitted to each endpoint and sends a call where the longest part of its prompt is
already known, as far as load balance allows: while it has a free slot and at most
``IMBALANCE - 1`` more calls in flight than the least loaded one. (It keeps the call even while
another endpoint is idle for a moment: between two calls of a run the next one is still on its way,
and handing it to the idle endpoint would evict that endpoint's own run, then the next one's.)
A call whose prefix (at least ``WAIT_BLOCKS`` of it) only an endpoint at its concurrency limit
holds waits for it, unless another endpoint would otherwise idle: then it goes there (work
stealing), which then holds that prefix too.
"""

import hashlib
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from agentopt.agents.models.budget import Price, RoleBudget, Spend, Used
from agentopt.agents.models.endpoints import Endpoint as Endpoint
from agentopt.agents.models.endpoints import EndpointHealth as EndpointHealth
from agentopt.agents.models.endpoints import EndpointState
from agentopt.agents.models.endpoints import Health as Health
from agentopt.agents.models.endpoints import Seen as Seen
from agentopt.agents.runtime.errors import BudgetExhausted

ENDPOINT_DOWN = "endpoint_down"
BLOCK_CHARS = 32  # prefix granularity: a few tokens
MAX_BLOCKS = 512  # prompts agree or differ within their first 16k characters
IMBALANCE = 2  # an endpoint holding a call's prefix gets it while it has fewer than this many more in flight
WAIT_BLOCKS = 4  # a call waits for a full endpoint only when it holds this much of the prompt (128 characters)


def prefix_chain(messages: Sequence[Mapping[str, str]]) -> tuple[int, ...]:
    """A prompt as a chain of hashes, entry k covering its first k + 1 blocks of ``BLOCK_CHARS``
    characters: two prompts agree on their first k entries exactly when they share those blocks,
    the part an endpoint's prefix cache can re-use. The trailing partial block is left out."""
    text = "".join(f"\x1e{m.get('role', '')}\x1f{m.get('content', '')}" for m in messages).encode()
    digest, chain = hashlib.blake2b(digest_size=8), []
    for start in range(0, min(len(text), BLOCK_CHARS * MAX_BLOCKS) - BLOCK_CHARS + 1, BLOCK_CHARS):
        digest.update(text[start:start + BLOCK_CHARS])
        chain.append(int.from_bytes(digest.copy().digest(), "big", signed=True))
    return tuple(chain)


def shared(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading blocks two prefix chains have in common. Entry k hashes all blocks up to
    k, so two chains that agree at k agree before it: a binary search finds the first difference."""
    low, high = 0, min(len(a), len(b))
    while low < high:
        mid = (low + high + 1) // 2
        if a[mid - 1] == b[mid - 1]:
            low = mid
        else:
            high = mid - 1
    return low


class Halted(BudgetExhausted):
    """The gate refuses every further call of this run: a role's endpoints stayed down past the
    outage limit, or a supervisor gave up on a server. Unlike a spent budget, the campaign cannot
    finish now; it stops unfinished and ``agentopt resume`` completes it later."""

    def __init__(self, budget: str, detail: str) -> None:
        super().__init__(budget)
        self.args = (f"{budget}: {detail}",)
        self.detail = detail

    def __reduce__(self) -> tuple[type, tuple[str, str]]:  # type: ignore[override]  # crosses Ray intact
        return (type(self), (self.budget, self.detail))


@dataclass
class Ledger:
    budget: RoleBudget = field(default_factory=RoleBudget)
    price: Price = field(default_factory=Price)
    spent: Spend = field(default_factory=Spend)
    reserved: Spend = field(default_factory=Spend)


class Lease(NamedTuple):
    """Permission for one call: the endpoint to use, and the id to hand back when it is done.

    A ``probe`` lease asks the caller to send one health probe there instead (then ask again).
    ``seen`` holds each requested endpoint's :class:`Seen`; ``None`` when the gate tracks no health.
    Ids grow in admission order: an answer is news about a failure only if admitted after it."""

    id: int
    url: str
    probe: bool = False
    seen: dict[str, Seen] | None = None


Account = tuple[str, str | None]
"""A budget ledger's key: (role, campaign). ``(role, None)`` is the total over every campaign on
the gate: a sweep's budget, unlimited unless configured; a call made for a campaign is booked on
both its campaign's ledger and the total."""


def accounts(role: str, campaign: str | None) -> tuple[Account, ...]:
    return ((role, campaign), (role, None)) if campaign is not None else ((role, None),)


@dataclass(frozen=True)
class Held:
    role: str
    campaign: str | None
    url: str
    tokens: int
    reserved: tuple[Spend, ...]  # on each of the call's accounts, in order
    expires: float
    probe: bool = False


class Admission:
    """Which endpoint may take a call now, or how long to wait; raises when a budget is spent or
    the run is halted.

    A lease not handed back by its expiry (its worker died mid-call) is reclaimed, so a killed
    process cannot hold an endpoint slot or a budget reservation for ever. Without ``health`` every
    endpoint always counts as up, and failures are the caller's alone to count.
    """

    def __init__(self, endpoints: Sequence[Endpoint], health: Health | None = None, affinity: bool = True) -> None:
        self.endpoints = {e.base_url: EndpointState(e) for e in endpoints}
        self.health = health
        self.affinity = affinity
        self.ledgers: dict[Account, Ledger] = {}
        self.held: dict[int, Held] = {}
        self.issued = 0  # leases so far; the next one's id
        self.deadlines: dict[str | None, float] = {}  # per campaign; None: every campaign
        self.stops: dict[str | None, str] = {}  # the limit that stopped a campaign (None: every campaign)
        self.finishing: set[str] = set()  # campaigns scoring their finalists: past the total's limits
        self.halted: Halted | None = None
        self.clock = 0.0  # the latest time admission was asked for

    def configure(self, role: str, budget: RoleBudget, price: Price, spent: Spend, campaign: str | None = None) -> None:
        """Set a campaign's ledger for ``role`` (``campaign=None``: the total over all campaigns)."""
        ledger = self.ledgers.setdefault((role, campaign), Ledger())
        ledger.budget, ledger.price, ledger.spent = budget, price, spent
        self.stops.pop(campaign, None)

    def set_deadline(self, deadline: float | None, campaign: str | None = None) -> None:
        if deadline is None:
            self.deadlines.pop(campaign, None)
        else:
            self.deadlines[campaign] = deadline
        self.stops.pop(campaign, None)

    def spent(self, role: str, campaign: str | None = None) -> Spend:
        return self.ledgers.get((role, campaign), Ledger()).spent

    def stopped(self, campaign: str | None = None) -> str | None:
        """The limit that stops a campaign's calls (``None``: the one that stops every campaign's)."""
        if campaign is None:
            return self.stops.get(None)
        return self.stops.get(campaign) or (None if campaign in self.finishing else self.stops.get(None))

    def finish(self, campaign: str) -> None:
        """The campaign has stopped searching and scores its finalists on the test split: only its
        own budget (which kept a reserve for this) holds it now, not the total over all campaigns,
        so a sweep's budget never leaves a running campaign without its test scores."""
        self.finishing.add(campaign)

    def halt(self, reason: str, detail: str) -> None:
        """Refuse every further call with ``reason``; budgets reconfigured later do not lift it."""
        self.halted = self.halted or Halted(reason, detail)

    def down(self, state: EndpointState) -> bool:
        return self.health is not None and state.streak >= self.health.failures_to_down

    def report(self, now: float) -> dict[str, EndpointHealth]:
        """Each endpoint as a person is shown it."""
        def one(s: EndpointState) -> EndpointHealth:
            if not self.down(s) or s.down_since is None:
                return EndpointHealth(True, None, s.last_error, s.outages)
            return EndpointHealth(False, round(now - s.down_since, 1), s.last_error, s.outages)

        return {url: one(s) for url, s in self.endpoints.items()}

    def try_acquire(self, role: str, urls: Sequence[str], prompt_tokens: int, max_tokens: int, ttl_s: float,
                    now: float, prefix: Sequence[int] = (), campaign: str | None = None) -> Lease | float:
        """A lease on an endpoint (or a probe lease), or seconds to wait before asking again;
        ``prefix`` is the call's :func:`prefix_chain`; ``campaign`` whose budget pays for it."""
        self.clock = now
        for lease_id, held in [(i, h) for i, h in self.held.items() if h.expires <= now]:
            self.release(held.role, lease_id, None, campaign=held.campaign)
        ledgers = [self.ledgers.setdefault(a, Ledger()) for a in accounts(role, campaign)]
        estimates = (Spend.of_call(prompt_tokens, max_tokens, ledgers[0].price),) * len(ledgers)  # the payer's price
        self._check_stops(role, campaign, ledgers, estimates, now)
        states = [self.endpoints[u] for u in urls]
        up = [s for s in states if not self.down(s)]
        if not up:
            self._check_outage(role, states, now)
        due = [s for s in states if self.down(s) and not s.probing and s.probe_at <= now]
        if due:
            return self._lease(due[0], role, campaign, urls, 0, (), ttl_s, now, probe=True)
        tokens = prompt_tokens + max_tokens
        waits = [s.wait(tokens, now) for s in up]
        ready = [s for s, w in zip(up, waits, strict=True) if w == 0.0]
        if not ready:
            return min(waits + [self._next_probe(states, now)])
        chain = tuple(prefix)
        chosen = self._choose(ready, up, chain)
        if chosen is None:
            return min([w for w in waits if w > 0] + [self._next_probe(states, now)])
        chosen.prefix = chain
        chosen.in_flight += 1
        chosen.last_lease = self.issued
        if chosen.requests:
            chosen.requests.take(1)
        if chosen.tokens:
            chosen.tokens.take(tokens)
        for ledger, estimate in zip(ledgers, estimates, strict=True):
            ledger.reserved += estimate
        return self._lease(chosen, role, campaign, urls, tokens, estimates, ttl_s, now)

    def _choose(self, ready: Sequence[EndpointState], up: Sequence[EndpointState],
                prefix: tuple[int, ...]) -> EndpointState | None:
        """The ready endpoint for a call, or ``None``: wait for the busy one that holds its prefix.

        Among equally loaded endpoints the one admitted to longest ago goes first: when a run of
        calls ends, its endpoint stops being admitted to, so a new prefix goes there and leaves the
        runs still going where they are."""
        least = min(ready, key=lambda s: (s.in_flight, s.last_lease))
        if not self.affinity or not prefix:
            return least
        best = max(ready, key=lambda s: (shared(s.prefix, prefix), -s.in_flight, -s.last_lease))
        if shared(best.prefix, prefix):
            return least if best.in_flight - least.in_flight >= IMBALANCE else best
        held_by_full = any(s.full and shared(s.prefix, prefix) >= WAIT_BLOCKS for s in up)
        return None if held_by_full and least.in_flight > 0 else least

    def _check_stops(self, role: str, campaign: str | None, ledgers: Sequence[Ledger], estimates: Sequence[Spend],
                     now: float) -> None:
        """Raise once a limit of the call's campaign, or of all campaigns, is reached; it stays
        reached for that campaign (or all) until its budget is configured again."""
        if self.halted is not None:
            raise self.halted
        scopes = {campaign} if campaign in self.finishing else {campaign, None}
        for scope in scopes:
            deadline = self.deadlines.get(scope)
            if deadline is not None and now >= deadline:
                self.stops.setdefault(scope, "wall_time_s")
        for (_, scope), ledger, estimate in zip(accounts(role, campaign), ledgers, estimates, strict=True):
            what = (ledger.spent + ledger.reserved + estimate).over(ledger.budget) if scope in scopes else None
            if what is not None:
                self.stops.setdefault(scope, f"{role}.{what}")
        stop = self.stopped(campaign)
        if stop:
            raise BudgetExhausted(stop)

    def _check_outage(self, role: str, states: Sequence[EndpointState], now: float) -> None:
        """Halt the run once a role has had no endpoint up for the outage limit."""
        assert self.health is not None  # an endpoint can only be down when health is tracked
        since = max((s.down_since for s in states if s.down_since is not None), default=now)
        if now - since >= self.health.outage_limit_s:
            errors = "; ".join(f"{s.endpoint.base_url}: {s.last_error}" for s in states)
            self.halt(ENDPOINT_DOWN, f"no endpoint of role {role} answered for {now - since:.0f}s ({errors})")
            assert self.halted is not None  # halt() has just set it
            raise self.halted

    def _next_probe(self, states: Sequence[EndpointState], now: float) -> float:
        """Seconds until a down endpoint may be probed (or the outage limit checked) again."""
        waits = [max(s.probe_at - now, 0.0) for s in states if self.down(s) and not s.probing]
        return min(waits, default=float("inf"))

    def _lease(self, state: EndpointState, role: str, campaign: str | None, urls: Sequence[str], tokens: int,
               reserved: tuple[Spend, ...], ttl_s: float, now: float, probe: bool = False) -> Lease:
        url = state.endpoint.base_url
        seen = None if self.health is None else {u: self.endpoints[u].seen for u in urls}
        lease = Lease(self.issued, url, probe, seen)
        self.issued += 1
        state.probing = state.probing or probe
        self.held[lease.id] = Held(role, campaign, url, tokens, reserved, now + ttl_s, probe)
        return lease

    def release(self, role: str, lease_id: int, used: tuple[int, ...] | None, fault: str | None = None,
                now: float | None = None, campaign: str | None = None) -> int | None:
        """A call (or probe) finished: ``used`` is its :class:`Used` tokens if the endpoint received
        it (booked: an answer's tokens, a refused or failed request as a call, a timeout as what it
        was asked for, which may have been billed); ``fault`` says why the endpoint failed it
        (connection error, timeout, 5xx); ``used`` alone: it answered, so it is up; neither: it
        failed for another reason, which says nothing about the endpoint's health. ``now`` dates a
        fault (default: the last admission's time).

        For a fault, returns the id the next lease will get (an answer to it or a later one shows
        the endpoint working after the fault); ``None`` otherwise or without health tracking. A
        probe costs no budget. A late release of a reclaimed lease still books what the call used."""
        held = self.held.pop(lease_id, None)
        tokens = None if used is None else Used(*used)
        campaign = held.campaign if held is not None else campaign
        if held is None or not held.probe:
            if held is not None:
                self._free(held, tokens)
            if tokens is not None:
                ledgers = [self.ledgers.setdefault(a, Ledger()) for a in accounts(role, campaign)]
                cost = Spend.of_call(tokens.prompt_tokens, tokens.completion_tokens, ledgers[0].price,
                                     tokens.cached_tokens)  # at the payer's price, on its ledger and the total
                for ledger in ledgers:
                    ledger.spent += cost
        if held is None or self.health is None:
            return None
        state = self.endpoints[held.url]
        state.probing = state.probing and not held.probe
        if fault is not None:
            state.failed(self.issued, fault, held.probe, self.health, self.clock if now is None else now)
            return self.issued
        if used is not None:
            state.answered(lease_id)
        return None

    def _free(self, held: Held, used: Used | None) -> None:
        state = self.endpoints[held.url]
        state.in_flight -= 1
        for account, reserved in zip(accounts(held.role, held.campaign), held.reserved):
            self.ledgers.setdefault(account, Ledger()).reserved -= reserved
        if state.tokens:  # settle the token bucket with what the call really used
            state.tokens.level += held.tokens - (used.prompt_tokens + used.completion_tokens if used else 0)


class LocalGate:
    """Thread-safe waiting around :class:`Admission`; also the body of the cluster-wide Ray actor."""

    def __init__(self, endpoints: Sequence[Endpoint], health: Health | None = None, affinity: bool = True) -> None:
        self._admission = Admission(endpoints, health, affinity)
        self._changed = threading.Condition()

    def configure(self, role: str, budget: RoleBudget, price: Price, spent: Spend, campaign: str | None = None) -> None:
        with self._changed:
            self._admission.configure(role, budget, price, spent, campaign)
            self._changed.notify_all()

    def set_deadline(self, deadline: float | None, campaign: str | None = None) -> None:
        with self._changed:
            self._admission.set_deadline(deadline, campaign)

    def spent(self, role: str, campaign: str | None = None) -> Spend:
        with self._changed:
            return self._admission.spent(role, campaign)

    def stopped(self, campaign: str | None = None) -> str | None:
        with self._changed:
            return self._admission.stopped(campaign)

    def finish(self, campaign: str) -> None:
        with self._changed:
            self._admission.finish(campaign)
            self._changed.notify_all()

    def halt(self, reason: str, detail: str) -> None:
        """Stop the run: every waiting and later acquire raises :class:`Halted` (e.g. a local model
        server that keeps dying, reported by its supervisor)."""
        with self._changed:
            self._admission.halt(reason, detail)
            self._changed.notify_all()

    def health(self) -> dict[str, EndpointHealth]:
        with self._changed:
            return self._admission.report(time.time())

    def acquire(self, role: str, urls: Sequence[str], prompt_tokens: int, max_tokens: int, ttl_s: float,
                prefix: Sequence[int] = (), campaign: str | None = None) -> Lease:
        with self._changed:
            while True:
                got = self._admission.try_acquire(role, urls, prompt_tokens, max_tokens, ttl_s, time.time(), prefix,
                                                  campaign)
                if isinstance(got, Lease):
                    return got
                self._changed.wait(timeout=min(got, 1.0))

    def release(self, role: str, lease_id: int, used: tuple[int, ...] | None, fault: str | None = None,
                campaign: str | None = None) -> int | None:
        with self._changed:
            tick = self._admission.release(role, lease_id, used, fault, time.time(), campaign)
            self._changed.notify_all()
            return tick
