"""Portfolios: several strategies in one campaign, sharing the archive, the cache and the budget.

Members draw from the same proposer with the same seed, so a proposal one member paid for is a
cache hit for the next (INSTINCT over APE's pool costs APE's proposals once), and a candidate one
member scored is reused by the others through the archive. Each member gets a share of the
task-model examples; the member furthest below its share asks next, and a member that uses up its
share is stopped at its next question. Size members' own parameters to their share: a member cut
off before its final validation round contributes only the candidates it fully scored.
"""

from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from agentopt.agents.base import Agent
from agentopt.agents.runtime.errors import ConfigError
from agentopt.optimizer.strategies.base import (
    Params,
    Plan,
    Strategy,
    StrategyBase,
    StrategyClass,
    StrategyContext,
    Trial,
    TrialResult,
)
from agentopt.optimizer.strategies.registry import STRATEGIES
from agentopt.optimizer.tasks import Example


class Member(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    params: dict[str, Any] = Field(default_factory=dict)
    share: float = Field(1.0, gt=0, description="relative share of the task-model examples")

    @model_validator(mode="after")
    def _known_and_valid(self) -> "Member":
        try:
            strategy = _member_class(self.name)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        strategy.Params.model_validate(self.params)
        return self


class PortfolioParams(Params):
    members: tuple[Member, ...] = Field(min_length=1)
    budget: int = Field(400, ge=1, description="task-model example evaluations for the whole search")
    rule: Literal["redistribute", "fixed"] = Field(
        "redistribute", description="redistribute: a member that finishes under its share leaves the rest to the "
                                    "others, in proportion; fixed: shares never move")


def _member_class(name: str) -> StrategyClass:
    if name not in STRATEGIES or name == Portfolio.name:
        raise ConfigError(f"unknown portfolio member {name!r}; known: {', '.join(sorted(set(STRATEGIES) - {'portfolio'}))}")
    return STRATEGIES[name]


class Portfolio(StrategyBase[PortfolioParams]):
    name = "portfolio"
    Params = PortfolioParams

    def __init__(self, params: dict[str, Any], ctx: StrategyContext) -> None:
        super().__init__(params, ctx)
        self.members: list[Strategy] = [_member_class(m.name)(m.params, ctx) for m in self.params.members]
        self.spent = [0] * len(self.members)
        self.finished = [False] * len(self.members)
        self._asking: int | None = None

    @classmethod
    def bounds(cls, p: PortfolioParams, train: Sequence[Example], n_val: int, probe_size: int) -> Plan | None:
        plans = [_member_class(m.name).plan(m.params, train, n_val, probe_size) for m in p.members]
        if any(plan is None for plan in plans):
            return None
        real = [plan for plan in plans if plan is not None]
        return Plan(sum(x.proposer_calls for x in real), max(x.proposer_prompt_tokens for x in real),
                    min(sum(x.task_examples for x in real), p.budget + max(x.task_examples for x in real)),
                    max(x.candidate_demos for x in real))

    @classmethod
    def needs_embedder(cls, p: PortfolioParams) -> bool:
        return any(_member_class(m.name).uses_embeddings(m.params) for m in p.members)

    @classmethod
    def refuses(cls, p: PortfolioParams, seed: Agent) -> str | None:
        return next((problem for m in p.members if (problem := _member_class(m.name).accepts(m.params, seed))), None)

    def allowance(self, i: int) -> float:
        """Member ``i``'s share of the budget; with ``redistribute``, finished members' unused
        examples go to the ones still searching, in proportion to their shares."""
        shares = [m.share for m in self.params.members]
        if self.params.rule == "fixed":
            return self.params.budget * shares[i] / sum(shares)
        active = [j for j in range(len(shares)) if not self.finished[j]]
        left = self.params.budget - sum(self.spent[j] for j in range(len(shares)) if self.finished[j])
        return left * shares[i] / sum(shares[j] for j in active) if i in active else self.spent[i]

    def baseline(self) -> Agent:
        """The first member's: members of different kinds start from different agents."""
        return self.members[0].baseline()

    def ask(self) -> list[Trial]:
        while True:
            open_members = [i for i in range(len(self.members))
                            if not self.finished[i] and self.spent[i] < self.allowance(i)]
            if not open_members:
                return []
            i = min(open_members, key=lambda j: self.spent[j] / self.params.members[j].share)
            trials = self.members[i].ask()
            if not trials:
                self.finished[i] = True
                continue
            self._asking = i
            self.spent[i] += sum(len(t.example_ids) for t in trials)
            return [replace(t, strategy=self.params.members[i].name) for t in trials]

    def tell(self, results: list[TrialResult]) -> None:
        assert self._asking is not None
        self.members[self._asking].tell(results)
        if self.spent[self._asking] >= self.allowance(self._asking):
            self.finished[self._asking] = True
