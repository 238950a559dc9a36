"""The strategies known by name. A leaf: the package's ``__init__`` registers the built-in ones, and
a strategy made of others (the portfolio) looks its members up here without importing the package
that imports it."""

from typing import Any

from agentopt.agents.runtime.errors import ConfigError
from agentopt.optimizer.strategies.base import Strategy, StrategyClass, StrategyContext

STRATEGIES: dict[str, StrategyClass] = {}


def register_strategy(strategy: StrategyClass) -> StrategyClass:
    """Make a strategy known by its ``name`` (configs, ``agentopt.strategies.make``): one class, a
    :class:`~agentopt.optimizer.strategies.base.GeneratorStrategy` (whose hooks get its validated
    ``Params``) or any class with :class:`StrategyClass`'s members (which get the config's dict)."""
    STRATEGIES[strategy.name] = strategy
    return strategy


def make_strategy(name: str, params: dict[str, Any], ctx: StrategyContext) -> Strategy:
    if name not in STRATEGIES:
        raise ConfigError(f"unknown strategy {name!r}; known: {', '.join(sorted(STRATEGIES))}")
    return STRATEGIES[name](params, ctx)
