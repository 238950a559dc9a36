"""The Task noun: examples with fixed, seeded train / val / test splits and a metric."""

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from agentopt.agents.errors import TaskError
from agentopt.optimizer.tasks.metrics import get_metric

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Example:
    """One input/target pair; ``id`` is stable across runs so results can be reused and cached."""

    id: str
    input: str
    target: str


@dataclass(frozen=True)
class Task:
    name: str
    description: str
    metric_name: str
    train: tuple[Example, ...]
    val: tuple[Example, ...]
    test: tuple[Example, ...]
    source: str = "builtin"
    _by_id: dict[str, Example] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for split in SPLITS:
            if not getattr(self, split):
                raise TaskError(f"task {self.name!r} has an empty {split} split")
        self._by_id.update({e.id: e for s in SPLITS for e in getattr(self, s)})

    def split(self, name: str) -> tuple[Example, ...]:
        if name not in SPLITS:
            raise TaskError(f"unknown split {name!r}; known: {', '.join(SPLITS)}")
        return getattr(self, name)

    def example(self, example_id: str) -> Example:
        return self._by_id[example_id]

    def score(self, prediction: str, target: str) -> float:
        return get_metric(self.metric_name)(prediction, target)


def split_examples(
    pairs: Sequence[tuple[str, str]], seed: int, sizes: tuple[float, float, float] = (0.4, 0.2, 0.4)
) -> tuple[tuple[Example, ...], tuple[Example, ...], tuple[Example, ...]]:
    """Shuffle with ``seed`` and cut into train / val / test by the given fractions.

    Ids are the example's position in the input order, so the same data and seed always give the
    same ids in the same splits. A generated task may repeat an input (``sum`` draws its pairs with
    replacement); a repeat is dropped from the earlier split (train, then val) so no input is in two
    splits and the sealed test split keeps every example and id it had. Task files are checked for
    repeats before this, naming the lines (see ``tasks.files``).
    """
    if len(pairs) < 3:
        raise TaskError(f"a task needs at least 3 examples to make train/val/test splits, got {len(pairs)}")
    order = list(range(len(pairs)))
    random.Random(seed).shuffle(order)
    n_train = max(1, round(sizes[0] * len(order)))
    n_val = max(1, round(sizes[1] * len(order)))
    n_train = min(n_train, len(order) - 2)
    n_val = min(n_val, len(order) - n_train - 1)
    cuts = _without_later_inputs(pairs, (order[:n_train], order[n_train : n_train + n_val], order[n_train + n_val :]))
    return tuple(  # type: ignore[return-value]
        tuple(Example(id=f"{name}-{i}", input=pairs[i][0], target=pairs[i][1]) for i in idx)
        for name, idx in zip(SPLITS, cuts, strict=True)
    )


def _without_later_inputs(pairs: Sequence[tuple[str, str]], cuts: Sequence[list[int]]) -> list[list[int]]:
    """Each cut less the positions whose input is also in a later cut (repeats inside one cut stay)."""
    later: set[str] = set()
    kept: list[list[int]] = []
    for idx in reversed(cuts):
        kept.insert(0, [i for i in idx if pairs[i][0] not in later])
        later.update(pairs[i][0] for i in idx)
    return kept
