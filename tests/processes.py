"""Helpers for tests that start ``agentopt`` or model servers as real processes and stop them."""

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

AGENTOPT = str(Path(sys.executable).parent / "agentopt")


def agentopt(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
             timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """Run the installed CLI; ``env`` is added to this process's environment."""
    return subprocess.run([AGENTOPT, *args], capture_output=True, text=True, cwd=cwd, timeout=timeout,
                          env={**os.environ, **(env or {})})


def pids_running(*needles: str) -> set[int]:
    """Processes whose command line has each of ``needles`` as a word, or as a word's file name."""
    found = set()
    for proc in Path("/proc").iterdir():
        try:
            words = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        names = set(words) | {os.path.basename(w) for w in words}
        if proc.name.isdigit() and all(n in names for n in needles):
            found.add(int(proc.name))
    return found


def wait_until(predicate: Callable[[], bool], timeout: float = 120.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def stored_results(db: Path) -> int:
    try:
        with sqlite3.connect(db) as conn:
            return int(conn.execute("select count(*) from results").fetchone()[0])
    except sqlite3.Error:
        return 0


def interrupt_campaign(config: Path, db: Path, after_results: int, timeout: float) -> None:
    """``agentopt run CONFIG``, Ctrl-C once ``after_results`` results are stored, and check that it
    stopped as a user expects: exit 130, a message instead of a traceback, the campaign marked."""
    proc = subprocess.Popen([AGENTOPT, "run", str(config), "--db", str(db)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert wait_until(lambda: stored_results(db) >= after_results, timeout), "the campaign never got going"
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and "Traceback" not in stderr
    assert "interrupted: every finished result and LLM call is kept" in stderr
    with sqlite3.connect(db) as conn:
        assert conn.execute("select status from campaigns").fetchall() == [("interrupted",)]
    assert stored_results(db) >= after_results
