"""How a config names a task: a built-in name, a task file's path, or a :class:`TaskFile` entry.

Plain pydantic models with no loader behind them, so both the config and :meth:`Task.from_file`
(which stores the entry that loads its task again) can use them without importing the loaders.
"""

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError


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
