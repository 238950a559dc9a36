"""Read a user's own task from a JSONL or CSV file, or from Python records, into split examples.

Each row needs the declared input fields (``input`` unless told otherwise) and the target field
(``target`` unless told otherwise): strings or finite numbers, none blank. A target may also be a
list of acceptable answers, or several target columns may be named (blank extra ones are skipped).
An optional ``split`` field (train / val / test) pins a row to a split; otherwise rows are split by
a seeded shuffle. Every input must appear once: a repeated input could sit in train and in test,
so the test score would reward memorising train; such a file is refused (not silently deduplicated),
because only its author knows which of the rows is right. Files are UTF-8 (a leading BOM, as
spreadsheets write it, is fine) without NUL bytes, and a field holds at most ``MAX_FIELD_CHARS``
(100,000) characters. Any bad row raises :class:`TaskError` naming the file and line (or the
record's index), so the user can fix it at once.
"""

import csv
import io
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from agentopt.agents.runtime.errors import AgentoptError
from agentopt.optimizer.tasks.errors import TaskError
from agentopt.agents.runtime.prompt_runtime import Inputs, input_text
from agentopt.optimizer.tasks.example import INPUT, SPLITS, Splits, example, split_examples

Row = tuple[str, dict[str, object]]
"""A raw row and where it came from ("data.jsonl:3", "row 2") for messages about it."""
MAX_FIELD_CHARS = 100_000
"""About 25,000 tokens, past the context of most task models: a longer field is a file mistake (a
whole document pasted into a cell, a runaway quote), and every prompt would carry it, paid per call."""


@dataclass(frozen=True)
class Parsed:
    """One validated row, with where it came from for messages about it."""

    where: str
    input: Inputs
    targets: tuple[str, ...]
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
        text = data.decode("utf-8").removeprefix("\ufeff")  # not utf-8-sig: its error offsets skip the BOM
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise error(f"{path}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x}); save the file as UTF-8") from None
    if (nul := data.find(b"\0")) >= 0:  # valid UTF-8, but no text holds it: UTF-16 without a BOM, or binary
        line = data.count(b"\n", 0, nul) + 1
        raise error(f"{path}:{line}: a NUL byte (0x00), which text never holds; is the file binary, or UTF-16? "
                    "save it as UTF-8 text")
    return text


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
            raise TaskError(f"{path}:{lineno}: expected a JSON object of fields")
        rows.append((f"{path}:{lineno}", row))
    return rows


def _csv_rows(path: Path, columns: Sequence[str]) -> list[Row]:
    reader = csv.DictReader(io.StringIO(read_utf8(path, TaskError), newline=""))
    try:
        missing = [c for c in columns if c not in (reader.fieldnames or ())]
        if missing:
            raise TaskError(f"{path}:1: CSV header lacks column(s) {', '.join(missing)}")
        return [(f"{path}:{reader.line_num}", dict(row)) for row in reader]
    except csv.Error as exc:  # the csv module's own cap on a field (131,072 characters) is above ours
        too_long = f"a field is longer than {MAX_FIELD_CHARS:,} characters" if "field limit" in str(exc) else exc
        raise TaskError(f"{path}:{reader.line_num + 1}: {too_long}") from None  # line_num: the rows read whole


