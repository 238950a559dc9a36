"""The Task noun: examples with fixed, seeded train / val / test splits and a metric."""

import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from agentopt.agents.errors import TaskError
from agentopt.agents.prompt_runtime import Inputs, input_text
from agentopt.optimizer.tasks import scoring
from agentopt.optimizer.tasks.metrics import Metric, Score
from agentopt.optimizer.tasks.scoring import resolve_metric

SPLITS = ("train", "val", "test")
INPUT = "input"
MetricSpec = str | Metric | Callable[..., Any]
"""A built-in metric's name, ``module:function``, ``judge``, a metric object or a plain function."""


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


@dataclass(frozen=True)
class Task:
    """Examples split three ways, scored by one metric.

    Build one with :meth:`from_records`, :meth:`from_file`, :meth:`from_hf` or :meth:`builtin`.
    ``ref`` is how a stored campaign loads it again (a built-in name or a task file entry) and
    ``seed`` the seed its splits were shuffled with; a task built from Python records, or scored by
    a metric object, has no ``ref`` and is resumed from Python by passing it again.
    """

    name: str
    description: str
    metric: Metric
    train: tuple[Example, ...]
    val: tuple[Example, ...]
    test: tuple[Example, ...]
    source: str = "builtin"
    inputs: tuple[str, ...] = (INPUT,)
    ref: str | Mapping[str, Any] | None = None
    seed: int = 0
    _by_id: dict[str, Example] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.metric, Metric):
            object.__setattr__(self, "metric", resolve_metric(self.metric))
        for split in SPLITS:
            if not getattr(self, split):
                raise TaskError(f"task {self.name!r} has an empty {split} split")
        self._by_id.update({e.id: e for s in SPLITS for e in getattr(self, s)})

    @property
    def metric_name(self) -> str:
        return self.metric.name

    def split(self, name: str) -> tuple[Example, ...]:
        if name not in SPLITS:
            raise TaskError(f"unknown split {name!r}; known: {', '.join(SPLITS)}")
        return {"train": self.train, "val": self.val, "test": self.test}[name]

    def example(self, example_id: str) -> Example:
        return self._by_id[example_id]

    def input_and_target(self, example_id: str) -> tuple[Inputs, str]:
        """What an exported package's regression test and the dashboard show for a stored example id."""
        example = self.example(example_id)
        return example.input, example.target

    def score(self, example: Example, prediction: str) -> Score:
        """The metric's checked verdict; raises ``MetricFailed`` (store as the example's error) or
        ``MetricContractError`` (the metric is broken: stop)."""
        return scoring.score(self.metric, example, prediction)

    def with_metric(self, metric: MetricSpec) -> "Task":
        return replace(self, metric=resolve_metric(metric))

    @classmethod
    def from_records(cls, rows: Iterable[Mapping[str, Any]], inputs: Sequence[str] = (INPUT,),
                     target: str | Sequence[str] = "target", metric: MetricSpec = "exact_match", *,
                     name: str = "records", description: str = "", seed: int = 0) -> "Task":
        """A task from Python records (dicts, or a Hugging Face ``datasets.Dataset``'s rows).

        ``inputs`` names the fields the agent reads; ``target`` names the answer field (or several),
        whose value may also be a list of acceptable answers. A ``split`` field pins rows to splits;
        otherwise they are split by a seeded shuffle.
        """
        from agentopt.optimizer.tasks.files import task_from_rows

        numbered = ((f"row {i}", dict(row)) for i, row in enumerate(rows))
        return task_from_rows(numbered, inputs, target, resolve_metric(metric), name=name,
                              description=description or f"Task {name}", seed=seed, source="records")

    @classmethod
    def from_file(cls, path: str | Path, inputs: Sequence[str] = (INPUT,), target: str | Sequence[str] = "target",
                  metric: MetricSpec = "exact_match", *, name: str | None = None, description: str = "",
                  seed: int = 0) -> "Task":
        """A task from a ``.jsonl`` or ``.csv`` file with any column names."""
        from agentopt.optimizer.tasks import TaskFile
        from agentopt.optimizer.tasks.files import load_task_file

        entry = TaskFile(path=str(path), inputs=tuple(inputs), target=target if isinstance(target, str) else tuple(target),
                         name=name, description=description, metric=metric if isinstance(metric, str) else "exact_match")
        ref = entry.model_dump(exclude_defaults=True) if isinstance(metric, str) else None  # a function cannot be stored
        return load_task_file(path, metric, seed, inputs=inputs, target=target, name=name, description=description,
                              ref=ref)

    @classmethod
    def from_hf(cls, dataset: Any, inputs: Sequence[str], target: str | Sequence[str],
                metric: MetricSpec = "exact_match", *, name: str = "hf", description: str = "",
                seed: int = 0) -> "Task":
        """A task from a Hugging Face ``datasets.Dataset`` (optional: ``pip install 'agentopt[hf]'``)."""
        try:
            from datasets import Dataset
        except ImportError:
            raise TaskError("Task.from_hf needs the datasets package: pip install 'agentopt[hf]'") from None
        if not isinstance(dataset, Dataset):
            raise TaskError(f"Task.from_hf takes a datasets.Dataset (one split), not {type(dataset).__name__}")
        return cls.from_records(dataset, inputs, target, metric, name=name, description=description, seed=seed)

    @classmethod
    def builtin(cls, name: str, seed: int = 0) -> "Task":
        """A built-in task by name (``agentopt tasks list``)."""
        from agentopt.optimizer.tasks import load_task

        return load_task(name, seed)


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
