"""Bad input through the real CLI: every case is one ``error:`` line naming the file (and line), exit
code 2, and nothing written: no archive created or touched, no output folder made or left half-made.

The cases run the CLI's own entry point in this process (:func:`processes.cli`): a refusal depends on
nothing a separate process would change, and each child would pay seconds of imports. One case goes
through the installed ``agentopt`` in a child as well, so the exit code a shell sees is checked too.
"""

import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

import pytest
from fakes import FakeEndpoint
from processes import agentopt, cli
from test_export import archived, first_word

MORE_JSONL = b'{"input": "f", "target": "g"}\n{"input": "h", "target": "i"}\n'  # enough rows but for the bad one
TASK_FILES: dict[str, tuple[bytes, str]] = {
    "latin1.jsonl": (b'{"input": "a", "target": "b"}\n{"input": "caf\xe9", "target": "c"}\n',
                     "latin1.jsonl:2: not UTF-8 text (byte 0xe9)"),
    "nan.jsonl": (b'{"input": "a", "target": "b"}\n{"input": "c", "target": NaN}\n',
                  "nan.jsonl:2: field 'target' must be a finite number, got nan"),
    "inf.jsonl": (b'{"input": "a", "target": -Infinity}\n', "inf.jsonl:1: field 'target' must be a finite number"),
    "empty_input.jsonl": (b'{"input": "a", "target": "b"}\n\n{"input": "  ", "target": "c"}\n',
                          "empty_input.jsonl:3: field 'input' is empty"),
    "empty_target.csv": (b"input,target\na,b\nc,\n", "empty_target.csv:3: field 'target' is empty"),
    "not_text.jsonl": (b'{"input": "a", "target": true}\n',
                       "not_text.jsonl:1: field 'target' must be a string or number"),
    "repeat.jsonl": (b'{"input": "a", "target": "1"}\n{"input": "b", "target": "2"}\n{"input": "a ", "target": "3"}\n',
                     "repeat.jsonl:3: repeats the input of line 1 (train and test could share it)"),
    "repeat_pinned.csv": (b"input,target,split\na,1,train\nb,2,val\nc,3,test\na,1,test\n",
                          "repeat_pinned.csv:5: repeats the input of line 2 (train and test would share it)"),
    "repeat_in_split.csv": (b"input,target,split\na,1,train\nb,2,val\nc,3,test\nb,2,val\n",
                            "repeat_in_split.csv:5: repeats the input of line 3 (val would count it twice)"),
    "nul.csv": (b"input,target\na,b\nc\x00d,e\nf,g\nh,i\n", "nul.csv:3: a NUL byte (0x00), which text never holds"),
    "nul_escaped.jsonl": (b'{"input": "a", "target": "b"}\n{"input": "c\\u0000d", "target": "e"}\n' + MORE_JSONL,
                          "nul_escaped.jsonl:2: field 'input' holds a NUL character"),
    "huge.jsonl": (b'{"input": "a", "target": "b"}\n{"input": "' + b"x" * 1_000_000 + b'", "target": "c"}\n' + MORE_JSONL,
                   "huge.jsonl:2: field 'input' is 1,000,000 characters; a field may have at most 100,000"),
    "long.csv": (b"input,target\na,b\nc," + b"y" * 100_001 + b"\nf,g\nh,i\n",
                 "long.csv:3: field 'target' is 100,001 characters; a field may have at most 100,000"),
    "huge.csv": (b"input,target\na,b\n" + b"x" * 1_000_000 + b",c\nf,g\nh,i\n",
                 "huge.csv:3: a field is longer than 100,000 characters"),
}


def snapshot(root: Path) -> dict[Path, tuple[int, int, bytes]]:
    """Every path under ``root`` (itself included) with its size, mtime and, for files, contents."""
    return {p: (p.stat().st_size, p.stat().st_mtime_ns, p.read_bytes() if p.is_file() else b"")
            for p in (root, *root.rglob("*"))}


@contextmanager
def nothing_written(root: Path) -> Iterator[None]:
    before = snapshot(root)
    yield
    assert snapshot(root) == before, "a refused command must not create, change or leave anything"


