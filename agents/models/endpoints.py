"""Where a model is served, when an endpoint counts as down, and the state the gate keeps of each.

The rules that read this state (admission, probes, outages) are in :mod:`agentopt.agents.models.gate`;
here is what one endpoint is configured as, how its rate limits refill, and how its failures and
answers move it between up and down.
"""

from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field


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


class Health(BaseModel):
    """When an endpoint counts as down, how it is probed back, how long a run waits for one, and how
    many failed calls a campaign goes on through (the gate reads the first four, the campaign the last two)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    failures_to_down: int = Field(3, ge=1, description="consecutive connection failures or 5xx that mark an "
                                                       "endpoint down")
    probe_initial_s: float = Field(1.0, gt=0, description="wait after the first failed probe; doubles after each")
    probe_max_s: float = Field(15.0, gt=0, description="longest wait between probes")
    outage_limit_s: float = Field(300.0, gt=0, description="seconds a role may have no endpoint up before the run "
                                                           "stops as endpoint_down (resume finishes it)")
    max_error_rate: float = Field(0.5, ge=0.0, le=1.0, description="share of a campaign's latest `error_window` "
                                  "examples that may fail because an LLM call failed for good (refused, no "
                                  "usable reply, retries spent); past it the campaign stops as error_rate "
                                  "(resume finishes it; 1: never)")
    error_window: int = Field(20, ge=1, description="examples the error rate is measured over; a campaign whose "
                                                    "examples have all failed, for any reason, stops as error_rate "
                                                    "once it has run this many (or at the end of its search)")


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


@dataclass(frozen=True)
class Seen:
    """An endpoint's health at one moment, as a caller judges a failure by it: outages confirmed by
    a failed probe so far, and the newest lease (by admission order) it answered, -1 for none."""

    outages: int = 0
    answered: int = -1


@dataclass(frozen=True)
class EndpointHealth:
    """What a person is shown about one endpoint."""

    up: bool
    down_for_s: float | None = None
    last_error: str | None = None
    outages: int = 0


@dataclass
class EndpointState:
    endpoint: Endpoint
    in_flight: int = 0
    last_lease: int = -1  # the newest lease admitted here: among equally loaded endpoints the oldest goes first
    requests: Bucket | None = None
    tokens: Bucket | None = None
    streak: int = 0  # consecutive failures (calls and probes, in admission order)
    failed_probes: int = 0  # in the current streak; one confirms the outage
    outages: int = 0
    answered_lease: int = -1  # the newest lease it answered
    fault_tick: int = 0  # leases admitted from here on came after its newest failure
    down_since: float | None = None
    probe_at: float = 0.0
    probing: bool = False
    last_error: str | None = None
    prefix: tuple[int, ...] = ()  # the prompt it was last given, as a prefix chain

    def __post_init__(self) -> None:
        e = self.endpoint
        if e.requests_per_s:
            self.requests = Bucket(max(1.0, e.requests_per_s), e.requests_per_s)
        if e.tokens_per_min:
            self.tokens = Bucket(e.tokens_per_min, e.tokens_per_min / 60)

    @property
    def full(self) -> bool:
        return self.endpoint.max_concurrency is not None and self.in_flight >= self.endpoint.max_concurrency

    def wait(self, tokens: float, now: float) -> float:
        if self.full:
            return float("inf")  # until a call on it finishes
        waits = [b.wait_for(n, now) for b, n in ((self.requests, 1), (self.tokens, tokens)) if b is not None]
        return max(waits, default=0.0)

    @property
    def seen(self) -> Seen:
        return Seen(self.outages, self.answered_lease)

    def answered(self, lease_id: int) -> None:
        """An answer to a lease admitted after the newest failure ends the streak; an older one
        (a request in flight when the server died) says nothing about it now."""
        self.answered_lease = max(self.answered_lease, lease_id)
        if lease_id >= self.fault_tick:
            self.streak, self.failed_probes, self.down_since = 0, 0, None

    def failed(self, tick: int, error: str, probe: bool, health: "Health", now: float) -> None:
        """Count one failure, reported when lease ``tick`` is the next to be admitted. The one that
        reaches the threshold marks the endpoint down and asks for a probe at once, so a request
        that fails on a healthy server is told apart quickly; a failed probe confirms the outage
        and puts the next one off, doubling each time."""
        self.fault_tick = tick
        self.last_error = error
        self.streak += 1
        if self.streak == health.failures_to_down:
            self.down_since, self.probe_at = now, now
        if probe and self.streak > health.failures_to_down:
            self.failed_probes += 1
            if self.failed_probes == 1:
                self.outages += 1
            self.probe_at = now + min(health.probe_initial_s * 2 ** (self.failed_probes - 1), health.probe_max_s)
