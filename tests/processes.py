"""Helpers for tests that start ``agentopt`` or model servers as real processes and stop them."""

import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import chdir, contextmanager
from multiprocessing.synchronize import Barrier
from pathlib import Path

AGENTOPT = str(Path(sys.executable).parent / "agentopt")


def agentopt(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
             timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """Run the installed CLI; ``env`` is added to this process's environment."""
    return subprocess.run([AGENTOPT, *args], capture_output=True, text=True, cwd=cwd, timeout=timeout,
                          env={**os.environ, **(env or {})})


def cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``agentopt ARGS`` run in this process through the CLI's own entry point, as :func:`agentopt` runs it
    in a child: same exit code, stdout and stderr, without paying a new interpreter and the CLI's imports again.

    For argument, input and query cases. Exit codes on signals, Ctrl-C and locks held by other processes
    need a real process: :func:`agentopt`. typer's ``CliRunner`` swaps the standard streams and the
    environment; the signal handlers a command installs are put back afterwards.
    """
    from typer.testing import CliRunner

    from agentopt.optimizer.frontends.cli.main import main

    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    argv = sys.argv
    code: int = 0
    with CliRunner().isolation(env=env) as (stdout, stderr, _), chdir(cwd or Path.cwd()):
        sys.argv = ["agentopt", *args]
        try:
            main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
        finally:
            sys.argv = argv
            for sig, handler in handlers.items():
                if handler is not None:  # None: installed outside Python, which signal.signal cannot put back
                    signal.signal(sig, handler)
            sys.stdout.flush()
            sys.stderr.flush()
        out, error = stdout.getvalue().decode(), stderr.getvalue().decode()
    return subprocess.CompletedProcess(["agentopt", *args], code, out, error)


def raw_bytes(paths: list[Path]) -> bytes:
    """The bytes of ``paths``, read by a child process: a test holding archive connections must not
    open and close a descriptor of the file itself (that drops its process's SQLite locks)."""
    script = "import sys; [sys.stdout.buffer.write(open(p, 'rb').read()) for p in sys.argv[1:]]"
    return subprocess.run([sys.executable, "-c", script, *map(str, paths)], capture_output=True, check=True,
                          timeout=60).stdout


class Repeated:
    """``step`` over and over in a thread while the block runs; counts runs and keeps the failures
    it returns (a step returns ``None`` when all went well)."""

    def __init__(self, step: Callable[[], str | None], pause_s: float = 0.3) -> None:
        self.step, self.pause_s, self.runs, self.failures = step, pause_s, 0, []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self.stop.wait(self.pause_s):
            failure = self.step()
            self.runs += 1
            if failure:
                self.failures.append(failure)

    def __enter__(self) -> "Repeated":
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(timeout=600)


def archive_query(db: str) -> str | None:
    """A CLI query: a process that opens the archive, reads and closes it; its error, if any."""
    done = agentopt("archive", "campaigns", "--db", db, "--json", timeout=300)
    return None if done.returncode == 0 else done.stderr.strip()


def command(pid: int) -> list[str] | None:
    """The words of a process's command line; None once it is gone."""
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return None


def pids_running(*needles: str) -> set[int]:
    """Processes whose command line has each of ``needles`` as a word, or as a word's file name."""
    found = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or (words := command(int(proc.name))) is None:
            continue
        names = set(words) | {os.path.basename(w) for w in words}
        if all(n in names for n in needles):
            found.add(int(proc.name))
    return found


def parent_pid(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def descendants(pid: int) -> dict[int, str]:
    """Every process below ``pid`` now, with its command's file name: the processes it owes an exit,
    told apart from look-alikes that tests running beside it (pytest-xdist) start."""
    children: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and (parent := parent_pid(int(proc.name))) is not None:
            children.setdefault(parent, []).append(int(proc.name))
    found, todo = {}, list(children.get(pid, []))
    while todo:
        child = todo.pop()
        if (words := command(child)) is not None:
            found[child] = " ".join(os.path.basename(w) for w in words if w)
            todo.extend(children.get(child, []))
    return found


def wait_until(predicate: Callable[[], bool], timeout: float = 120.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def cores_per_worker() -> int:
    """This pytest-xdist worker's share of the machine's cores (all of them without xdist)."""
    return max(1, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))


@contextmanager
def busy_cores() -> Iterator[None]:
    """A busy-looping process on each of this worker's cores while the block runs: the timing of a
    loaded machine, where the windows between two processes' database steps stretch and races show.
    Under pytest-xdist the other workers' tests keep their own cores busy; spinning there too would
    only take CPU from them."""
    loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(cores_per_worker())]
    try:
        yield
    finally:
        for loop in loops:
            loop.kill()
            loop.wait()


NEW_ARCHIVE_CANDIDATES = 5  # each writer's campaign in each new archive


def _write_new_archives(urls: list[str], barrier: Barrier, seed: int,
                        report: "multiprocessing.Queue[list[str]]") -> None:
    """Open each new archive the instant the other writers do, then write one campaign into it.

    An archive error is reported and the writer goes on to the next archive, so the others are not
    left at the barrier; anything else ends the writer (a non-zero exit) after it has reported."""
    from agentopt.archive.errors import ArchiveError
    from agentopt.agents.models.llm import Completion, Payer
    from agentopt.agents.prompt import PromptAgent
    from agentopt.archive.cache import SqlCallCache
    from agentopt.archive.store import Archive, ExampleOutcome

    errors: list[str] = []
    try:
        for url in urls:
            barrier.wait(timeout=120)
            try:
                archive = Archive(url)
                campaign, cache = archive.create_campaign(f"writer {seed}", "task", "ape", {}), SqlCallCache(archive)
                for i in range(NEW_ARCHIVE_CANDIDATES):
                    agent = PromptAgent(instruction=f"Instruction {i}.")
                    candidate, _ = archive.add_candidate(campaign, agent, "ape")
                    archive.add_result(candidate, "train", ExampleOutcome("train-1", "out", 1.0, None, {}))
                    cache.put(f"{seed}-{i}", {"model": "m"}, Completion("x", 1, 1, 0.1), Payer(campaign))
                    archive.update_evaluation(candidate, "train")
                archive.finish_campaign(campaign, "finished", {})
                archive.engine.dispose()
            except ArchiveError as exc:
                errors.append(f"writer {seed}: {exc}")
    finally:
        report.put(errors)


def race_to_new_archives(urls: list[str], writers: int) -> list[str]:
    """``writers`` processes open every archive in ``urls`` (each new) at one instant and each write a
    campaign into it; returns their errors. Forked, so no import delay spreads the openings apart."""
    context = multiprocessing.get_context("fork")
    barrier, report = context.Barrier(writers), context.Queue()
    procs = [context.Process(target=_write_new_archives, args=(urls, barrier, seed, report))
             for seed in range(writers)]
    for proc in procs:
        proc.start()
    errors = [error for _ in procs for error in report.get(timeout=900)]
    for proc in procs:
        proc.join(timeout=60)
    assert [p.exitcode for p in procs] == [0] * writers, errors
    return errors


def stored_results(db: Path) -> int:
    try:
        with sqlite3.connect(db) as conn:
            return int(conn.execute("select count(*) from results").fetchone()[0])
    except sqlite3.Error:
        return 0


def interrupt_campaign(config: Path, db: Path, after_results: int, timeout: float) -> dict[int, str]:
    """``agentopt run CONFIG``, Ctrl-C once ``after_results`` results are stored, and check that it
    stopped as a user expects: exit 130, a message instead of a traceback, the campaign marked.
    Returns the campaign's :func:`descendants` at the Ctrl-C."""
    proc = subprocess.Popen([AGENTOPT, "run", str(config), "--db", str(db)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert wait_until(lambda: stored_results(db) >= after_results, timeout), "the campaign never got going"
        below = descendants(proc.pid)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and "Traceback" not in stderr
    assert "interrupted: every finished result and LLM call is kept" in stderr
    assert "stopping: finishing in-flight calls" in stderr, "the first Ctrl-C says what it waits for"
    with sqlite3.connect(db) as conn:
        [(campaign, status)] = conn.execute("select id, status from campaigns").fetchall()
    assert status == "interrupted" and f"agentopt resume {campaign} " in stderr, "the line names the campaign"
    assert stored_results(db) >= after_results
    return below


def install_exported(package_dir: Path, workdir: Path, base_url: str) -> dict[str, subprocess.CompletedProcess[str]]:
    """Build an exported package's wheel, install it with pytest into a fresh virtualenv and, from
    outside the source tree, run the package's own regression test, its ``--check`` and one answer.
    Only ``PATH`` and the endpoint reach the package: nothing of this environment leaks in.

    uv builds, makes the virtualenv and installs: the same standard metadata pip reads, resolved from
    the same index, in a second where pip takes twenty of CPU (its own copy of pip, build isolation)."""
    from uv import find_uv_bin

    def run(*cmd: str | Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=900, **kwargs)  # type: ignore[call-overload]

    uv, wheels, env_dir = find_uv_bin(), workdir / "wheels", workdir / "venv"
    steps = {"wheel": run(uv, "build", "--wheel", "-q", "--out-dir", wheels, package_dir)}
    if steps["wheel"].returncode:
        return steps
    steps["venv"] = run(uv, "venv", "-q", "--python", sys.executable, env_dir)
    if steps["venv"].returncode:
        return steps
    steps["install"] = run(uv, "pip", "install", "-q", "--python", env_dir / "bin" / "python",
                           *wheels.glob("*.whl"), "pytest")
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
