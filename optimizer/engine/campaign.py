"""One campaign: a strategy searching one task, then the winner scored on the sealed test split.

The loop is the design card's: ask → content-hash dedup → reuse stored results → evaluate what is
missing → commit each example → tell. Only this module touches the test split.

Resuming is replaying: the strategy is rebuilt with the same seed and asks the same questions; its
proposer calls come back from the cache, its candidates are found by content hash and its
examples are found in the archive, so the replay pays only for work that never finished.

A spent budget ends the search and the winner is still scored; a halted gate (endpoints down past
the outage limit, or a model server given up) cannot be worked around, and neither can endpoints
that answer but fail the calls (see :mod:`agentopt.optimizer.engine.failures`), so the campaign stops
unfinished (status ``stopped``) and ``agentopt resume`` completes it once the endpoints answer.
"""

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from types import TracebackType
from typing import Any

from agentopt.agents.runtime.errors import AgentoptError, BudgetExhausted, ConfigError
from agentopt.agents.models.gate import Halted, Health
from agentopt.agents.kinds import agent_from_payload
from agentopt.agents.models.llm import LLMClient
from agentopt.agents.base import Agent
from agentopt.archive.queries import Filters, top
from agentopt.archive.records import LOST_NOTE, EvalSummary, ExampleOutcome, Paid
from agentopt.archive.store import Archive
from agentopt.optimizer.engine.budgets import CampaignBudget, GateControl
from agentopt.optimizer.strategies.counters import Counters
from agentopt.optimizer.engine.dedup import FunctionalDedup, Policy
from agentopt.optimizer.engine.evaluation import Evaluator, Job
from agentopt.optimizer.engine.failures import FailureWatch
from agentopt.optimizer.strategies import StrategyContext, Trial, TrialResult, make_strategy
from agentopt.optimizer.strategies.base import Answer
from agentopt.optimizer.tasks import Task
from agentopt.optimizer.tasks.metrics import Judged, MetricFailed
from agentopt.optimizer.engine.ui import Reporter


@dataclass(frozen=True)
class CampaignReport:
    campaign_id: str
    task: str
    seed_test: EvalSummary
    best_test: EvalSummary
    best_candidate_id: int
    best_agent: dict[str, Any]
    stats: dict[str, Any]
    wall_s: float
    stopped_by: str | None = None  # the budget that ended the search early, if one did
    notes: tuple[str, ...] = ()  # anything the figures above need said next to them

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class CampaignStopped(AgentoptError):
    """The campaign stopped unfinished because the gate halted the run; resuming it finishes it."""

    def __init__(self, campaign_id: str, halted: Halted) -> None:
        super().__init__(f"campaign {campaign_id} stopped ({halted.budget}): {halted.detail}; every finished result "
                         f"is kept, and `agentopt resume {campaign_id}` finishes it once the endpoints answer again")
        self.campaign_id, self.stopped_by = campaign_id, halted.budget


HEARTBEAT_S = 5.0


class Heartbeat:
    """Tells the archive every few seconds that this driver is alive: ``beat(seconds)`` is handed
    the time since the last beat (a campaign adds it to its active seconds, what a wall-time budget
    counts across resumes); ``watch`` runs on the same beat."""

    def __init__(self, beat: Callable[[float], None], watch: Callable[[], None] = lambda: None) -> None:
        self._record, self.watch = beat, watch
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="agentopt-heartbeat", daemon=True)
        self._last = time.monotonic()

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()
        self.beat()  # the last few seconds count too

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            self.beat()
            self.watch()

    def beat(self) -> None:
        now = time.monotonic()
        self._record(now - self._last)
        self._last = now


