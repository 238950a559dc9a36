"""Scoring: a metric gives a prediction for an example a :class:`Score` in [0, 1], with optional feedback.

A metric is any object with a ``name``, ``__call__(example, prediction)`` returning a Score, a
number or a ``(score, feedback)`` pair, and ``key(prediction) -> str``; the key is what functional
dedup compares, so two outputs with equal keys must get equal scores (the text metrics' key is the
normalised text, others compare raw text). Built-in metrics compare one prediction with one target
and take the best over an example's acceptable targets. How any metric is called, checked and
built from a function or ``module:function`` is :mod:`.scoring`.
Built-in text metrics normalise both sides first (case, surrounding punctuation, inner whitespace),
because a tiny model that answers "Elephant." to the target "elephant" is right in substance.
"""

import json
import re
import string
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from agentopt.agents.runtime.errors import AgentoptError
from agentopt.optimizer.tasks.errors import TaskError
from agentopt.agents.runtime.sandbox import Limits, SandboxCallError, SandboxedFunction, SandboxError

if TYPE_CHECKING:
    from agentopt.optimizer.tasks.example import Example

Compare = Callable[[str, str], "float | Score"]


@dataclass(frozen=True)
class Score:
    """A metric's verdict on one prediction: ``value`` in [0, 1] and, optionally, why."""

    value: float
    feedback: str | None = None


class MetricFailed(AgentoptError):
    """The metric could not score one example (it raised, or a judge's reply was unusable): that
    example is stored with this error, never with a score, and the campaign goes on."""


class MetricContractError(AgentoptError):
    """The metric returned something that is not a score (NaN, a string, 7): every figure built on
    it would be wrong, so the campaign stops at once with this one line."""


@runtime_checkable
class Metric(Protocol):
    @property
    def name(self) -> str:
        """Read here, never set: a frozen dataclass's field is a name too."""
        ...

    def __call__(self, example: "Example", prediction: str) -> "Score | float | tuple[float, str]": ...

    def key(self, prediction: str) -> str: ...


@runtime_checkable
class Judged(Protocol):
    """A metric that grades with a model (the LLM judge): the campaign binds it to the ``judge``
    role's client, so its calls are cached, budgeted and checked like every other call."""

    def bind(self, llm: Any) -> Metric: ...


def identity(prediction: str) -> str:
    return prediction


_PUNCT = re.escape(string.punctuation)
_EDGE_PUNCT = re.compile(rf"^[{_PUNCT}\s]+|[{_PUNCT}\s]+$")
_SPACES = re.compile(r"\s+")


def normalise(text: str) -> str:
    """Lower-case, trim punctuation at both ends and collapse whitespace."""
    return _SPACES.sub(" ", _EDGE_PUNCT.sub("", text.strip().lower()))


def exact_match(prediction: str, target: str) -> float:
    return float(normalise(prediction) == normalise(target))


def contains(prediction: str, target: str) -> float:
    """1 when the normalised target occurs in the normalised prediction as whole words.

    It can be gamed: an answer that lists every option ("positive negative neutral"), or repeats
    a context that holds the answer, scores 1 on every example. Use it only where the answer is
    free text no list or echo covers; where a fixed set of options exists, score the option the
    answer names first (as the README's examples do) or use ``exact_match``."""
    needle = normalise(target)
    if not needle:
        return float(not normalise(prediction))
    return float(re.search(rf"(?<!\w){re.escape(needle)}(?!\w)", normalise(prediction)) is not None)


