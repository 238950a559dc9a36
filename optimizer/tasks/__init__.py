"""Task registry: built-in generated tasks by name, or a user's JSONL / CSV file by path or entry."""

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import PydanticCustomError

from agentopt.agents.errors import TaskError
from agentopt.optimizer.tasks.base import SPLITS, Example, Task
from agentopt.optimizer.tasks.builtin import BUILTIN, make_builtin
from agentopt.optimizer.tasks.external import EXTERNAL
from agentopt.optimizer.tasks.files import load_task_file
from agentopt.optimizer.tasks.metrics import METRICS, Metric, Score, get_metric, register_metric
from agentopt.optimizer.tasks.scoring import resolve_metric


def _not_blank(value: str) -> str:
    if not value.strip():
        raise PydanticCustomError("blank_name", "is empty; leave it out to use the default")
    return value


Name = Annotated[str, Field(max_length=200), AfterValidator(_not_blank)]
"""A campaign's or task's name: every table shows it (a blank one leaves a row nobody can pick out),
and the archive stores it in 200 characters."""


class TaskFile(BaseModel):
    """A task file entry in a config: which columns are the inputs and the answer, and the metric."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str = Field(min_length=1, description=".jsonl or .csv file")
    inputs: tuple[str, ...] = Field(("input",), min_length=1, description="fields the agent reads")
    target: str | tuple[str, ...] = Field("target", description="answer field, or several (any acceptable)")
    metric: str = Field("exact_match", description="built-in name, module:function, or judge")
    rubric: str | None = Field(None, description="what the judge checks (metric: judge)")
    name: Name | None = Field(None, description="task name (default: the file's stem)")
    description: str = ""


TaskRef = str | Mapping[str, Any]
"""How a config names a task: a built-in name, a .jsonl/.csv path, or a :class:`TaskFile` mapping."""


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
        task = EXTERNAL[ref](seed)
    elif ref in BUILTIN:
        task = make_builtin(ref, seed)
    elif Path(ref).is_dir():
        raise TaskError(f"task {ref!r} is a directory; name a .jsonl or .csv file in it")
    else:
        known = ", ".join(builtin_tasks())
        raise TaskError(f"unknown task {ref!r}; built-in tasks: {known} (or a .jsonl/.csv path)")
    return replace(task, ref=ref, seed=seed)


__all__ = ["BUILTIN", "EXTERNAL", "METRICS", "SPLITS", "Example", "Metric", "Name", "Score", "Task", "TaskFile",
           "TaskRef", "builtin_tasks", "get_metric", "load_task", "load_task_file", "register_metric", "resolve_metric"]
