"""APE: generate instructions from demonstrations, race them with UCB, resample the best.

Zhou et al., "Large Language Models Are Human-Level Prompt Engineers". Beyond the reference code:
the iterative Monte Carlo step is implemented, proposals are validated and deduplicated before any
evaluation, and (``candidate_demos``) a candidate may keep a few of the demonstrations it was
induced from, because a tiny task model follows in-format examples far better than instructions.
The seed instruction races with the same demonstrations (``seed_with_demos``), so an instruction
only wins by doing better than a neutral one: with a 135M proposer, most proposals do not.
"""

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from pydantic import Field

from agentopt.agents.models.budget import estimate_prompt_tokens
from agentopt.optimizer.strategies import pool
from agentopt.optimizer.strategies.base import GeneratorStrategy, Plan, Search, Trial, TrialResult, TunableAgent
from agentopt.optimizer.strategies.pool import PoolParams
from agentopt.optimizer.strategies.proposals import FORWARD_TEMPLATE, format_pairs
from agentopt.optimizer.tasks import Example


class APEParams(PoolParams):
    batch_size: int = Field(5, ge=1, description="train examples per racing pull")
    pulls_per_round: int = Field(4, ge=1, description="candidates scored in parallel each round")
    racing_budget: int = Field(200, ge=1, description="task-model example evaluations for the first race")
    ucb_c: float = Field(1.0, ge=0.0)
    mc_rounds: int = Field(1, ge=0, description="iterative Monte Carlo resampling rounds")
    mc_top: int = Field(3, ge=1)
    mc_samples: int = Field(3, ge=1, description="variations asked for each top candidate")
    mc_budget: int = Field(100, ge=0, description="example evaluations for each Monte Carlo race")
    top_k: int = Field(3, ge=1, description="candidates scored on the validation split at the end")


@dataclass
class Arm:
    agent: TunableAgent
    parents: tuple[int, ...] = ()
    rationale: str = ""
    candidate_id: int | None = None
    total: float = 0.0
    count: int = 0
    errors: int = 0  # examples that failed for infrastructure reasons: such an arm is never ranked
    seen: set[str] = field(default_factory=set)

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0


class APE(GeneratorStrategy[APEParams]):
    name = "ape"
    Params = APEParams

    @classmethod
    def bounds(cls, p: APEParams, train: Sequence[Example], n_val: int, probe_size: int) -> Plan:
        generated = p.n_subsamples * p.samples_per_subsample
        varied = p.mc_rounds * p.mc_top * p.mc_samples
        candidates = 1 + generated + p.n_subsamples + varied
        overshoot = p.pulls_per_round * p.batch_size  # a race may finish its last round past the budget
        races = p.racing_budget + overshoot + p.mc_rounds * (p.mc_budget + overshoot)
        prompt = estimate_prompt_tokens([{"role": "user", "content": FORWARD_TEMPLATE.format(
            pairs=format_pairs(list(train[: p.demos_per_subsample])))}])
        return Plan(generated + varied, prompt, races + 2 * probe_size * candidates + p.top_k * n_val,
                    p.candidate_demos)

    def search(self) -> Search:
        self.rng = random.Random(self.ctx.seed)
        self.arms: dict[str, Arm] = {}
        self._add(pool.generate(self.ctx, self.rng, self.params))
        yield from self._race(self.params.racing_budget)
        for round_no in range(self.params.mc_rounds):
            self._resample(round_no)
            yield from self._race(self.params.mc_budget)
        finalists = self._ranked()[: self.params.top_k]
        val_ids = tuple(e.id for e in self.ctx.val)
        yield [Trial(a.agent, "val", val_ids, a.parents, a.rationale) for a in finalists]

    # --- proposal --------------------------------------------------------------------------------
    def _add(self, candidates: list[pool.Candidate]) -> None:
        for c in pool.unique(self.ctx, candidates, set(self.arms)):
            self.arms[c.agent.canonical()] = Arm(c.agent, c.parents, c.rationale)

    def _resample(self, round_no: int) -> None:
        parents = [(a.agent, a.candidate_id) for a in self._ranked()[: self.params.mc_top] if a.candidate_id is not None]
        self._add(pool.paraphrase(self.ctx, parents, self.params.mc_samples, round_no, self.params.proposer_workers))

    # --- racing ----------------------------------------------------------------------------------
    def _ranked(self) -> list[Arm]:
        scored = [a for a in self.arms.values() if a.count and not a.errors]
        return sorted(scored, key=lambda a: (a.mean, a.count), reverse=True)

    def _ucb(self, arm: Arm, total: int) -> float:
        if not arm.count:
            return math.inf
        return arm.mean + self.params.ucb_c * math.sqrt(math.log(max(total, 1)) / arm.count)

    def _fresh_batch(self, arm: Arm) -> tuple[str, ...]:
        """A new arm starts on the probe inputs: they were just answered for its fingerprint."""
        if not arm.seen and self.ctx.probe_ids:
            return self.ctx.probe_ids[: self.params.batch_size]
        unseen = [e.id for e in self.ctx.train if e.id not in arm.seen]
        return tuple(self.rng.sample(unseen, min(self.params.batch_size, len(unseen))))

    def _race(self, budget: int) -> Search:
        spent = 0
        while spent < budget:
            open_arms = [a for a in self.arms.values() if len(a.seen) < len(self.ctx.train)]
            if not open_arms:
                return
            total = sum(a.count for a in self.arms.values())
            self.rng.shuffle(open_arms)
            chosen = sorted(open_arms, key=lambda a: self._ucb(a, total), reverse=True)[: self.params.pulls_per_round]
            trials = [Trial(a.agent, "train", self._fresh_batch(a), a.parents, a.rationale) for a in chosen]
            results: list[TrialResult] = yield trials
            for arm, result in zip(chosen, results, strict=True):
                if result.twin is not None:  # behaves exactly like an arm already racing: merge into it
                    self.arms = {k: a for k, a in self.arms.items() if a is not arm}
                    spent += len(result.trial.example_ids)
                    continue
                arm.candidate_id = result.candidate_id
                arm.seen.update(result.trial.example_ids)
                spent += len(result.trial.example_ids)
                arm.errors += result.summary.n_errors
                if result.summary.mean is not None:
                    arm.total += result.summary.mean * result.summary.n
                    arm.count += result.summary.n
