"""The search strategies as objects: ``agentopt.strategies.APE(racing_budget=240)``.

Each name builds a :class:`~agentopt.optimizer.engine.config.StrategyConfig`, whose parameters are checked
against the strategy's own ``Params`` model on the spot, so a typo fails where it is written, not
when the campaign starts. A strategy registered later (one class added to ``STRATEGIES``) is
reachable as ``agentopt.strategies.make("name", **params)``.
"""

from collections.abc import Callable
from typing import Any

from agentopt.optimizer.engine.config import StrategyConfig
from agentopt.optimizer.strategies import STRATEGIES


def make(name: str, **params: Any) -> StrategyConfig:
    """Any registered strategy by name, with its parameters validated."""
    return StrategyConfig(name=name, params=params)


def _named(name: str) -> Callable[..., StrategyConfig]:
    def build(**params: Any) -> StrategyConfig:
        return make(name, **params)

    strategy = STRATEGIES[name]
    fields = strategy.Params.model_fields
    build.__name__ = build.__qualname__ = name
    build.__doc__ = (f"The {name!r} strategy (`agentopt strategies {name}` explains it).\n\nParameters:\n"
                     + "\n".join(f"  {field}: {info.description or ''} (default {info.default!r})"
                                 for field, info in fields.items()))
    return build


APE = _named("ape")
OPRO = _named("opro")
INSTINCT = _named("instinct")
ADAS = _named("adas")
Optuna = _named("optuna")
Portfolio = _named("portfolio")
Random = _named("random")
Reflective = _named("reflective")
SymbolicLearning = _named("symbolic")

__all__ = ["ADAS", "APE", "INSTINCT", "OPRO", "Optuna", "Portfolio", "Random", "Reflective", "SymbolicLearning", "make"]
