"""The Example noun and the seeded train / val / test split, with nothing of Task or its metrics.

Kept apart from :mod:`.base` so the metrics, the judge and the file loaders can name an example
without importing the Task that is built from them: the tasks package then imports in one direction.
"""

import random
from collections.abc import Sequence
from dataclasses import dataclass

from agentopt.optimizer.tasks.errors import TaskError
from agentopt.agents.runtime.prompt_runtime import Inputs, input_text

SPLITS = ("train", "val", "test")
INPUT = "input"


@dataclass(frozen=True)
class Example:
    """One input with its acceptable answers; ``id`` is stable across runs so results can be reused
    and cached. ``input`` is the text of a single-input task, or the named fields of a multi-field one."""

    id: str
    input: Inputs
    target: str
    aliases: tuple[str, ...] = ()  # further acceptable answers; metrics take the best match

    def __hash__(self) -> int:  # a multi-field input is a dict; the id already identifies the example
        return hash(self.id)

    @property
    def targets(self) -> tuple[str, ...]:
        return (self.target, *self.aliases)

    @property
    def text(self) -> str:
        """The input as one text, as proposers and reports show it."""
        return input_text(self.input)


Row = tuple[Inputs, str | Sequence[str]]
Splits = tuple[tuple[Example, ...], tuple[Example, ...], tuple[Example, ...]]
"""Train, val and test."""


def split_examples(rows: Sequence[Row], seed: int, sizes: tuple[float, float, float] = (0.4, 0.2, 0.4)) -> Splits:
    """Shuffle ``(input, target or targets)`` rows with ``seed`` and cut into train / val / test.

    Ids are the example's position in the input order, so the same data and seed always give the
    same ids in the same splits. A generated task may repeat an input (``sum`` draws its pairs with
    replacement); a repeat is dropped from the earlier split (train, then val) so no input is in two
    splits and the sealed test split keeps every example and id it had. Task files are checked for
    repeats before this, naming the lines (see ``tasks.files``).
    """
    if len(rows) < 3:
        raise TaskError(f"a task needs at least 3 examples to make train/val/test splits, got {len(rows)}")
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    n_train = max(1, round(sizes[0] * len(order)))
    n_val = max(1, round(sizes[1] * len(order)))
    n_train = min(n_train, len(order) - 2)
    n_val = min(n_val, len(order) - n_train - 1)
    keys = [input_text(inputs) for inputs, _ in rows]
    cuts = _without_later_inputs(keys, (order[:n_train], order[n_train : n_train + n_val], order[n_train + n_val :]))
    train, val, test = (tuple(example(f"{name}-{i}", *rows[i]) for i in idx)
                        for name, idx in zip(SPLITS, cuts, strict=True))
    return train, val, test


def example(example_id: str, inputs: Inputs, targets: str | Sequence[str]) -> Example:
    """An example from one target or a sequence of acceptable ones (the first is the reference)."""
    if isinstance(targets, str):
        return Example(example_id, inputs, targets)
    return Example(example_id, inputs, targets[0], tuple(targets[1:]))


def _without_later_inputs(keys: Sequence[str], cuts: Sequence[list[int]]) -> list[list[int]]:
    """Each cut less the positions whose input is also in a later cut (repeats inside one cut stay)."""
    later: set[str] = set()
    kept: list[list[int]] = []
    for idx in reversed(cuts):
        kept.insert(0, [i for i in idx if keys[i] not in later])
        later.update(keys[i] for i in idx)
    return kept
