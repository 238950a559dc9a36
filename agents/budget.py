"""Hard budgets: what a role may spend, what it has spent, and what one call is expected to cost.

A budget is checked *before* a call starts, against what is already spent plus what calls in
flight have reserved, so once it is reached no new call starts anywhere in the cluster. Calls
count completed requests (failed attempts cost no tokens and are bounded by ``max_attempts``).
"""

from dataclasses import dataclass
from typing import Self

from pydantic import BaseModel, ConfigDict, Field


class Price(BaseModel):
    """What a model costs, in US dollars per million tokens."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input_per_mtok: float = Field(0.0, ge=0.0)
    output_per_mtok: float = Field(0.0, ge=0.0)

    def cost(self, prompt_tokens: float, completion_tokens: float) -> float:
        return (prompt_tokens * self.input_per_mtok + completion_tokens * self.output_per_mtok) / 1e6


class RoleBudget(BaseModel):
    """Limits for one role (task or proposer) in one campaign; ``None`` means unlimited."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    calls: int | None = Field(None, ge=1, description="completed LLM requests")
    tokens: int | None = Field(None, ge=1, description="prompt + completion tokens")
    usd: float | None = Field(None, gt=0, description="US dollars, from the model's price in `prices`")

    @property
    def limited(self) -> bool:
        return any(v is not None for v in (self.calls, self.tokens, self.usd))


@dataclass(frozen=True)
class Spend:
    """Usage as a budget sees it; also used for an estimate of calls still to come."""

    calls: float = 0
    prompt_tokens: float = 0
    completion_tokens: float = 0
    usd: float = 0.0

    @property
    def tokens(self) -> float:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: "Spend") -> "Spend":
        return Spend(self.calls + other.calls, self.prompt_tokens + other.prompt_tokens,
                     self.completion_tokens + other.completion_tokens, self.usd + other.usd)

    def __sub__(self, other: "Spend") -> "Spend":
        return self + other.scaled(-1)

    def scaled(self, factor: float) -> "Spend":
        return Spend(self.calls * factor, self.prompt_tokens * factor, self.completion_tokens * factor,
                     self.usd * factor)

    @classmethod
    def of_call(cls, prompt_tokens: float, completion_tokens: float, price: Price) -> Self:
        return cls(1, prompt_tokens, completion_tokens, price.cost(prompt_tokens, completion_tokens))

    def over(self, budget: RoleBudget) -> str | None:
        """The first limit this spend exceeds ('calls', 'tokens' or 'usd'), if any."""
        for what, used in (("calls", self.calls), ("tokens", self.tokens), ("usd", self.usd)):
            limit = getattr(budget, what)
            if limit is not None and used > limit + 1e-9:
                return what
        return None


def estimate_prompt_tokens(messages: list[dict[str, str]]) -> int:
    """A deliberately high guess (3 characters per token plus framing): reservations err on the safe side."""
    return sum(len(m.get("content", "")) for m in messages) // 3 + 8 * len(messages) + 8


def shrink(budget: RoleBudget, reserve: Spend) -> RoleBudget:
    """The budget left for the search once ``reserve`` is set aside for the final test scoring."""

    def minus(limit: float | None, amount: float) -> float | None:
        return None if limit is None else max(limit - amount, 0)

    calls, tokens = minus(budget.calls, reserve.calls), minus(budget.tokens, reserve.tokens)
    usd = minus(budget.usd, reserve.usd)
    return RoleBudget.model_construct(calls=None if calls is None else int(calls),
                                      tokens=None if tokens is None else int(tokens), usd=usd)
