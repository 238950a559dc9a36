"""Search strategies, by name. A new strategy is one class registered here."""

from typing import Any

from agentopt.agents.errors import ConfigError
from agentopt.optimizer.strategies.ape import APE
from agentopt.optimizer.strategies.base import GeneratorStrategy, Strategy, StrategyContext, Trial, TrialResult

STRATEGIES: dict[str, type[GeneratorStrategy]] = {APE.name: APE}


def make_strategy(name: str, params: dict[str, Any], ctx: StrategyContext) -> Strategy:
    if name not in STRATEGIES:
        raise ConfigError(f"unknown strategy {name!r}; known: {', '.join(sorted(STRATEGIES))}")
    return STRATEGIES[name](params, ctx)


__all__ = ["STRATEGIES", "Strategy", "StrategyContext", "Trial", "TrialResult", "make_strategy"]
