"""Search strategies, by name. A new strategy is one class registered here."""

from typing import Any

from agentopt.agents.errors import ConfigError
from agentopt.optimizer.strategies.adas import MetaAgentSearch
from agentopt.optimizer.strategies.ape import APE
from agentopt.optimizer.strategies.base import Strategy, StrategyClass, StrategyContext, Trial, TrialResult
from agentopt.optimizer.strategies.instinct import Instinct
from agentopt.optimizer.strategies.opro import OPRO
from agentopt.optimizer.strategies.optuna_search import OptunaSearch
from agentopt.optimizer.strategies.portfolio import Portfolio
from agentopt.optimizer.strategies.random_search import RandomSearch
from agentopt.optimizer.strategies.reflective import Reflective
from agentopt.optimizer.strategies.symbolic import SymbolicLearning

STRATEGIES: dict[str, StrategyClass] = {
    s.name: s for s in (APE, Instinct, MetaAgentSearch, OPRO, OptunaSearch, Portfolio, RandomSearch, Reflective, SymbolicLearning)}


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


__all__ = ["STRATEGIES", "Strategy", "StrategyContext", "Trial", "TrialResult", "make_strategy", "register_strategy"]