def token_f1(prediction: str, target: str) -> float:
    pred, gold = normalise(prediction).split(), normalise(target).split()
    if not pred or not gold:
        return float(pred == gold)
    common = sum((Counter(pred) & Counter(gold)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(gold)
    return 2 * precision * recall / (precision + recall)


_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def last_number(prediction: str, target: str) -> float:
    """1 when the last number in the prediction equals the target's (reasoning ends in its answer)."""
    found = _NUMBER.findall(prediction)
    if not found:
        return 0.0
    try:
        return float(abs(float(found[-1].replace(",", "")) - float(target.replace(",", ""))) < 1e-6)
    except ValueError:
        return 0.0


@dataclass(frozen=True)
class CheckVerdict:
    """Whether code passed its unit tests and, when it did not, why (one line)."""

    passed: bool
    reason: str | None


HUMANEVAL_LIMITS = Limits(cpu_s=5, wall_s=10)
_TESTS = "<humaneval tests>"


def humaneval_verdict(prediction: str, target: str) -> CheckVerdict:
    """Run the problem's ``check(candidate)`` here, on a ``candidate`` that calls the predicted
    function in the sandbox and gets back only plain data (see :class:`SandboxedFunction`).

    The candidate never holds the tests, the expected values or the comparisons, so nothing it
    writes, patches, forges or returns can make an assertion pass that its values fail; it passes
    only if ``check`` returns and the sandbox run itself ended cleanly. The tests are the dataset's
    own, trusted code. As in HumanEval's harness, the entry point's name also means the candidate.
    A prediction that is only the function's body is completed with the signature from the prompt.
    """
    problem = json.loads(target)
    entry = problem["entry_point"]
    code = prediction if f"def {entry}" in prediction else problem["prompt"] + prediction
    source = problem["prompt"] + "\n\n" + problem["test"]
    tests: dict[str, Any] = {"__name__": "humaneval_tests"}
    exec(compile(source, _TESTS, "exec"), tests)
    with SandboxedFunction(code, entry, HUMANEVAL_LIMITS) as candidate:
        tests[entry] = candidate
        try:
            tests["check"](candidate)
        except SandboxCallError as exc:
            return CheckVerdict(False, exc.result.error)
        except SandboxError:
            raise
        except Exception as exc:  # a failed assertion, or the tests choking on a wrong value
            return CheckVerdict(False, _test_failure(exc, source))
        run = candidate.close()
    return CheckVerdict(run.ok, run.error)


def _test_failure(exc: Exception, source: str) -> str:
    """'test failed: AssertionError at "assert candidate(3) == 5"': what failed, and on which line."""
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == _TESTS:
            line = tb.tb_lineno
        tb = tb.tb_next
    text = " ".join(f"{type(exc).__name__}: {exc}".split()).removesuffix(":")
    where = f" at {source.splitlines()[line - 1].strip()!r}" if line else ""
    return f"test failed: {text}{where}"[:300]


def humaneval(prediction: str, target: str) -> float:
    """1 when the predicted code passes the problem's unit tests (see :func:`humaneval_verdict`)."""
    return float(humaneval_verdict(prediction, target).passed)


@dataclass(frozen=True)
class BestMatch:
    """``compare(prediction, target)`` against every acceptable target, keeping the best score."""

    name: str
    compare: Compare
    dedup_key: Callable[[str], str] = identity

    def __call__(self, example: "Example", prediction: str) -> Score:
        scores = [as_score(self.compare(prediction, target)) for target in example.targets]
        return max(scores, key=lambda s: s.value)

    def key(self, prediction: str) -> str:
        return self.dedup_key(prediction)


def as_score(returned: "float | Score") -> Score:
    return returned if isinstance(returned, Score) else Score(float(returned))


def humaneval_score(prediction: str, target: str) -> Score:
    """:func:`humaneval` with the failing test or error as feedback."""
    verdict = humaneval_verdict(prediction, target)
    return Score(float(verdict.passed), verdict.reason)


METRICS: dict[str, Metric] = {m.name: m for m in (
    BestMatch("exact_match", exact_match, normalise), BestMatch("contains", contains, normalise),
    BestMatch("token_f1", token_f1, normalise), BestMatch("last_number", last_number),
    BestMatch("humaneval", humaneval_score))}
"""Built-in metrics by name; :func:`register_metric` adds one."""


def register_metric(metric: Metric) -> Metric:
    """Make ``metric`` known by its name (in YAML ``metric: NAME``, in Python the name as a string)."""
    METRICS[metric.name] = metric
    return metric


def get_metric(name: str) -> Metric:
    """A built-in (or registered) metric by name."""
    try:
        return METRICS[name]
    except KeyError:
        raise TaskError(f"unknown metric {name!r}; known: {', '.join(sorted(METRICS))}") from None
