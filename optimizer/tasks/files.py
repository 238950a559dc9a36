"""Load a user's own task from a JSONL or CSV file.

Each row needs an ``input`` and a ``target`` field (string or number). An optional ``split``
field (train / val / test) pins a row to a split; otherwise rows are split by a seeded shuffle.
Any bad row raises :class:`TaskError` naming the file and line, so the user can fix it at once.
"""

import csv
import json
from pathlib import Path

from agentopt.agents.errors import TaskError
from agentopt.optimizer.tasks.base import SPLITS, Example, Task, split_examples
from agentopt.optimizer.tasks.metrics import get_metric

Row = tuple[int, dict[str, object]]


def _jsonl_rows(path: Path) -> list[Row]:
    rows = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TaskError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise TaskError(f"{path}:{lineno}: expected a JSON object with 'input' and 'target'")
        rows.append((lineno, row))
    return rows


def _csv_rows(path: Path) -> list[Row]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {"input", "target"} - set(reader.fieldnames or ())
        if missing:
            raise TaskError(f"{path}:1: CSV header lacks column(s) {', '.join(sorted(missing))}")
        return [(reader.line_num, dict(row)) for row in reader]


def _field(path: Path, lineno: int, row: dict[str, object], name: str) -> str:
    value = row.get(name)
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise TaskError(f"{path}:{lineno}: field {name!r} must be a string or number, got {value!r}")
    return str(value)


def load_task_file(path: str | Path, metric: str = "exact_match", seed: int = 0) -> Task:
    """Read ``path`` (``.jsonl`` or ``.csv``) into a Task named after the file."""
    path = Path(path)
    if not path.is_file():
        raise TaskError(f"task file not found: {path}")
    get_metric(metric)
    readers = {".jsonl": _jsonl_rows, ".csv": _csv_rows}
    if path.suffix not in readers:
        raise TaskError(f"{path}: unsupported task file type {path.suffix!r}; use .jsonl or .csv")
    rows = readers[path.suffix](path)
    pairs, pinned = [], {}
    for lineno, row in rows:
        pairs.append((_field(path, lineno, row, "input"), _field(path, lineno, row, "target")))
        if row.get("split"):
            if row["split"] not in SPLITS:
                raise TaskError(f"{path}:{lineno}: split must be one of {', '.join(SPLITS)}, got {row['split']!r}")
            pinned[len(pairs) - 1] = str(row["split"])
    if pinned and len(pinned) != len(pairs):
        raise TaskError(f"{path}: either every row has a 'split' field or none does")
    if pinned:
        splits = tuple(
            tuple(Example(f"{s}-{i}", *pairs[i]) for i, name in pinned.items() if name == s) for s in SPLITS
        )
    else:
        splits = split_examples(pairs, seed)
    return Task(path.stem, f"User task from {path.name}", metric, *splits, source=str(path))
