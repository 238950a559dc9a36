"""What a campaign did, counted as it goes: one typed record that the campaign, functional dedup and
the strategies write, instead of a string-keyed dict five modules could each misspell."""

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

from agentopt.archive.records import REJECTED_NOTE

LABELS = {
    "content_duplicates": "content duplicates", "functional_duplicates": "functional duplicates",
    "rejected_by_verify": "functional matches rejected by verify", "full_evaluations": "full evaluations",
    "examples_evaluated": "examples evaluated", "examples_reused": "examples reused",
    "examples_served_by_twin": "examples served by a twin", "llm_calls_saved": "llm calls saved",
    "examples_retried": "examples retried after an error", "clamped": "sampling overrides clamped",
    "functional_dedup": "functional dedup", "failed_generations": "failed generations",
    "bootstrapped_demonstrations": "bootstrapped demonstrations", "metric_errors": "examples the metric could not score",
    "proposals_lost": "proposals lost to proposer errors",
}
"""Each counter's name in summaries and the archive (the names campaigns have always been stored with)."""
SHOWN_WHEN_COUNTED = ("failed_generations", "bootstrapped_demonstrations", "metric_errors", "rollbacks",
                      "proposals_lost")


@dataclass
class Counters:
    trials: int = 0
    proposals: int = 0
    content_duplicates: int = 0
    functional_duplicates: int = 0
    rejected_by_verify: int = 0
    full_evaluations: int = 0
    examples_evaluated: int = 0
    examples_reused: int = 0
    examples_served_by_twin: int = 0
    llm_calls_saved: int = 0
    examples_retried: int = 0
    clamped: int = 0
    failed_generations: int = 0
    bootstrapped_demonstrations: int = 0
    metric_errors: int = 0
    rollbacks: int = 0
    proposals_lost: int = 0  # proposer calls that failed for good in this run
    functional_dedup: str = "off"
    rejected: dict[str, int] = field(default_factory=dict)  # why proposals were refused -> how many
    refused_edits: dict[str, int] = field(default_factory=dict)  # symbolic learning: optimizer -> edits refused
    # Where each refused proposal is stored (the campaign's notes: record(kind, data)); None: counted only.
    record: Callable[[str, dict[str, Any]], None] | None = field(default=None, repr=False, compare=False)

    def reject(self, reason: str, proposal: str | None = None) -> None:
        """Count a refused proposal under ``reason`` and store it (``proposal``: the proposer's text,
        when there was one), so a user can see which proposals were refused and why, not only how many.
        Its step is the proposal's number in this run and ``rejection`` its number among the refusals
        (two alike refusals stay two notes); both come out the same on a resume, which replays the
        strategy, so the archive keeps each one once."""
        self.rejected[reason] = self.rejected.get(reason, 0) + 1
        if self.record is not None:
            self.record(REJECTED_NOTE, {"step": self.proposals, "rejection": sum(self.rejected.values()),
                                        "reason": reason, "proposal": proposal})

    def refuse_edit(self, optimizer: str) -> None:
        self.refused_edits[optimizer] = self.refused_edits.get(optimizer, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        """The counters under their summary names, with one ``rejected: REASON`` entry per reason."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, dict) or f.name == "record" or (f.name in SHOWN_WHEN_COUNTED and not value):
                continue
            out[LABELS.get(f.name, f.name)] = value
        out.update({f"rejected: {reason}": n for reason, n in self.rejected.items()})
        out.update({f"rejected {optimizer} edits": n for optimizer, n in self.refused_edits.items()})
        return out
