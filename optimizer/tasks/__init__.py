"""Task registry: built-in generated tasks by name, or a user's JSONL / CSV file by path."""

from agentopt.agents.errors import TaskError
from agentopt.optimizer.tasks.base import SPLITS, Example, Task
from agentopt.optimizer.tasks.builtin import BUILTIN, make_builtin
from agentopt.optimizer.tasks.external import EXTERNAL
from agentopt.optimizer.tasks.files import load_task_file
from agentopt.optimizer.tasks.metrics import METRICS, get_metric


def load_task(ref: str, seed: int = 0, metric: str | None = None) -> Task:
    """Resolve ``ref``: a built-in task name, or a path ending in ``.jsonl`` / ``.csv``."""
    if ref.endswith((".jsonl", ".csv")):
        return load_task_file(ref, metric=metric or "exact_match", seed=seed)
    if ref in EXTERNAL:
        return EXTERNAL[ref](seed)
    if ref not in BUILTIN:
        known = ", ".join(sorted([*BUILTIN, *EXTERNAL]))
        raise TaskError(f"unknown task {ref!r}; built-in tasks: {known} (or a .jsonl/.csv path)")
    return make_builtin(ref, seed)


__all__ = ["BUILTIN", "EXTERNAL", "METRICS", "SPLITS", "Example", "Task", "get_metric", "load_task", "load_task_file"]
