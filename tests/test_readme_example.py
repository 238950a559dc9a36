"""The README's "Use it from Python" examples, run exactly as written against the bundled model.

The code blocks are read out of README.md, so the examples users copy are the ones that pass here.
"""

import ast
import re
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

pytestmark = pytest.mark.local_model

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_example(heading: str = "## Use it from Python") -> str:
    section = README.read_text(encoding="utf-8").split(heading, 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def run_example(code: str, folder: Path) -> list[str]:
    (folder / "example.py").write_text(code)
    done = subprocess.run([sys.executable, "example.py"], cwd=folder, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.splitlines()


def test_the_readme_example_is_short_and_runs_on_the_bundled_model(tmp_path: Path) -> None:
    code = readme_example()
    assert len(code.strip().splitlines()) < 40, "the issue asks for a complete example under 40 lines"
    lines = run_example(code, tmp_path)
    assert re.fullmatch(r"test accuracy: seed prompt \d\.\d\d, best \d\.\d\d", lines[0]), lines
    assert lines[1].strip(), "best.run answered a new multi-field input"
    assert len(lines) == 5 and all(re.match(r"\d+ \d\.\d\d ", line) for line in lines[2:]), lines
    assert (tmp_path / "pets-agent" / "pyproject.toml").is_file() and (tmp_path / "pets-report" / "index.html").is_file()


def test_the_readme_langchain_example_hands_back_a_chain_that_answers_through_invoke_and_batch(
        tmp_path: Path) -> None:
    code = readme_example("### Your own LangChain chain or program")
    canned = re.search(r"FakeListChatModel\(responses=(\[.*?\])\)", code)
    assert canned, "the example's stand-in model"
    stand_in = ast.literal_eval(canned.group(1))
    lines = run_example(code, tmp_path)
    assert re.fullmatch(r"test accuracy: seed chain \d\.\d\d, best \d\.\d\d", lines[0]), lines
    one = ast.literal_eval(lines[1].removeprefix("invoke: "))
    assert lines[1].startswith("invoke: ") and one, lines
    batch = ast.literal_eval(lines[2].removeprefix("batch: "))
    assert isinstance(batch, list) and len(batch) == 2 and all(isinstance(a, str) and a for a in batch), lines
    # The stand-in model's canned sentence would satisfy every check above: the answers must come from
    # the task model, both for the chain handed back and for every example the campaign scored.
    assert not {one, *batch} & set(stand_in), f"the chain handed back still answers with its own model: {lines}"
    with closing(sqlite3.connect(tmp_path / "chain.db")) as db:
        rows = db.execute("SELECT split, output, llm_calls + cache_hits FROM results WHERE error IS NULL").fetchall()
    assert rows and not {output for _, output, _ in rows} & set(stand_in), "an answer came from the stand-in model"
    assert all(calls >= 2 for _, _, calls in rows), "both model steps of the chain went through the task model"
    assert len({output for split, output, _ in rows if split == "test"}) > 1, "the answers vary with the input"
    params = ast.literal_eval(lines[3])
    assert set(params) == {"p1.system", "p1.human", "p2.system", "p2.human"}
    assert "{evidence}" in params["p2.human"] and "{question}" in params["p2.human"], "variables are never lost"
