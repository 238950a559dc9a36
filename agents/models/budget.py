"""Hard budgets: what a role may spend, what it has spent, and what one call is expected to cost.

A budget is checked *before* a call starts, against what is already spent plus what calls in
flight have reserved, so once it is reached no new call starts anywhere in the cluster. Calls
count what the endpoints were asked to do: every request one received, answered or not (a failed
attempt is billed by some APIs, and a timed-out one may have run to the end).
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Price(BaseModel):
    """What a model costs, in US dollars per million tokens."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input_per_mtok: float = Field(0.0, ge=0.0)
    output_per_mtok: float = Field(0.0, ge=0.0)
    cached_input_per_mtok: float | None = Field(
        None, ge=0.0, description="prompt tokens the endpoint served from its prompt cache (default: the input rate)")

    @model_validator(mode="after")
    def _cached_not_dearer(self) -> Self:
        if self.cached_input_per_mtok is not None and self.cached_input_per_mtok > self.input_per_mtok:
            raise ValueError("cached_input_per_mtok cannot exceed input_per_mtok: estimates charge every prompt "
                             "token at the input rate and must stay upper bounds")
        return self

    def cost(self, prompt_tokens: float, completion_tokens: float, cached_tokens: float = 0) -> float:
        """``cached_tokens`` are the part of ``prompt_tokens`` served from the endpoint's prompt cache."""
        cached_rate = self.input_per_mtok if self.cached_input_per_mtok is None else self.cached_input_per_mtok
        cached = min(cached_tokens, prompt_tokens)
        return ((prompt_tokens - cached) * self.input_per_mtok + cached * cached_rate
                + completion_tokens * self.output_per_mtok) / 1e6


class RoleBudget(BaseModel):
    """Limits for one role (task or proposer) in one campaign; ``None`` means unlimited."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    calls: int | None = Field(None, ge=1, description="LLM requests an endpoint received, failed attempts included")
    tokens: int | None = Field(None, ge=1, description="prompt + completion tokens")
    usd: float | None = Field(None, gt=0, description="US dollars, from the model's price in `prices`")

    @property
    def limited(self) -> bool:
        return any(v is not None for v in (self.calls, self.tokens, self.usd))


class Used(NamedTuple):
    """What one answered call used, as the endpoint reported it."""

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0  # of the prompt tokens, those served from the endpoint's prompt cache


@dataclass(frozen=True)
class Spend:
    """Usage as a budget sees it; also used for an estimate of calls still to come (whose prompt
    tokens are all counted uncached, so an estimate stays an upper bound)."""

    calls: float = 0
    prompt_tokens: float = 0
    completion_tokens: float = 0
    usd: float = 0.0
    cached_tokens: float = 0

    @property
    def tokens(self) -> float:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: "Spend") -> "Spend":
        return Spend(self.calls + other.calls, self.prompt_tokens + other.prompt_tokens,
                     self.completion_tokens + other.completion_tokens, self.usd + other.usd,
                     self.cached_tokens + other.cached_tokens)

    def __sub__(self, other: "Spend") -> "Spend":
        return self + other.scaled(-1)

    def scaled(self, factor: float) -> "Spend":
        return Spend(self.calls * factor, self.prompt_tokens * factor, self.completion_tokens * factor,
                     self.usd * factor, self.cached_tokens * factor)

    @classmethod
    def of_call(cls, prompt_tokens: float, completion_tokens: float, price: Price, cached_tokens: float = 0) -> Self:
        return cls(1, prompt_tokens, completion_tokens, price.cost(prompt_tokens, completion_tokens, cached_tokens),
                   cached_tokens)

    def over(self, budget: RoleBudget) -> str | None:
        """The first limit this spend exceeds ('calls', 'tokens' or 'usd'), if any."""
        for what, used in (("calls", self.calls), ("tokens", self.tokens), ("usd", self.usd)):
            limit = getattr(budget, what)
            if limit is not None and used > limit + 1e-9:
                return what
        return None


def estimate_prompt_tokens(messages: Sequence[Mapping[str, str]]) -> int:
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
