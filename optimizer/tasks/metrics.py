"""Scoring functions: ``metric(prediction, target) -> float in [0, 1]``.

All metrics normalise both sides first (case, surrounding punctuation, inner whitespace), because a
tiny model that answers "Elephant." to the target "elephant" is right in substance.
"""

import json
import re
import string
from collections import Counter
from collections.abc import Callable

from agentopt.agents.errors import TaskError

Metric = Callable[[str, str], float]

_PUNCT = re.escape(string.punctuation)
_EDGE_PUNCT = re.compile(rf"^[{_PUNCT}\s]+|[{_PUNCT}\s]+$")
_SPACES = re.compile(r"\s+")


def normalise(text: str) -> str:
    """Lower-case, trim punctuation at both ends and collapse whitespace."""
    return _SPACES.sub(" ", _EDGE_PUNCT.sub("", text.strip().lower()))


def exact_match(prediction: str, target: str) -> float:
    return float(normalise(prediction) == normalise(target))


def contains(prediction: str, target: str) -> float:
    """1 when the normalised target occurs in the normalised prediction as whole words."""
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


def humaneval(prediction: str, target: str) -> float:
    """1 when the predicted code passes the problem's unit tests, run in the sandbox. A prediction
    that is only the function's body is completed with the signature from the prompt."""
    from agentopt.agents.sandbox import Limits, run_sandboxed

    problem = json.loads(target)
    code = prediction if f"def {problem['entry_point']}" in prediction else problem["prompt"] + prediction
    program = f"{code}\n\n{problem['test']}\n\ndef passes():\n    check({problem['entry_point']})\n    return True\n"
    return float(run_sandboxed(program, "passes", [], limits=Limits(cpu_s=5, wall_s=10)).ok)


METRICS: dict[str, Metric] = {"exact_match": exact_match, "contains": contains, "token_f1": token_f1,
                              "last_number": last_number, "humaneval": humaneval}


def get_metric(name: str) -> Metric:
    try:
        return METRICS[name]
    except KeyError:
        raise TaskError(f"unknown metric {name!r}; known: {', '.join(sorted(METRICS))}") from None
