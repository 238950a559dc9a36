"""When a campaign's failures mean it cannot go on: the endpoint refuses it, answers with nothing,
or never answers in time. Searching on would store only errors and report the seed as the winner
(at full price on a paid API), so the campaign stops as ``error_rate`` with what it saw, like an
endpoint outage past its limit, and ``agentopt resume`` finishes it once the cause is fixed.

Only an example whose LLM call failed for good counts toward the rate: an agent's own failure
(generated code that crashes, a template the example does not fit) is a finding about that
candidate, and a search that tries many bad candidates must go on. An example the gate's
outage handling kept waiting is no error at all, so an outage never counts here.
"""

from collections import deque
from dataclasses import dataclass, field

from agentopt.agents.models.gate import Halted, Health

ERROR_RATE = "error_rate"


@dataclass
class FailureWatch:
    """One campaign run's outcomes, as they are committed, against ``health``'s error limits."""

    health: Health
    results: int = 0
    errors: int = 0
    last_error: str | None = None
    recent: deque[bool] = field(default_factory=deque)  # per latest example: did an LLM call fail for good?

    def add(self, error: str | None, llm_failed: bool) -> None:
        """Count one committed example; raises :class:`Halted` once the latest ``error_window``
        examples failed too often, or the run's examples so far all failed."""
        self.results += 1
        self.errors += error is not None
        self.last_error = error or self.last_error
        self.recent.append(error is not None and llm_failed)
        window = self.health.error_window
        if len(self.recent) > window:
            self.recent.popleft()
        failed = sum(self.recent)
        if len(self.recent) == window and failed > self.health.max_error_rate * window:
            self._stop(f"{failed} of the latest {window} examples failed because an LLM call failed for good, "
                       f"more than the limit of {self.health.max_error_rate:.0%} (health.max_error_rate)")
        if self.results >= window:
            self.ended()

    def ended(self) -> None:
        """At the end of a phase: raises :class:`Halted` if every example run so far failed."""
        if self.results and self.errors == self.results:
            self._stop(f"all {self.results} examples run failed")

    def proposals(self, failed: int, answered: int, last_error: str | None) -> None:
        """At the end of the search: raises :class:`Halted` if every proposer call failed for good
        (the search proposed nothing, so its winner would be the seed by default)."""
        if failed and not answered:
            raise Halted(ERROR_RATE, f"all {failed} proposer calls failed for good; the last: {last_error}")

    def _stop(self, why: str) -> None:
        raise Halted(ERROR_RATE, f"{why}; the last: {self.last_error}")
