"""The README's "Use it from Python" example, run exactly as written against the bundled model.

The code block is read out of README.md, so the example users copy is the one that passes here.
"""

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.local_model

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_example() -> str:
    section = README.read_text(encoding="utf-8").split("## Use it from Python", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_readme_example_is_short_and_runs_on_the_bundled_model(tmp_path: Path) -> None:
    code = readme_example()
    assert len(code.strip().splitlines()) < 40, "the issue asks for a complete example under 40 lines"
    (tmp_path / "example.py").write_text(code)
    done = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert re.fullmatch(r"test accuracy: seed prompt \d\.\d\d, best \d\.\d\d", lines[0]), lines
    assert lines[1].strip(), "best.run answered a new multi-field input"
    assert len(lines) == 5 and all(re.match(r"\d+ \d\.\d\d ", line) for line in lines[2:]), lines
    assert (tmp_path / "pets-agent" / "pyproject.toml").is_file() and (tmp_path / "pets-report" / "index.html").is_file()