def assert_refused(result: CompletedProcess[str], *needles: str) -> str:
    """Exit 2 and one stderr line ``error: ...`` holding each of ``needles``; returns the line."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert all(needle in lines[0] for needle in needles), (needles, lines[0])
    return lines[0]


@pytest.mark.parametrize("name", sorted(TASK_FILES))
def test_bad_task_file_names_its_line_and_creates_no_archive(tmp_path: Path, name: str) -> None:
    content, message = TASK_FILES[name]
    (tmp_path / name).write_bytes(content)
    (tmp_path / "c.yaml").write_text(f"tasks: [{name}]\n")
    with nothing_written(tmp_path):
        assert_refused(cli("run", "c.yaml", "--db", "new.db", cwd=tmp_path), "c.yaml: ", message)


def test_csv_with_a_byte_order_mark_loads(tmp_path: Path) -> None:
    (tmp_path / "bom.csv").write_bytes(b"\xef\xbb\xbfinput,target\nalpha,A\nbeta,B\ngamma,C\ndelta,D\n")
    (tmp_path / "c.yaml").write_text("tasks: [bom.csv]\n")
    done = cli("run", "c.yaml", "--dry-run", cwd=tmp_path)
    assert done.returncode == 0 and "Dry run" in done.stdout, done.stderr


@pytest.mark.parametrize(("role", "message"), [
    ("{model: m, base_url: notaurl}", "models.task.base_url: must be an http(s) URL with a host"),
    ("{model: m, endpoints: [{base_url: 'http://'}]}", "models.task.endpoints.0.base_url: must be an http(s) URL"),
    ("{model: m, base_url: 'ftp://host/v1'}", "got 'ftp://host/v1'"),
])
def test_base_url_must_be_an_http_url(tmp_path: Path, role: str, message: str) -> None:
    (tmp_path / "c.yaml").write_text(f"tasks: [antonyms]\nmodels: {{task: {role}}}\n")
    with nothing_written(tmp_path):
        assert_refused(cli("run", "c.yaml", "--db", "new.db", cwd=tmp_path), "c.yaml: ", message)


def test_huge_config_is_refused_at_once(tmp_path: Path) -> None:
    demos = "".join(f"    - {{input: 'word number {i} here', output: 'answer {i}'}}\n" for i in range(220_000))
    (tmp_path / "big.yaml").write_text(f"tasks: [antonyms]\nseed_agent:\n  demos:\n{demos}")
    assert (tmp_path / "big.yaml").stat().st_size > 14_000_000
    with nothing_written(tmp_path):
        started = time.monotonic()
        done = cli("run", "big.yaml", "--db", "new.db", cwd=tmp_path)
        assert time.monotonic() - started < 20, "refused from the file size, before parsing"
    assert_refused(done, "big.yaml: 13.", "MiB is more than a config may be (1 MiB)")


def test_config_that_is_not_utf8_names_its_line(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_bytes(b"tasks: [antonyms]\nname: caf\xe9\n")
    with nothing_written(tmp_path):
        assert_refused(cli("run", "c.yaml", cwd=tmp_path), "c.yaml:2: not UTF-8 text (byte 0xe9)")


@pytest.mark.slow
def test_a_refusal_exits_2_from_the_installed_command(tmp_path: Path) -> None:
    """The exit code a shell sees, through the console script in a child of its own."""
    (tmp_path / "c.yaml").write_bytes(b"tasks: [antonyms]\nname: caf\xe9\n")
    with nothing_written(tmp_path):
        assert_refused(agentopt("run", "c.yaml", cwd=tmp_path), "c.yaml:2: not UTF-8 text (byte 0xe9)")


def _foreign_sqlite(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("create table notes (text)")
    conn.close()


NOT_ARCHIVES = {
    "empty.db": (lambda p: p.write_bytes(b""), "is an empty file, not an archive"),
    "text.db": (lambda p: p.write_text("my notes\n"), "is not an agentopt archive: not a SQLite database"),
    "foreign.db": (_foreign_sqlite, "is a SQLite database but not an agentopt archive"),
    "folder.db": (lambda p: p.mkdir(), "is a directory, not an archive file"),
}
MUST_EXIST = [["archive", "top"], ["archive", "campaigns"], ["archive", "show", "1"], ["archive", "upgrade"],
              ["status", "c1"], ["resume", "c1"]]


@pytest.mark.parametrize("name", sorted(NOT_ARCHIVES))
@pytest.mark.parametrize("command", MUST_EXIST, ids=" ".join)
def test_commands_on_an_existing_archive_refuse_what_is_not_one(tmp_path: Path, name: str,
                                                                command: list[str]) -> None:
    make, message = NOT_ARCHIVES[name]
    make(tmp_path / name)
    with nothing_written(tmp_path):
        assert_refused(cli(*command, "--db", name, cwd=tmp_path), f"{name} {message}")


@pytest.mark.parametrize("name", ["folder.db", "text.db", "foreign.db"])
def test_run_refuses_an_archive_path_that_is_not_one_before_starting_anything(tmp_path: Path, name: str) -> None:
    """The path is checked first: the endpoint below is unreachable, so a later check would say that."""
    make, message = NOT_ARCHIVES[name]
    make(tmp_path / name)
    (tmp_path / "c.yaml").write_text("tasks: [antonyms]\nmodels:\n  task: {model: m, base_url: 'http://127.0.0.1:9/v1'}\n"
                                     "  proposer: {model: m, base_url: 'http://127.0.0.1:9/v1'}\n")
    with nothing_written(tmp_path):
        assert_refused(cli("run", "c.yaml", "--db", name, cwd=tmp_path), f"{name} {message}")


@pytest.fixture
def scored(tmp_path: Path, echo_task_file: Path) -> Iterator[tuple[Path, int, str]]:
    """An archive with one scored prompt candidate, in a folder of its own: (db, candidate id, campaign id)."""
    (tmp_path / "archive").mkdir()
    endpoint = FakeEndpoint(first_word)
    try:
        db, candidate = archived(tmp_path / "archive", endpoint, echo_task_file, "prompt")
    finally:
        endpoint.close()
    with sqlite3.connect(db) as conn:
        [(campaign,)] = conn.execute("select campaign_id from candidates where id = ?", (candidate,)).fetchall()
    conn.close()
    yield db, candidate, campaign


OUT_PATHS: dict[str, tuple[Any, str]] = {
    "a file": (lambda tmp: tmp / "taken.txt", "it is a file, not a folder"),
    "under a file": (lambda tmp: tmp / "taken.txt" / "pkg", "taken.txt is a file, not a folder"),
    "under /proc": (lambda tmp: Path(f"/proc/agentopt-{os.getpid()}/out"), "cannot make a folder in /proc"),
}


@pytest.mark.parametrize("where", sorted(OUT_PATHS))
@pytest.mark.parametrize("command", ["export", "report"])
def test_output_folder_that_cannot_be_written(tmp_path: Path, scored: tuple[Path, int, str], command: str,
                                              where: str) -> None:
    db, candidate, campaign = scored
    work = tmp_path / "work"
    work.mkdir()
    (work / "taken.txt").write_text("mine")
    pick, message = OUT_PATHS[where]
    out = pick(work)
    with nothing_written(work):
        done = cli(command, str(candidate if command == "export" else campaign), "--out", str(out),
                        "--db", str(db))
    assert_refused(done, f"cannot write {out}: ", message)
    assert out.is_file() or not out.exists(), "no folder was made"


BAD_CONFIGS = {
    "duplicate key": ("tasks: [antonyms]\nbudget: {task_calls: 100}\nseed: 1\nbudget: {proposer_calls: 5}\n",
                      "c.yaml:4: key 'budget' is given twice in one mapping (first on line 2)"),
    "nested duplicate key": ("tasks: [antonyms]\nmodels:\n  task: local\n  proposer: local\n  task: local\n",
                             "c.yaml:5: key 'task' is given twice in one mapping (first on line 3)"),
    "flow duplicate key": ("tasks: [antonyms]\nevaluation: {backend: threads, backend: ray}\n",
                           "c.yaml:2: key 'backend' is given twice"),
    "empty name": ("name: ''\ntasks: [antonyms]\n", "c.yaml: name: is empty; leave it out to use the default"),
    "blank name": ("name: '   '\ntasks: [antonyms]\n", "c.yaml: name: is empty"),
    "long name": (f"name: {'n' * 201}\ntasks: [antonyms]\n", "c.yaml: name: String should have at most 200"),
    "empty task name": ("tasks: [{path: t.jsonl, name: ''}]\n", "c.yaml: tasks.0.file.name: is empty"),
    "task folder": ("tasks: [data]\n", "c.yaml: task 'data' is a directory; name a .jsonl or .csv file in it"),
    "task folder with a suffix": ("tasks: [folder.jsonl]\n", "c.yaml: task file folder.jsonl is a directory"),
}


@pytest.mark.parametrize("name", sorted(BAD_CONFIGS))
def test_bad_config_is_one_line_and_writes_nothing(tmp_path: Path, name: str) -> None:
    text, message = BAD_CONFIGS[name]
    (tmp_path / "c.yaml").write_text(text)
    (tmp_path / "t.jsonl").write_text("".join(f'{{"input": "w{i}", "target": "w{i}"}}\n' for i in range(6)))
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "t.jsonl").write_text("")
    (tmp_path / "folder.jsonl").mkdir()
    with nothing_written(tmp_path):
        assert_refused(cli("run", "c.yaml", "--db", "new.db", cwd=tmp_path), message)


def test_yaml_merge_keys_may_still_be_overridden(tmp_path: Path) -> None:
    """A `<<` merge is how YAML shares settings: overriding a merged key is its point, not a duplicate."""
    (tmp_path / "c.yaml").write_text("tasks: [antonyms]\nmodels:\n  task: &m {model: local, max_tokens: 8}\n"
                                     "  proposer: {<<: *m, max_tokens: 16}\n")
    done = cli("run", "c.yaml", "--dry-run", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(("text", "message"), [
    ("tasks: [antonyms]\nmatrix: {seeds: [0, 1]}\nmatrix: {seeds: [2]}\n",
     "s.yaml:3: key 'matrix' is given twice in one mapping (first on line 2)"),
    ("name: ''\ntasks: [antonyms]\nmatrix: {seeds: [0, 1]}\n", "s.yaml: name: is empty"),
])
def test_bad_sweep_file_is_one_line_and_writes_nothing(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "s.yaml").write_text(text)
    with nothing_written(tmp_path):
        assert_refused(cli("sweep", "s.yaml", "--db", "new.db", cwd=tmp_path), message)
