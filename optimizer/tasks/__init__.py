"""Task registry: built-in generated tasks by name, or a user's JSONL / CSV file by path or entry.

The package gathers its modules' names; none of them imports it back.
"""

from agentopt.optimizer.tasks.base import Task, builtin_tasks, load_task, load_task_file
from agentopt.optimizer.tasks.builtin import BUILTIN
from agentopt.optimizer.tasks.example import SPLITS, Example
from agentopt.optimizer.tasks.external import EXTERNAL
from agentopt.optimizer.tasks.metrics import METRICS, Metric, Score, get_metric, register_metric
from agentopt.optimizer.tasks.refs import Name, TaskFile, TaskRef
from agentopt.optimizer.tasks.scoring import resolve_metric

__all__ = ["BUILTIN", "EXTERNAL", "METRICS", "SPLITS", "Example", "Metric", "Name", "Score", "Task", "TaskFile",
           "TaskRef", "builtin_tasks", "get_metric", "load_task", "load_task_file", "register_metric", "resolve_metric"]
