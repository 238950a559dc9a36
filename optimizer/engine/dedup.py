"""Functional deduplication: candidates that behave identically share one evaluation.

A new candidate first answers a fixed probe set (a few train inputs). Its *fingerprint* is the hash
of those answers under the task metric's ``key`` (the normalised text for the text metrics, the raw
output for code tests, a user metric's own ``dedup_key`` or else the raw output), so two
fingerprints are equal only if the task's metric would score the two candidates identically on the
probes: two programs differing only in indentation are never merged on a metric that runs them. A candidate
whose fingerprint matches an earlier one in the campaign becomes that candidate's *twin*: its trials
are served from the earlier candidate's results and it is never evaluated on its own.

Policies (``dedup.functional`` in the config):

* ``verify`` (default): a match is only accepted after both candidates also agree on a second,
  disjoint probe set, so a merge needs agreement on twice the inputs; this is what keeps a
  coincidental match on a few easy probes from merging two different prompts.
* ``trust``: accept a match on the first probe set (cheaper, more false merges).
* ``off``: content hashing only.

Nondeterminism: fingerprints mean something only when the task model samples greedily; with a
task temperature above 0 functional dedup is switched off and the campaign summary says so. Any
error on a probe leaves the candidate without a fingerprint, so it is evaluated on its own.
"""

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from agentopt.archive.store import Archive
from agentopt.optimizer.strategies.counters import Counters
from agentopt.optimizer.engine.evaluation import Job
from agentopt.optimizer.tasks import Example

Policy = Literal["verify", "trust", "off"]
RunJobs = Callable[[list[Job]], None]


def fingerprint(example_ids: Sequence[str], outputs: Mapping[str, str | None],
                key: Callable[[str], str]) -> str | None:
    """Hash of the outputs' metric keys on ``example_ids``; ``None`` if any is missing or an error."""
    answers = [outputs.get(example_id) for example_id in example_ids]
    if any(answer is None for answer in answers):
        return None
    data = json.dumps([[i, key(a or "")] for i, a in zip(example_ids, answers, strict=True)])
    return hashlib.sha256(data.encode()).hexdigest()


@dataclass
class FunctionalDedup:
    archive: Archive
    policy: Policy
    probe: tuple[Example, ...]
    verify: tuple[Example, ...]
    run_jobs: RunJobs
    stats: Counters
    key: Callable[[str], str]  # the task metric's dedup key
    campaign_id: str | None = None  # whose budget the probe calls count against

    @property
    def probe_ids(self) -> tuple[str, ...]:
        return tuple(e.id for e in self.probe) if self.policy != "off" else ()

    def twins(self, new: Mapping[int, dict[str, Any]]) -> dict[int, int]:
        """Fingerprint the new candidates (id → payload); returns each confirmed duplicate's twin."""
        if self.policy == "off" or not new:
            return {}
        prints = self._fingerprints(new, self.probe)
        matches: dict[int, int] = {}
        for candidate_id in sorted(new):
            twin = self.archive.record_fingerprint(candidate_id, prints[candidate_id])
            if twin is not None:
                matches[candidate_id] = twin
        if self.policy == "verify" and matches and self.verify:
            payloads = {**{t: self.archive.candidate(t).payload for t in matches.values()},
                        **{c: new[c] for c in matches}}
            second = self._fingerprints(payloads, self.verify)
            rejected = {c for c, t in matches.items() if second[c] is None or second[c] != second[t]}
            self.stats.rejected_by_verify += len(rejected)
            matches = {c: t for c, t in matches.items() if c not in rejected}
        for candidate_id, twin in matches.items():
            self.archive.set_twin(candidate_id, twin)
        self.stats.functional_duplicates += len(matches)
        return matches

    def _fingerprints(self, payloads: Mapping[int, dict[str, Any]], examples: Sequence[Example]) -> dict[int, str | None]:
        ids = [e.id for e in examples]
        jobs: list[Job] = []
        for candidate_id, payload in payloads.items():
            done = self.archive.scored_examples(candidate_id, "train")
            jobs += [Job(candidate_id, "train", e.id, e.input, payload, self.campaign_id)
                     for e in examples if e.id not in done]
        self.run_jobs(jobs)
        return {c: fingerprint(ids, self.archive.outputs(c, "train", ids), self.key) for c in payloads}