def _text(where: str, name: str, value: object) -> str:
    """A field value as text; NaN, infinities and blanks are refused, since no answer can match them."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise TaskError(f"{where}: field {name!r} must be a string or number, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise TaskError(f"{where}: field {name!r} must be a finite number, got {value!r}")
    text = str(value)
    if not text.strip():
        raise TaskError(f"{where}: field {name!r} is empty")
    if len(text) > MAX_FIELD_CHARS:
        raise TaskError(f"{where}: field {name!r} is {len(text):,} characters; a field may have at most "
                        f"{MAX_FIELD_CHARS:,}")
    if "\0" in text:  # a JSON \u0000: PostgreSQL refuses it in text, and a C tokenizer stops at it
        raise TaskError(f"{where}: field {name!r} holds a NUL character (\\u0000)")
    return text


def _field(where: str, row: dict[str, object], name: str) -> str:
    if name not in row or row[name] is None:
        raise TaskError(f"{where}: field {name!r} is missing (fields: {', '.join(map(str, row)) or 'none'})")
    return _text(where, name, row[name])


def _targets(where: str, row: dict[str, object], names: Sequence[str]) -> tuple[str, ...]:
    """Every acceptable answer: the first target field must give one; later fields may be blank."""
    found: list[str] = []
    for n, name in enumerate(names):
        value = row.get(name)
        if n > 0 and (value is None or (isinstance(value, str) and not value.strip())):
            continue
        if isinstance(value, list):
            if not value:
                raise TaskError(f"{where}: field {name!r} is an empty list of answers")
            found += [_text(where, name, item) for item in value]
        else:
            found.append(_field(where, row, name))
    return tuple(dict.fromkeys(found))


def _parse(where: str, row: dict[str, object], inputs: Sequence[str], targets: Sequence[str]) -> Parsed:
    split = row.get("split") or None
    if split is not None and split not in SPLITS:
        raise TaskError(f"{where}: split must be one of {', '.join(SPLITS)}, got {split!r}")
    fields = {name: _field(where, row, name) for name in inputs}
    value: Inputs = fields[INPUT] if tuple(inputs) == (INPUT,) else fields
    return Parsed(where, value, _targets(where, row, targets), None if split is None else str(split))


def _shared_by(first: Parsed, again: Parsed) -> str:
    """What a repeated input would do to the splits, for the refusal message."""
    if first.split is None:
        return "train and test could share it"
    if first.split == again.split:
        return f"{first.split} would count it twice"
    return f"{first.split} and {again.split} would share it"


def _short(where: str) -> str:
    """'line 3' for 'data.jsonl:3' (the file is already named), else as it is ('row 3')."""
    line = where.rpartition(":")[2]
    return f"line {line}" if line.isdigit() else where


def _refuse_repeats(parsed: list[Parsed]) -> None:
    """Inputs are compared without surrounding whitespace, which no model tells apart."""
    seen: dict[str, Parsed] = {}
    for row in parsed:
        first = seen.setdefault(input_text(row.input).strip(), row)
        if first is not row:
            raise TaskError(f"{row.where}: repeats the input of {_short(first.where)} ({_shared_by(first, row)}); "
                            "each input may appear once")


def _pinned_splits(parsed: list[Parsed]) -> Splits:
    train, val, test = (tuple(example(f"{s}-{i}", p.input, p.targets) for i, p in enumerate(parsed) if p.split == s)
                        for s in SPLITS)
    return train, val, test


def _names(what: str, value: str | Sequence[str]) -> tuple[str, ...]:
    names = (value,) if isinstance(value, str) else tuple(value)
    if not names or not all(isinstance(n, str) and n for n in names):
        raise TaskError(f"{what} must name at least one field, got {value!r}")
    if what == "inputs" and len(names) > 1 and INPUT in names:
        raise TaskError(f"inputs: {INPUT!r} means the whole input in templates; rename that field")
    return names


def parse_rows(rows: Iterable[Row], inputs: Sequence[str], target: str | Sequence[str], *, seed: int,
               source: str) -> tuple[tuple[str, ...], Splits]:
    """The input field names and the examples, split: pinned by a ``split`` field, or by a seeded
    shuffle. Every row is validated first. The Task is built by :mod:`.base`, so this module, which
    :meth:`Task.from_records` and :meth:`Task.from_file` call, never imports it back."""
    input_names, target_names = _names("inputs", inputs), _names("target", target)
    parsed = [_parse(where, row, input_names, target_names) for where, row in rows]
    if not parsed:
        raise TaskError(f"{source}: no examples")
    pinned = sum(p.split is not None for p in parsed)
    if pinned and pinned != len(parsed):
        raise TaskError(f"{source}: either every row has a 'split' field or none does")
    _refuse_repeats(parsed)
    splits = _pinned_splits(parsed) if pinned else split_examples([(p.input, p.targets) for p in parsed], seed)
    return input_names, splits


def task_file(path: str | Path) -> Path:
    """``path`` when it is a file, checked before anything else about the task is."""
    path = Path(path)
    if path.is_dir():
        raise TaskError(f"task file {path} is a directory; name a .jsonl or .csv file in it")
    if not path.is_file():
        raise TaskError(f"task file not found: {path}")
    return path


def file_rows(path: Path, inputs: Sequence[str], target: str | Sequence[str]) -> list[Row]:
    """The raw rows of a ``.jsonl`` or ``.csv`` task file (a CSV header must hold the columns read)."""
    if path.suffix == ".jsonl":
        return _jsonl_rows(path)
    if path.suffix == ".csv":
        return _csv_rows(path, [*_names("inputs", inputs), _names("target", target)[0]])
    raise TaskError(f"{path}: unsupported task file type {path.suffix!r}; use .jsonl or .csv")
