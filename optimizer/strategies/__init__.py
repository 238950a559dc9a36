"""Search strategies, by name. A new strategy is one class registered here (``register_strategy``)."""

from agentopt.optimizer.strategies.adas import MetaAgentSearch
from agentopt.optimizer.strategies.ape import APE
from agentopt.optimizer.strategies.base import Strategy, StrategyContext, Trial, TrialResult
from agentopt.optimizer.strategies.instinct import Instinct
from agentopt.optimizer.strategies.opro import OPRO
from agentopt.optimizer.strategies.optuna_search import OptunaSearch
from agentopt.optimizer.strategies.portfolio import Portfolio
from agentopt.optimizer.strategies.random_search import RandomSearch
from agentopt.optimizer.strategies.reflective import Reflective
from agentopt.optimizer.strategies.registry import STRATEGIES, make_strategy, register_strategy
from agentopt.optimizer.strategies.symbolic import SymbolicLearning

for _builtin in (APE, Instinct, MetaAgentSearch, OPRO, OptunaSearch, Portfolio, RandomSearch, Reflective, SymbolicLearning):
    register_strategy(_builtin)

__all__ = ["STRATEGIES", "Strategy", "StrategyContext", "Trial", "TrialResult", "make_strategy", "register_strategy"]
