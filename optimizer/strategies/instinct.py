"""INSTINCT: a neural bandit over transformer representations picks which candidates to query.

Lin et al., "Use Your INSTINCT". The pool is APE's forward generation plus paraphrases of the best
candidates found by the random initial queries; each candidate is represented by an embedding of
its prompt (the bundled model's mean-pooled hidden states by default, or any OpenAI-compatible
embeddings endpoint). A small MLP surrogate with NeuralUCB / NeuralTS acquisition
(:mod:`agentopt.optimizer.strategies.surrogate`) then chooses each batch of queries, so far fewer
task-model calls are spent on candidates that look like ones already found weak.
Beyond the reference code: proposals are validated (echoed demos and truncated text never enter
the pool), a failed embedding drops one candidate instead of the run, and every paid query is in
the archive the moment it finishes.
"""

import random
from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import Field

from agentopt.agents.runtime.errors import ConfigError, LLMError
from agentopt.optimizer.strategies import pool
from agentopt.optimizer.strategies.base import GeneratorStrategy, Plan, Search, Trial, TrialResult
from agentopt.optimizer.strategies.pool import Candidate, PoolParams
from agentopt.optimizer.strategies.surrogate import NeuralBandit, NeuralBanditConfig
from agentopt.optimizer.tasks import Example


class InstinctParams(PoolParams):
    queries: int = Field(20, ge=1, description="candidates scored on the dev set in all (paper: 165)")
    n_init: int = Field(6, ge=1, description="random initial queries, the seed first (paper: 40)")
    batch: int = Field(2, ge=1, description="queries chosen together and run in parallel")
    dev_size: int | None = Field(None, ge=1, description="validation examples per query (paper: 20)")
    acquisition: Literal["ucb", "ts"] = "ucb"
    hidden: int = Field(100, ge=1)
    lam: float = Field(1e-3, gt=0, description="prior of U and weight decay (paper: 0.1, tuned for N(0,1) weights; "
                       "1e-3 suits this surrogate's scaled inputs and initialisation)")
    nu: float = Field(1.0, gt=0)
    paraphrase_top: int = Field(2, ge=0, description="best initial candidates paraphrased into the pool")
    paraphrase_samples: int = Field(3, ge=1)


class Instinct(GeneratorStrategy[InstinctParams]):
    name = "instinct"
    Params = InstinctParams

    @classmethod
    def bounds(cls, p: InstinctParams, train: Sequence[Example], n_val: int, probe_size: int) -> Plan:
        return pool.plan(p, train, n_val, probe_size, p.queries, p.dev_size, p.paraphrase_top * p.paraphrase_samples)

    @classmethod
    def needs_embedder(cls, p: InstinctParams) -> bool:
        return True

    def search(self) -> Search:
        p = self.params
        rng = random.Random(self.ctx.seed)
        known: set[str] = set()
        candidates = self._embedded(pool.unique(self.ctx, pool.generate(self.ctx, rng, p), known))
        if not candidates:
            return
        dev = pool.dev_ids(self.ctx, p.dev_size)
        self.scores: dict[int, float] = {}  # pool index -> dev score, errors left out
        self.ids: dict[int, int] = {}  # pool index -> candidate id
        asked: list[int] = [0] + rng.sample(range(1, len(candidates)), min(p.n_init, len(candidates)) - 1)
        asked = asked[: p.queries]
        for start in range(0, len(asked), p.batch):
            yield from self._query(candidates, asked[start: start + p.batch], dev)
        best = sorted(self.scores, key=self.scores.__getitem__, reverse=True)[: p.paraphrase_top]
        parents = [(candidates[i][0].agent, self.ids[i]) for i in best]
        fresh = pool.unique(self.ctx, pool.paraphrase(self.ctx, parents, p.paraphrase_samples, 0, p.proposer_workers),
                            known)
        candidates += self._embedded(fresh)
        bandit = NeuralBandit(np.array([v for _, v in candidates]), NeuralBanditConfig(
            hidden=p.hidden, lam=p.lam, nu=p.nu, acquisition=p.acquisition, seed=self.ctx.seed))
        while len(asked) < min(p.queries, len(candidates)):
            if self.scores:
                bandit.fit(list(self.scores), list(self.scores.values()))
            picks = bandit.select(min(p.batch, p.queries - len(asked)), exclude=asked)
            asked += picks
            yield from self._query(candidates, picks, dev)

    def _query(self, candidates: list[tuple[Candidate, np.ndarray]], picks: list[int], dev: tuple[str, ...]) -> Search:
        trials = [Trial(candidates[i][0].agent, "val", dev, candidates[i][0].parents, candidates[i][0].rationale)
                  for i in picks]
        results: list[TrialResult] = yield trials
        for i, result in zip(picks, results, strict=True):
            self.ids[i] = result.candidate_id
            score = pool.clean_score(result)
            if score is not None:
                self.scores[i] = score

    def _embedded(self, candidates: list[Candidate]) -> list[tuple[Candidate, np.ndarray]]:
        """Each candidate with its representation; one whose embedding fails is left out, counted."""
        if self.ctx.embedder is None:
            raise ConfigError("the instinct strategy needs an embeddings endpoint (models.embedder)")
        out = []
        for c in candidates:
            text = pool.described(c.agent)
            try:
                out.append((c, np.array(self.ctx.embedder.embed(text))))
            except LLMError:
                self.ctx.stats.reject("embedding error")
        return out
