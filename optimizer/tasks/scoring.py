"""Calling a metric safely, and metrics from names, functions and ``module:function``.

Every metric, built-in, registered or the user's, is called through :func:`score`: what it returns
is checked, since a NaN or a 7 would silently corrupt every mean and every decision made on it
(:class:`MetricContractError` stops the campaign), and an exception it raises becomes
:class:`MetricFailed`, stored as that example's error while the campaign goes on.
"""

import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from numbers import Real
from typing import TYPE_CHECKING, Any

from agentopt.agents.runtime.errors import AgentoptError, ConfigError
from agentopt.optimizer.tasks.errors import TaskError
from agentopt.optimizer.tasks.metrics import (
    METRICS,
    Metric,
    MetricContractError,
    MetricFailed,
    Score,
    identity,
)

if TYPE_CHECKING:
    from agentopt.optimizer.tasks.example import Example


def score(metric: Metric, example: "Example", prediction: str) -> Score:
    """``metric``'s checked verdict on ``prediction``; see the module docstring for its failures."""
    try:
        returned = metric(example, prediction)
    except AgentoptError:  # already a verdict on the failure: MetricFailed, a spent budget, a judge without a model
        raise
    except Exception as exc:  # noqa: BLE001 - stored as the example's error
        raise MetricFailed(f"metric {metric.name} failed: {one_line(exc)}") from None
    return checked(metric.name, example.id, returned)


def checked(name: str, example_id: str, returned: object) -> Score:
    """``returned`` as a Score, or :class:`MetricContractError` naming the metric and the example."""
    value, feedback = returned, None
    if isinstance(returned, Score):
        value, feedback = returned.value, returned.feedback
    elif isinstance(returned, tuple) and len(returned) == 2:
        value, feedback = returned
    if not isinstance(value, Real):
        raise _broken(name, example_id, f"{value!r}, not a number")
    if not 0.0 <= float(value) <= 1.0:  # NaN fails this too
        raise _broken(name, example_id, f"{value!r}, outside [0, 1]")
    if feedback is not None and not isinstance(feedback, str):
        raise _broken(name, example_id, f"feedback {feedback!r}, not text")
    return Score(float(value), feedback)


def _broken(name: str, example_id: str, bad: str) -> MetricContractError:
    """The one line a campaign stops with when its metric breaks its contract."""
    return MetricContractError(f"metric {name} returned {bad} on example {example_id}; a metric returns a number "
                               "in [0, 1] or a (score, feedback) pair")


def one_line(exc: BaseException) -> str:
    """'ValueError: bad thing' on one line, for an error stored beside an example."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}"[:300] if text else type(exc).__name__


@dataclass(frozen=True)
class FunctionMetric:
    """A user's ``fn(example, prediction)``; its optional ``dedup_key`` attribute is the dedup key."""

    fn: Callable[["Example", str], Any]
    name: str = ""

    def __post_init__(self) -> None:
        if not self.name:
            object.__setattr__(self, "name", getattr(self.fn, "__qualname__", None) or repr(self.fn))

    def __call__(self, example: "Example", prediction: str) -> Any:
        return self.fn(example, prediction)

    def key(self, prediction: str) -> str:
        return str(getattr(self.fn, "dedup_key", identity)(prediction))


def import_function(ref: str) -> Callable[..., Any]:
    """``module:function`` imported from the current directory or the installed packages."""
    module_name, _, attr = ref.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"metric {ref!r}: write a function as module:function (e.g. mymetrics:f1)")
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")  # the working directory, as `python -m` has it (a console script does not)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - any import failure is the user's config to fix
        raise ConfigError(f"metric {ref!r}: cannot import {module_name} ({one_line(exc)})") from None
    fn: object = getattr(module, attr, None)
    if not callable(fn):
        raise ConfigError(f"metric {ref!r}: {module_name} has no function {attr!r}")
    return fn


def resolve_metric(spec: "str | Metric | Callable[..., Any]", rubric: str | None = None) -> Metric:
    """A metric from a built-in name, ``module:function``, ``judge`` (with ``rubric``), a metric
    object or a plain function."""
    if isinstance(spec, str):
        if spec == "judge":
            from agentopt.optimizer.tasks.judge import LLMJudge

            return LLMJudge(rubric) if rubric else LLMJudge()
        if spec in METRICS:
            return METRICS[spec]
        if ":" in spec:
            return FunctionMetric(import_function(spec), spec)
        raise TaskError(f"unknown metric {spec!r}; known: {', '.join(sorted(METRICS))}, judge, or module:function")
    if isinstance(spec, Metric):
        return spec
    if callable(spec):
        return FunctionMetric(spec)
    raise TaskError(f"a metric is a name, module:function or a function, not {type(spec).__name__}")
