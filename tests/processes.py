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


def install_exported(package_dir: Path, workdir: Path, base_url: str) -> dict[str, subprocess.CompletedProcess[str]]:
    """Build an exported package's wheel, install it with pytest into a fresh virtualenv and, from
    outside the source tree, run the package's own regression test, its ``--check`` and one answer.
    Only ``PATH`` and the endpoint reach the package: nothing of this environment leaks in."""
    import venv

    def run(*cmd: str | Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=900, **kwargs)  # type: ignore[call-overload]

    wheels, env_dir = workdir / "wheels", workdir / "venv"
    steps = {"wheel": run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", wheels, package_dir)}
    if steps["wheel"].returncode:
        return steps
    venv.create(env_dir, with_pip=True)
    steps["install"] = run(env_dir / "bin" / "pip", "install", "-q", *wheels.glob("*.whl"), "pytest")
    if steps["install"].returncode:
        return steps
    dist = next(wheels.glob("*.whl")).name.split("-")[0]
    env = {"PATH": os.environ["PATH"], "AGENTOPT_BASE_URL": base_url}
    steps["where"] = run(env_dir / "bin" / "python", "-c", f"import {dist}; print({dist}.__file__)", cwd=workdir, env=env)
    steps["pytest"] = run(env_dir / "bin" / "pytest", "-q", "-s", "-p", "no:cacheprovider", package_dir / "tests",
                          cwd=workdir, env=env)
    steps["check"] = run(env_dir / "bin" / dist.replace("_", "-"), "--check", cwd=workdir, env=env)
    return steps


def assert_installed_and_replayed(steps: dict[str, subprocess.CompletedProcess[str]]) -> None:
    """Every step of :func:`install_exported` passed, on the installed copy of the package."""
    for name, step in steps.items():
        assert step.returncode == 0, f"{name}: {step.stdout[-2000:]}{step.stderr[-2000:]}"
    assert "site-packages" in steps["where"].stdout, "the test used the installed wheel, not the source tree"
    assert "recorded answers reproduced" in steps["pytest"].stdout + steps["check"].stdout
