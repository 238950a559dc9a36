"""Random search: APE's proposal pool, scored in random order on the dev set (the baseline).

Every query-efficient strategy has to beat it at an equal number of task-model queries.
"""

import random
from collections.abc import Sequence

from pydantic import Field

from agentopt.optimizer.strategies import pool
from agentopt.optimizer.strategies.base import GeneratorStrategy, Plan, Search, Trial
from agentopt.optimizer.strategies.pool import PoolParams
from agentopt.optimizer.tasks import Example


class RandomParams(PoolParams):
    queries: int = Field(20, ge=1, description="candidates scored on the dev set")
    batch: int = Field(2, ge=1, description="candidates scored in parallel")
    dev_size: int | None = Field(None, ge=1, description="validation examples per query (default: all)")


class RandomSearch(GeneratorStrategy[RandomParams]):
    name = "random"
    Params = RandomParams

    @classmethod
    def bounds(cls, p: RandomParams, train: Sequence[Example], n_val: int, probe_size: int) -> Plan:
        return pool.plan(p, train, n_val, probe_size, p.queries, p.dev_size)

    def search(self) -> Search:
        rng = random.Random(self.ctx.seed)
        candidates = pool.generate(self.ctx, rng, self.params)
        order = candidates[:1] + rng.sample(candidates[1:], len(candidates) - 1)
        dev = pool.dev_ids(self.ctx, self.params.dev_size)
        chosen = order[: self.params.queries]
        for start in range(0, len(chosen), self.params.batch):
            yield [Trial(c.agent, "val", dev, c.parents, c.rationale) for c in chosen[start: start + self.params.batch]]

