"""Load a user's own task from a JSONL or CSV file.

Each row needs an ``input`` and a ``target`` field (string or finite number; neither may be blank).
An optional ``split`` field (train / val / test) pins a row to a split; otherwise rows are split by
a seeded shuffle. Every input must appear once: a repeated input could sit in train and in test,
so the test score would reward memorising train; such a file is refused (not silently deduplicated),
because only its author knows which of the rows is right. Files are UTF-8 (a leading BOM, as
spreadsheets write it, is fine). Any bad row raises :class:`TaskError` naming the file and line, so
the user can fix it at once.
"""

import csv
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path

from agentopt.agents.errors import AgentoptError, TaskError
from agentopt.optimizer.tasks.base import SPLITS, Example, Task, split_examples
from agentopt.optimizer.tasks.metrics import get_metric

Row = tuple[int, dict[str, object]]


@dataclass(frozen=True)
class Parsed:
    """One validated row, with the line it came from for messages about it."""

    line: int
    input: str
    target: str
    split: str | None


def read_utf8(path: Path, error: type[AgentoptError]) -> str:
    """The file's text without a BOM; anything else raises ``error`` naming the path (and line).

    Files exported from spreadsheets are often Latin-1 or start with a BOM; both would otherwise
    surface as a bare UnicodeDecodeError or a header that seems to lack its first column.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise error(f"{path}: cannot read it ({exc.strerror})") from None
    try:
        return data.decode("utf-8").removeprefix("\ufeff")  # not utf-8-sig: its error offsets skip the BOM
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise error(f"{path}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x}); save the file as UTF-8") from None


def _jsonl_rows(path: Path) -> list[Row]:
    rows = []
    for lineno, line in enumerate(read_utf8(path, TaskError).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:  # JSONDecodeError, or an integer too long to convert
            raise TaskError(f"{path}:{lineno}: not valid JSON ({getattr(exc, 'msg', exc)})") from None
        if not isinstance(row, dict):
            raise TaskError(f"{path}:{lineno}: expected a JSON object with 'input' and 'target'")
        rows.append((lineno, row))
    return rows


def _csv_rows(path: Path) -> list[Row]:
    reader = csv.DictReader(io.StringIO(read_utf8(path, TaskError), newline=""))
    missing = {"input", "target"} - set(reader.fieldnames or ())
    if missing:
        raise TaskError(f"{path}:1: CSV header lacks column(s) {', '.join(sorted(missing))}")
    return [(reader.line_num, dict(row)) for row in reader]


def _field(path: Path, lineno: int, row: dict[str, object], name: str) -> str:
    """The field as text; NaN, infinities and blanks are refused, since no answer can match them."""
    value = row.get(name)
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise TaskError(f"{path}:{lineno}: field {name!r} must be a string or number, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise TaskError(f"{path}:{lineno}: field {name!r} must be a finite number, got {value!r}")
    if not str(value).strip():
        raise TaskError(f"{path}:{lineno}: field {name!r} is empty")
    return str(value)


def _parse(path: Path, lineno: int, row: dict[str, object]) -> Parsed:
    split = row.get("split") or None
    if split is not None and split not in SPLITS:
        raise TaskError(f"{path}:{lineno}: split must be one of {', '.join(SPLITS)}, got {split!r}")
    return Parsed(lineno, _field(path, lineno, row, "input"), _field(path, lineno, row, "target"),
                  None if split is None else str(split))


def _shared_by(first: Parsed, again: Parsed) -> str:
    """What a repeated input would do to the splits, for the refusal message."""
    if first.split is None:
        return "train and test could share it"
    if first.split == again.split:
        return f"{first.split} would count it twice"
    return f"{first.split} and {again.split} would share it"


def _refuse_repeats(path: Path, parsed: list[Parsed]) -> None:
    """Inputs are compared without surrounding whitespace, which no model tells apart."""
    seen: dict[str, Parsed] = {}
    for row in parsed:
        first = seen.setdefault(row.input.strip(), row)
        if first is not row:
            raise TaskError(f"{path}:{row.line}: repeats the input of line {first.line} ({_shared_by(first, row)}); "
                            "each input may appear once")


def _pinned_splits(parsed: list[Parsed]) -> tuple[tuple[Example, ...], ...]:
    return tuple(tuple(Example(f"{s}-{i}", p.input, p.target) for i, p in enumerate(parsed) if p.split == s)
                 for s in SPLITS)


def load_task_file(path: str | Path, metric: str = "exact_match", seed: int = 0) -> Task:
    """Read ``path`` (``.jsonl`` or ``.csv``) into a Task named after the file."""
    path = Path(path)
    if not path.is_file():
        raise TaskError(f"task file not found: {path}")
    get_metric(metric)
    readers = {".jsonl": _jsonl_rows, ".csv": _csv_rows}
    if path.suffix not in readers:
        raise TaskError(f"{path}: unsupported task file type {path.suffix!r}; use .jsonl or .csv")
    parsed = [_parse(path, lineno, row) for lineno, row in readers[path.suffix](path)]
    pinned = sum(p.split is not None for p in parsed)
    if pinned and pinned != len(parsed):
        raise TaskError(f"{path}: either every row has a 'split' field or none does")
    _refuse_repeats(path, parsed)
    if pinned:
        splits = _pinned_splits(parsed)
    else:
        splits = split_examples([(p.input, p.target) for p in parsed], seed)
    return Task(path.stem, f"User task from {path.name}", metric, *splits, source=str(path))