@dataclass
class CampaignRun:
    archive: Archive
    task: Task
    strategy_name: str
    strategy_params: dict[str, Any]
    seed_agent: Agent
    proposer: LLMClient
    evaluator: Evaluator
    reporter: Reporter
    config: dict[str, Any] = field(default_factory=dict)
    name: str = "campaign"
    seed: int = 0
    val_size: int | None = None
    test_size: int | None = None
    test_top: int = 1  # candidates scored on test: the winner, and the runners-up after it
    dedup_policy: Policy = "verify"
    probe_size: int = 5
    budget: CampaignBudget | None = None
    campaign_id: str = ""  # set to resume that campaign instead of starting a new one
    embedder: LLMClient | None = None
    judge: LLMClient | None = None  # the model a judged metric grades with
    gate: GateControl | None = None  # watched for endpoint health
    health: Health = field(default_factory=Health)  # its error limits stop a campaign whose calls keep failing
    sweep: tuple[str, str] | None = None  # the (sweep id, cell key) this campaign is a cell of

    def run(self) -> CampaignReport:
        started = time.perf_counter()
        if self.campaign_id:
            self.archive.claim(self.campaign_id)
        else:
            task_info = {"name": self.task.name, "description": self.task.description, "metric": self.task.metric_name,
                         "inputs": list(self.task.inputs), "ref": self.task.ref}
            self.campaign_id = self.archive.create_campaign(self.name, self.task.name, self.strategy_name,
                                                            {**self.config, "task": task_info}, self.sweep)
        self.proposer = self.proposer.metered(self.campaign_id)
        if isinstance(self.task.metric, Judged):
            if self.judge is None:
                raise ConfigError(f"metric {self.task.metric_name} needs a judge model (models.judge)")
            self.task = self.task.with_metric(self.task.metric.bind(self.judge.metered(self.campaign_id)))
        self.stats = Counters(functional_dedup=self.dedup_policy,
                              record=partial(self.archive.add_note, self.campaign_id))
        self.stopped_by: str | None = None
        self._seen: set[int] = set()
        self._failed: set[tuple[int, str, str]] = set()
        self._refused: set[tuple[int, str, str]] = set()  # failed with an answer another try would repeat
        self._down: set[str] = set()
        self.failures = FailureWatch(self.health)
        lost = self.archive.notes(self.campaign_id, kind=LOST_NOTE)
        self._lost_before = int(lost[-1].data["lost"]) if lost else 0  # by this campaign's earlier runs
        try:
            with Heartbeat(partial(self.archive.beat, self.campaign_id), self._watch):
                if self.budget is not None:
                    self.budget.begin(self.archive, self.campaign_id, self.archive.campaign(self.campaign_id).active_s,
                                      time.time())
                report = self._run(started)
        except Halted as exc:
            self._watch()  # the health that stopped it, for `agentopt status`
            self.archive.finish_campaign(self.campaign_id, "stopped", {
                "stopped_by": exc.budget, "stop_detail": exc.detail, "stats": self.stats.as_dict()})
            raise CampaignStopped(self.campaign_id, exc) from None
        except BaseException as exc:
            status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            self.archive.finish_campaign(self.campaign_id, status, {"error": f"{type(exc).__name__}: {exc}",
                                                                    "stats": self.stats.as_dict()})
            raise
        self.archive.finish_campaign(self.campaign_id, "finished", report.as_dict())
        return report

    def _run(self, started: float) -> CampaignReport:
        probe = self.task.train[: self.probe_size]
        verify = self.task.train[self.probe_size: 2 * self.probe_size]
        self.dedup = FunctionalDedup(self.archive, self.dedup_policy, probe, verify, self._evaluate, self.stats,
                                     self.task.metric.key, self.campaign_id)
        ctx = StrategyContext(train=self.task.train, val=self.task.val[: self.val_size], seed_agent=self.seed_agent,
                              proposer=self.proposer, task_description=self.task.description, seed=self.seed,
                              stats=self.stats, probe_ids=self.dedup.probe_ids, campaign_id=self.campaign_id,
                              embedder=self.embedder.metered(self.campaign_id) if self.embedder else None,
                              study_storage=self.archive.url, outputs=self._answers,
                              record=partial(self.archive.add_note, self.campaign_id))
        strategy = make_strategy(self.strategy_name, self.strategy_params, ctx)
        self.baseline = strategy.baseline()
        while self.stopped_by is None:
            self.reporter.phase(f"{self.task.name}: {self.strategy_name} proposing", 0)
            try:
                trials = strategy.ask()
            except Halted:
                raise
            except BudgetExhausted as exc:
                self.stopped_by = exc.budget
                break
            if not trials:
                break
            self._count_lost()
            results = self._run_trials(trials)
            if self.stopped_by is None:  # a trial cut short by the budget is never told as if complete
                strategy.tell(results)
        self._count_lost()
        self.failures.ended()
        usage = self.proposer.usage
        self.failures.proposals(usage.failed, usage.calls + usage.cache_hits, usage.last_error)
        if self.budget is not None:
            self.budget.final_phase()
        finalists, notes = self._finalists(len(ctx.val))
        best_id = finalists[0]
        test_ids = tuple(e.id for e in self.task.test[: self.test_size])
        seed_result, best_result, *_ = self._run_trials(
            [Trial(self.baseline, "test", test_ids, rationale="seed")]
            + [Trial(agent_from_payload(self.archive.candidate(c).payload), "test", test_ids) for c in finalists],
            strategy_label="final")
        self.failures.ended()
        for label, result in (("seed", seed_result), ("best", best_result)):
            if result.summary.n < len(test_ids):
                notes.append(f"{label} test score covers {result.summary.n} of {len(test_ids)} examples "
                             f"({result.summary.n_errors} errors)")
        if self.stats.proposals_lost:
            notes.append(f"{self.stats.proposals_lost} proposer calls failed for good, so their proposals were "
                         f"lost; the last: {self.proposer.usage.last_error}")
        return CampaignReport(self.campaign_id, self.task.name, seed_result.summary, best_result.summary, best_id,
                              self.archive.candidate(best_id).payload, self._final_stats(),
                              time.perf_counter() - started, self.stopped_by, tuple(notes))

    def _answers(self, candidate_id: int, split: str) -> dict[str, Answer]:
        return {r.example_id: Answer(r.output, r.score, r.error, r.trace, r.feedback)
                for r in self.archive.results(candidate_id, split)}

    def _final_stats(self) -> dict[str, Any]:
        """Counters, with spend taken from the archive's ledger so they stay true across resumes."""
        usage = self.archive.usage_totals(self.campaign_id)
        spent = self.archive.spend(self.campaign_id)
        task, proposer, judge = (spent.get(role, Paid(0, 0, 0)) for role in ("task", "proposer", "judge"))
        stats = {**self.stats.as_dict(), "examples evaluated": usage["results"], "task_llm_calls": task.calls,
                 "task_cache_hits": usage["cache_hits"], "task_tokens": task.prompt_tokens + task.completion_tokens,
                 "task_prompt_tokens": task.prompt_tokens, "task_prompt_cached_tokens": task.cached_tokens,
                 "task_prompt_saved_s": round(task.prompt_saved_s, 1),
                 "proposer_llm_calls": proposer.calls, "proposer_cache_hits": self.proposer.usage.cache_hits,
                 "proposer_tokens": proposer.prompt_tokens + proposer.completion_tokens, "judge_llm_calls": judge.calls,
                 "judge_tokens": judge.prompt_tokens + judge.completion_tokens, "stopped by": self.stopped_by,
                 "sampling overrides clamped": self.stats.clamped + self.proposer.usage.clamped}
        if self.budget is not None:
            stats["budget"] = self.budget.report()
        return stats

    def _finalists(self, n_val: int) -> tuple[list[int], list[str]]:
        """The ``test_top`` highest validation means among candidates scored on every validation
        example without errors, best first (the winner); the seed (and a note saying why) if none was."""
        ranked = [r for r in top(self.archive, 1000, "val", Filters(campaign=self.campaign_id))
                  if r.n_errors == 0 and r.n >= n_val]
        if ranked:
            return [r.candidate_id for r in ranked[: self.test_top]], []
        candidate_id, _ = self.archive.add_candidate(self.campaign_id, self.baseline, "seed", rationale="seed")
        return [candidate_id], ["no candidate was scored on the whole validation split without errors, "
                                "so the seed is reported as the best"]

    def _register(self, trials: Sequence[Trial], strategy_label: str | None) -> list[tuple[Trial, int, int | None]]:
        """Store each trial's candidate with its notes; new ones are fingerprinted, and duplicates get their twin.

        A candidate stored by an earlier (killed) run counts as new until it has a fingerprint or a
        twin, so a resume finishes exactly what the crash interrupted."""
        registered, new = [], {}
        for trial in trials:
            label = "seed" if trial.rationale == "seed" else strategy_label or trial.strategy or self.strategy_name
            candidate_id, is_new = self.archive.add_candidate(self.campaign_id, trial.agent, label, trial.parents,
                                                              trial.rationale)
            for kind, data in trial.notes.items():
                self.archive.add_note(self.campaign_id, kind, data, candidate_id)
            registered.append((trial, candidate_id))
            if candidate_id in self._seen:
                continue
            self._seen.add(candidate_id)
            stored = None if is_new else self.archive.candidate(candidate_id)
            if stored is None or (self.dedup.policy != "off" and stored.functional_hash is None
                                  and stored.twin_id is None):
                new[candidate_id] = trial.agent.payload()
            else:
                if stored.twin_id:
                    self.stats.functional_duplicates += 1
                else:
                    self.stats.full_evaluations += 1
        if new and self.dedup.policy != "off":
            self.reporter.phase(f"{self.task.name}: probing {len(new)} new candidate(s)",
                                len(new) * len(self.dedup.probe_ids))
        twins = self.dedup.twins(new)
        self.stats.full_evaluations += len(new) - len(twins)
        return [(trial, c, twins.get(c) if c in new else self.archive.candidate(c).twin_id) for trial, c in registered]

    def _run_trials(self, trials: Sequence[Trial], strategy_label: str | None = None) -> list[TrialResult]:
        """Evaluate what is missing for each trial; a functional duplicate's trial runs on its twin."""
        registered = self._register(trials, strategy_label)
        jobs: dict[tuple[int, str, str], Job] = {}
        for trial, candidate_id, twin in registered:
            target = twin or candidate_id
            done = self.archive.scored_examples(target, trial.split)
            own = self.archive.scored_examples(candidate_id, trial.split) if twin else done
            payload = self.archive.candidate(target).payload if twin else trial.agent.payload()
            for example_id in trial.example_ids:
                key = (target, trial.split, example_id)
                if example_id in done:
                    self.stats.examples_reused += 1
                    if example_id not in own:  # the duplicate would have had to run it itself
                        self.stats.examples_served_by_twin += 1
                        self.stats.llm_calls_saved += self.archive.calls_for(target, trial.split, example_id)
                elif key not in jobs and key not in self._refused:
                    jobs[key] = Job(target, trial.split, example_id, self.task.example(example_id).input, payload,
                                    self.campaign_id)
        splits = ", ".join(sorted({t.split for t in trials}))
        self.reporter.phase(f"{self.task.name}: {len(trials)} candidate(s) on {splits}", len(jobs))
        self._evaluate(list(jobs.values()))
        self.stats.trials += len(trials)
        results = []
        for trial, candidate_id, twin in registered:
            target = twin or candidate_id
            self.archive.update_evaluation(target, trial.split)
            summary = self.archive.update_evaluation(target, trial.split, trial.example_ids)
            results.append(TrialResult(trial, candidate_id, summary, twin is not None, twin))
        return results

    def _evaluate(self, jobs: list[Job]) -> None:
        """Run ``jobs``, then once more those that failed, unless another try would get the same
        answer (the client has already retried each call with backoff; a second pass gives a
        struggling endpoint time). A spent budget ends it; a halted gate, or failures past the
        error limits, end the campaign."""
        self._failed.clear()
        try:
            self.evaluator.evaluate(jobs, self._commit)
            failed = [j for j in jobs if (j.candidate_id, j.split, j.example_id) in self._failed]
            if failed:
                self.stats.examples_retried += len(failed)
                self.evaluator.evaluate(failed, self._commit)
        except Halted:
            raise
        except BudgetExhausted as exc:
            self.stopped_by = self.stopped_by or exc.budget

    def _commit(self, job: Job, outcome: ExampleOutcome) -> None:
        """Score and store one outcome. A judge whose budget runs out (or a halt) while scoring
        leaves the paid answer stored as unscored, an error a resume retries, and stops the run."""
        stop = None
        if outcome.error is None and outcome.output is not None:
            try:
                outcome = self._scored(outcome)
            except BudgetExhausted as exc:
                outcome, stop = replace(outcome, error=f"not scored: {exc}"), exc
        self.archive.add_result(job.candidate_id, job.split, outcome)
        self.stats.clamped += int(outcome.usage.get("clamped", 0))
        key = (job.candidate_id, job.split, job.example_id)
        if outcome.error is not None and outcome.usage.get("refused"):  # not run again in this run
            self._refused.add(key)
        if outcome.error is None or key in self._refused:
            self._failed.discard(key)
        else:
            self._failed.add(key)
        self.reporter.advance(errors=int(outcome.error is not None))
        if stop is not None:  # left unscored by a spent budget: nothing failed
            raise stop
        self.failures.add(outcome.error, bool(outcome.usage.get("failed")))

    def _scored(self, outcome: ExampleOutcome) -> ExampleOutcome:
        """The outcome with the metric's score and feedback; a metric that fails on this example
        makes it an error (never a score). A metric returning a non-score raises and stops the
        campaign, since nothing computed from it could be trusted."""
        try:
            score = self.task.score(self.task.example(outcome.example_id), outcome.output or "")
        except MetricFailed as exc:
            self.stats.metric_errors += 1
            return replace(outcome, error=str(exc))
        return replace(outcome, score=score.value, feedback=score.feedback)

    def _count_lost(self) -> None:
        """Proposer calls that failed for good lose their proposals: say so where errors are shown
        (the progress line, and `agentopt status` through a note)."""
        usage = self.proposer.usage
        if usage.failed == self.stats.proposals_lost:
            return
        self.reporter.lost(usage.failed - self.stats.proposals_lost)
        self.stats.proposals_lost = usage.failed
        self.archive.add_note(self.campaign_id, LOST_NOTE, {"lost": self._lost_before + usage.failed,
                                                            "last_error": usage.last_error})

    def _watch(self) -> None:
        """When an endpoint goes down or comes back, tell the person watching and note it in the
        archive (``agentopt status`` shows the latest); calls to a down endpoint wait in the gate."""
        if self.gate is None:
            return
        health = self.gate.health()
        down = {url for url, h in health.items() if not h.up}
        if down == self._down:
            return
        self._down = down
        self.reporter.endpoints(health)
        self.archive.add_note(self.campaign_id, "endpoints", {"at": datetime.now(UTC).isoformat(timespec="seconds"),
                                                             "endpoints": {u: asdict(h) for u, h in health.items()}})
