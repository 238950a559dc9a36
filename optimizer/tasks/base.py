"""The Task noun: examples with fixed, seeded train / val / test splits and a metric, and how a
task is loaded: by name, from a file or from records.

Loading lives here, beside the class whose classmethods call it; the modules it draws on (the
examples, metrics, files and generators) return plain rows, splits and metrics and never import
a Task, so the tasks package imports in one direction. The example names are re-exported here,
where they were first defined.
"""

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from agentopt.optimizer.tasks.errors import TaskError
from agentopt.agents.runtime.prompt_runtime import Inputs
from agentopt.optimizer.tasks import scoring
from agentopt.optimizer.tasks.builtin import BUILTIN, builtin_splits
from agentopt.optimizer.tasks.example import INPUT, SPLITS, Example, Row, Splits, example, split_examples
from agentopt.optimizer.tasks.external import EXTERNAL
from agentopt.optimizer.tasks.files import file_rows, parse_rows, task_file
from agentopt.optimizer.tasks.metrics import BestMatch, Judged, Metric, MetricFailed, Score
from agentopt.optimizer.tasks.refs import TaskFile, TaskRef
from agentopt.optimizer.tasks.scoring import resolve_metric

MetricSpec = str | Metric | Callable[..., Any]
"""A built-in metric's name, ``module:function``, ``judge``, a metric object or a plain function."""


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
        numbered = ((f"row {i}", dict(row)) for i, row in enumerate(rows))
        return _from_rows(numbered, inputs, target, resolve_metric(metric), name=name,
                          description=description or f"Task {name}", seed=seed, source="records")

    @classmethod
    def from_file(cls, path: str | Path, inputs: Sequence[str] = (INPUT,), target: str | Sequence[str] = "target",
                  metric: MetricSpec = "exact_match", *, name: str | None = None, description: str = "",
                  seed: int = 0) -> "Task":
        """A task from a ``.jsonl`` or ``.csv`` file with any column names."""
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
        return load_task(name, seed)


def preflight(task: Task) -> None:
    """Score the first train example's own answer with a user's metric before anything is paid, so
    a metric that returns NaN or a string stops the run now, not after a model was started. Its
    failing on that answer is allowed (it may expect real predictions); only a non-score stops.
    Built-in metrics are trusted, and a judge would cost a call."""
    if not isinstance(task.metric, BestMatch | Judged):
        example = task.train[0]
        try:
            scoring.score(task.metric, example, example.target)
        except MetricFailed:
            pass


def builtin_tasks() -> list[str]:
    """Every task loadable by name (``agentopt tasks list``); the external ones need the ``adas`` extra."""
    return sorted([*BUILTIN, *EXTERNAL])


def load_task(ref: TaskRef, seed: int = 0) -> Task:
    """Resolve ``ref``: a built-in task name, a path ending in ``.jsonl`` / ``.csv``, or a task file entry."""
    if not isinstance(ref, str):
        try:
            entry = TaskFile.model_validate(ref)
        except ValidationError as exc:
            err = exc.errors()[0]
            raise TaskError(f"task entry {'.'.join(map(str, err['loc']))}: {err['msg']}") from None
        return load_task_file(entry.path, resolve_metric(entry.metric, entry.rubric), seed, entry.inputs, entry.target,
                              entry.name, entry.description, ref=entry.model_dump(exclude_defaults=True))
    if ref.endswith((".jsonl", ".csv")):
        return load_task_file(ref, seed=seed)
    if ref in EXTERNAL:
        spec = EXTERNAL[ref]
        splits = split_examples(spec.rows(seed), seed)
        task = Task(ref, spec.description, resolve_metric(spec.metric), *splits, source=spec.source)
    elif ref in BUILTIN:
        task = Task(ref, BUILTIN[ref].description, resolve_metric(BUILTIN[ref].metric), *builtin_splits(ref, seed))
    elif Path(ref).is_dir():
        raise TaskError(f"task {ref!r} is a directory; name a .jsonl or .csv file in it")
    else:
        known = ", ".join(builtin_tasks())
        raise TaskError(f"unknown task {ref!r}; built-in tasks: {known} (or a .jsonl/.csv path)")
    return replace(task, ref=ref, seed=seed)


def load_task_file(path: str | Path, metric: MetricSpec = "exact_match", seed: int = 0,
                   inputs: Sequence[str] = (INPUT,), target: str | Sequence[str] = "target",
                   name: str | None = None, description: str = "",
                   ref: str | dict[str, object] | None = "") -> Task:
    """Read ``path`` (``.jsonl`` or ``.csv``) into a Task named after the file; ``ref`` is how a
    campaign loads it again (default: the path, which holds for default columns and metric)."""
    path = task_file(path)
    resolved = resolve_metric(metric)
    return _from_rows(file_rows(path, inputs, target), inputs, target, resolved, name=name or path.stem,
                      description=description or f"User task from {path.name}", seed=seed, source=str(path),
                      ref=str(path) if ref == "" else ref)


def _from_rows(rows: Iterable[tuple[str, dict[str, object]]], inputs: Sequence[str], target: str | Sequence[str],
               metric: Metric, *, name: str, description: str, seed: int, source: str,
               ref: str | dict[str, object] | None = None) -> Task:
    """A Task of validated rows (see :func:`.files.parse_rows`), each named by where it came from."""
    input_names, splits = parse_rows(rows, inputs, target, seed=seed, source=source)
    return Task(name, description, metric, *splits, source=source, inputs=input_names, ref=ref, seed=seed)


__all__ = ["INPUT", "SPLITS", "Example", "MetricSpec", "Row", "Splits", "Task", "builtin_tasks", "example",
           "load_task", "load_task_file", "preflight", "split_examples"]
