"""Scoring functions: ``metric(prediction, target) -> float in [0, 1]``.

All metrics normalise both sides first (case, surrounding punctuation, inner whitespace), because a
tiny model that answers "Elephant." to the target "elephant" is right in substance.
"""

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


METRICS: dict[str, Metric] = {"exact_match": exact_match, "contains": contains, "token_f1": token_f1}


def get_metric(name: str) -> Metric:
    try:
        return METRICS[name]
    except KeyError:
        raise TaskError(f"unknown metric {name!r}; known: {', '.join(sorted(METRICS))}") from None
