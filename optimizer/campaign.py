"""One campaign: a strategy searching one task, then the winner scored on the sealed test split.

The loop is the design card's: ask → content-hash dedup → reuse stored results → evaluate what is
missing → commit each example → tell. Only this module touches the test split.
"""

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from agentopt.agents.llm import LLMClient
from agentopt.agents.prompt import PromptAgent
from agentopt.archive.queries import Filters, top
from agentopt.archive.store import Archive, EvalSummary, ExampleOutcome
from agentopt.optimizer.dedup import FunctionalDedup, Policy
from agentopt.optimizer.evaluation import Evaluator, Job
from agentopt.optimizer.strategies import StrategyContext, Trial, TrialResult, make_strategy
from agentopt.optimizer.tasks import Task
from agentopt.optimizer.ui import Reporter


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

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CampaignRun:
    archive: Archive
    task: Task
    strategy_name: str
    strategy_params: dict[str, Any]
    seed_agent: PromptAgent
    proposer: LLMClient
    evaluator: Evaluator
    reporter: Reporter
    config: dict[str, Any] = field(default_factory=dict)
    name: str = "campaign"
    seed: int = 0
    val_size: int | None = None
    test_size: int | None = None
    dedup_policy: Policy = "verify"
    probe_size: int = 5

    def run(self) -> CampaignReport:
        started = time.perf_counter()
        self.proposer = self.proposer.metered()
        task_info = {"name": self.task.name, "description": self.task.description, "metric": self.task.metric_name}
        self.campaign_id = self.archive.create_campaign(self.name, self.task.name, self.strategy_name,
                                                        {**self.config, "task": task_info})
        self.stats: dict[str, Any] = {
            "trials": 0, "proposals": 0, "content duplicates": 0, "functional duplicates": 0,
            "functional matches rejected by verify": 0, "full evaluations": 0, "examples evaluated": 0,
            "examples reused": 0, "examples served by a twin": 0, "llm calls saved": 0,
            "functional dedup": self.dedup_policy}
        try:
            report = self._run(started)
        except BaseException as exc:
            status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            self.archive.finish_campaign(self.campaign_id, status, {"error": f"{type(exc).__name__}: {exc}",
                                                                    "stats": self.stats})
            raise
        self.archive.finish_campaign(self.campaign_id, "finished", report.as_dict())
        return report

    def _run(self, started: float) -> CampaignReport:
        probe = self.task.train[: self.probe_size]
        verify = self.task.train[self.probe_size: 2 * self.probe_size]
        self.dedup = FunctionalDedup(self.archive, self.dedup_policy, probe, verify, self._evaluate, self.stats)
        ctx = StrategyContext(train=self.task.train, val=self.task.val[: self.val_size], seed_agent=self.seed_agent,
                              proposer=self.proposer, task_description=self.task.description, seed=self.seed,
                              stats=self.stats, probe_ids=self.dedup.probe_ids)
        strategy = make_strategy(self.strategy_name, self.strategy_params, ctx)
        while True:
            self.reporter.phase(f"{self.task.name}: {self.strategy_name} proposing", 0)
            trials = strategy.ask()
            if not trials:
                break
            strategy.tell(self._run_trials(trials))
        best_id = self._select_winner()
        test_ids = tuple(e.id for e in self.task.test[: self.test_size])
        seed_result, best_result = self._run_trials(
            [Trial(self.seed_agent, "test", test_ids, rationale="seed"),
             Trial(PromptAgent.model_validate(self.archive.candidate(best_id).payload), "test", test_ids)],
            strategy_label="final")
        usage = self.archive.usage_totals(self.campaign_id)
        proposer = self.proposer.usage
        stats = {**self.stats, "task_llm_calls": usage["llm_calls"], "task_cache_hits": usage["cache_hits"],
                 "task_tokens": usage["tokens"], "proposer_llm_calls": proposer.calls,
                 "proposer_cache_hits": proposer.cache_hits,
                 "proposer_tokens": proposer.prompt_tokens + proposer.completion_tokens}
        return CampaignReport(self.campaign_id, self.task.name, seed_result.summary, best_result.summary, best_id,
                              self.archive.candidate(best_id).payload, stats, time.perf_counter() - started)

    def _select_winner(self) -> int:
        """Highest validation mean among candidates scored without errors; the seed if none was."""
        ranked = [r for r in top(self.archive, 1000, "val", Filters(campaign=self.campaign_id)) if r.n_errors == 0]
        if ranked:
            return ranked[0].candidate_id
        candidate_id, _ = self.archive.add_candidate(self.campaign_id, self.seed_agent, "seed", rationale="seed")
        return candidate_id

    def _register(self, trials: Sequence[Trial], strategy_label: str | None) -> list[tuple[Trial, int, int | None]]:
        """Store each trial's candidate; new ones are fingerprinted, and duplicates get their twin."""
        registered, new = [], {}
        for trial in trials:
            label = "seed" if trial.rationale == "seed" else strategy_label or self.strategy_name
            candidate_id, is_new = self.archive.add_candidate(self.campaign_id, trial.agent, label, trial.parents,
                                                              trial.rationale)
            registered.append((trial, candidate_id))
            if is_new:
                new[candidate_id] = trial.agent.payload()
        if new and self.dedup.policy != "off":
            self.reporter.phase(f"{self.task.name}: probing {len(new)} new candidate(s)",
                                len(new) * len(self.dedup.probe_ids))
        twins = self.dedup.twins(new)
        self.stats["full evaluations"] += len(new) - len(twins)
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
                    self.stats["examples reused"] += 1
                    if example_id not in own:  # the duplicate would have had to run it itself
                        self.stats["examples served by a twin"] += 1
                        self.stats["llm calls saved"] += self.archive.calls_for(target, trial.split, example_id)
                elif key not in jobs:
                    jobs[key] = Job(target, trial.split, example_id, self.task.example(example_id).input, payload)
        splits = ", ".join(sorted({t.split for t in trials}))
        self.reporter.phase(f"{self.task.name}: {len(trials)} candidate(s) on {splits}", len(jobs))
        self._evaluate(list(jobs.values()))
        self.stats["trials"] += len(trials)
        results = []
        for trial, candidate_id, twin in registered:
            target = twin or candidate_id
            self.archive.update_evaluation(target, trial.split)
            summary = self.archive.update_evaluation(target, trial.split, trial.example_ids)
            results.append(TrialResult(trial, candidate_id, summary, twin is not None, twin))
        return results

    def _evaluate(self, jobs: list[Job]) -> None:
        self.evaluator.evaluate(jobs, self._commit)
        self.stats["examples evaluated"] += len(jobs)

    def _commit(self, job: Job, outcome: ExampleOutcome) -> None:
        if outcome.error is None and outcome.output is not None:
            outcome = replace(outcome, score=self.task.score(outcome.output, self.task.example(job.example_id).target))
        self.archive.add_result(job.candidate_id, job.split, outcome)
        self.reporter.advance()
