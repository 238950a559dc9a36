"""How one LLM call's failures are judged and retried: attempts charged or excused by what the gate
learns of endpoint health, timeouts remembered per request, and the wait a 429 asks for.
"""

import threading
import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime

from agentopt.agents.models.gate import Lease

OUTAGES_RIDDEN = 3  # outages one call may wait out; after that its faults are charged like any failure
RETRY_AFTER_MAX_S = 60.0  # a longer Retry-After is waited this long (the openai client's own cap)


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
