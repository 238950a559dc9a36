"""Run untrusted agent code (ADAS-style "code agents" written by an LLM) in a confined child process.

Threat model. The code is hostile or merely broken: it may loop forever, exhaust memory, fork-bomb,
flood output, open sockets, read secrets (environment, home directory, the archive database), write
outside its directory, load native code or signal the parent. None of it may harm the parent or the
machine, and a secret of the parent must never reach the agent or the returned result. LLM calls go
through the parent (``call_llm`` in the agent is a proxy), so caches, budgets and API keys never
leave it. Every attack ends as a :class:`SandboxResult` with ``ok=False``, a ``kind`` and a one-line
``error``; the parent carries on. Linux only.

Layers, outermost first; from rlimits on, the child (``sandbox_child.py``) sets them up itself, in
this order, before any agent code exists in its process:

* Process. ``python -I -S -B`` on the child runner: isolated mode ignores every ``PYTHON*`` variable
  and the user's site directory; ``-S`` drops site-packages, so an agent gets the stdlib and nothing
  the project installed (no agentopt, no API clients); ``-B`` writes no bytecode. The environment is
  built from scratch (PATH, LANG, HOME and TMPDIR set to the work directory), never inherited. The
  working directory is a fresh temporary directory, removed afterwards.
* Session. The child leads its own session and process group, which the parent SIGKILLs after
  ``wall_s`` (agent time: the parent's LLM handler time is not charged) or too much output, and in
  any case when the run ends. ``PR_SET_PDEATHSIG`` takes the child down if the parent dies (note:
  it fires when the parent *thread* that started it exits; ``run_sandboxed`` blocks that thread).
* rlimits. CPU (SIGXCPU at ``cpu_s``, SIGKILL a second later), address space (``memory_mb``), file
  size, processes (``max_processes`` more than the machine runs now; root ignores this one), no core.
* Network namespace. ``unshare(CLONE_NEWNET)`` through ctypes (``os.unshare`` is 3.12+): only a
  loopback that is down. Needs CAP_SYS_ADMIN; skipped silently where refused.
* Mount namespace and a minimal root, where permitted (same condition): a tmpfs root holding only
  the stdlib (read-only), the work directory (noexec) and /dev/null, /dev/urandom, at their real
  paths. The home directory, /etc, /proc and any database simply do not exist for the agent.
* seccomp (x86_64, aarch64): no processes but threads, no signals except to itself, no pidfds, no
  sockets, no ptrace, no new executable mappings (so no native code can be loaded), no mount,
  namespace, chroot, module, key or rlimit-raising calls, no device nodes, no re-prioritising.
* Interpreter lock-down. The agent's ``print`` goes to a capped in-memory buffer (the protocol has
  its own descriptors); ctypes is dropped from ``sys.modules``; ``_imp``'s native loaders now raise
  ImportError (the stdlib extensions an agent may use were loaded first); the unaudited
  ``os.pidfd_open``/``mknod``/``mkfifo``/``chroot`` and ``signal.pidfd_send_signal`` are deleted.
* Audit hook (``sys.addaudithook``, installed last, cannot be removed). Refuses process creation,
  signals, sockets, ctypes, sub-interpreters, sqlite/dbm, links, rlimit changes, bytecode loading,
  tracing and heap walking; reads only under the stdlib and the work directory, writes only under
  the work directory. Any refused action fails the run with kind ``"blocked"``, even if the agent
  caught the PermissionError: an agent has no business probing.

What it does not protect against. Audit hooks are not a security boundary: the agent shares the
interpreter with the hook, and a determined attacker can corrupt it from pure Python (interpreter
bugs; ``_ctypes`` stays loaded after the set-up, so its types remain reachable through
``object.__subclasses__()`` and give raw memory access). Such an agent is still held by the kernel
layers above: no network, no other processes, no signals, no new native code, rlimits, a session
the parent kills, and, where namespaces are permitted, a root in which nothing but the stdlib and
its own directory exists. Where namespaces are refused (an unprivileged user, most default Docker
profiles), files are guarded by the audit hook alone, so an attacker who defeats it can read what
the parent's user can read, ``/proc/<parent>/environ`` included. Without seccomp (other
architectures, or where it is refused) the hook and the replaced loaders are all that stand between
an agent and native code. ``os.stat`` is not audited, so an agent can learn whether a path exists. Disk use
inside the work directory is limited per file (``max_file_mb``), not in total. Timing side channels
and CPU contention are out of scope. The agent can write to its own protocol descriptor, so it can
forge its own result, which gains it nothing over returning a value; malformed messages end the run
as ``"protocol"``. The LLM request dict is agent-controlled: the handler must choose the model and
cap parameters itself.

Standard library only, imports relative: ``agentopt export`` copies the sandbox into packages, so an
exported code agent runs confined exactly as it did during the campaign.
"""

from __future__ import annotations

import json
import math
import os
import re
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import AgentoptError, BudgetExhausted, ConfigError

LLMHandler = Callable[[dict[str, Any]], str]
"""Parent side of ``call_llm``: the agent's request (``{"messages": [...], **params}``) -> reply text.
May raise; the agent then sees ``RuntimeError("LLM error: ...")``. :class:`BudgetExhausted` is not
an agent failure: it aborts the run and propagates to the caller."""

KINDS = ("timeout", "cpu", "memory", "blocked", "output", "exception", "crash", "protocol")
STDOUT_TAIL_CHARS = 8_192
_CHILD = Path(__file__).with_name("sandbox_child.py")
_CHILD_KINDS = frozenset({"memory", "blocked", "output", "exception"})
# What the child may send beyond max_output_bytes: the stdout tail repeated in the result (at most
# 12 bytes per character once JSON-escaped) and the message envelope.
_SLACK_BYTES = 12 * STDOUT_TAIL_CHARS + 4_096
_EXIT_GRACE_S = 2.0
_STDERR_TAIL_BYTES = 4_096
_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSW|CREDENTIAL", re.IGNORECASE)


@dataclass(frozen=True)
class Limits:
    """What one run may use. Exceeding any of them ends it with ``ok=False``."""

    cpu_s: float = 20.0  # RLIMIT_CPU, rounded up to whole seconds
    wall_s: float = 60.0  # the parent kills the process group after it (LLM handler time not counted)
    memory_mb: int = 512  # RLIMIT_AS
    max_output_bytes: int = 1_000_000  # prints + LLM requests + the return value, in bytes
    max_llm_calls: int = 50  # per run; the next call raises RuntimeError in the agent
    max_processes: int = 32  # RLIMIT_NPROC headroom (threads count); fork itself is refused anyway
    max_file_mb: int = 64  # RLIMIT_FSIZE: the largest file the agent may write

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if not value > 0:
                raise ConfigError(f"sandbox limit {name} must be > 0, got {value!r}")


@dataclass(frozen=True)
class SandboxResult:
    """How one run ended. ``error`` is one line, ``kind`` one of :data:`KINDS` (None when ok)."""

    ok: bool
    value: Any  # the entry's JSON-serialisable return value when ok
    error: str | None
    kind: str | None
    stdout: str  # the tail of the agent's own prints (empty when the parent had to kill it)
    llm_calls: int  # requests passed to the handler
    wall_s: float  # the whole run, LLM calls included


class SandboxError(AgentoptError):
    """The sandbox itself could not run (arguments that are not JSON, no interpreter). Never raised
    for anything the agent does: that is always a :class:`SandboxResult`."""


def run_sandboxed(code: str, entry: str, args: Sequence[Any], llm: LLMHandler | None = None,
                  limits: Limits = Limits()) -> SandboxResult:
    """Run ``entry(*args)`` from ``code`` in a confined child and return how it ended.

    ``code`` is executed as a module in which ``call_llm(messages, **params) -> str`` is a global:
    it sends ``{"messages": messages, **params}`` to ``llm`` in this process and returns its reply.
    """
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="agentopt-sandbox-") as tmp:
        workdir, root = (os.path.join(os.path.realpath(tmp), d) for d in ("work", "root"))
        os.mkdir(workdir, 0o700)
        os.mkdir(root, 0o700)
        job = _job(code, entry, args, limits, workdir, root)
        try:
            proc = subprocess.Popen([sys.executable, "-I", "-S", "-B", str(_CHILD)], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=workdir,
                                    env=_child_env(workdir), start_new_session=True)
        except OSError as exc:
            raise SandboxError(f"cannot start the sandbox interpreter: {exc}") from exc
        session = _Session(proc, llm, limits, _Redactor.from_environment())
        try:
            session.run(job)
        finally:
            session.end()
    return session.verdict(time.monotonic() - started)


def _job(code: str, entry: str, args: Sequence[Any], limits: Limits, workdir: str, root: str) -> bytes:
    try:
        line = json.dumps({"code": code, "entry": entry, "args": list(args), "workdir": workdir, "root": root,
                           "parent_pid": os.getpid(), "stdout_tail_chars": STDOUT_TAIL_CHARS,
                           **vars(limits)}, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise SandboxError(f"sandbox arguments must be JSON-serialisable: {exc}") from exc
    return line.encode() + b"\n"


def _child_env(workdir: str) -> dict[str, str]:
    """Built from nothing, so no secret of the parent's environment can leak into the child."""
    return {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "HOME": workdir, "TMPDIR": workdir}


class _Redactor:
    """Last line of defence for secrets: the parent's secret-looking environment values are masked
    in everything it passes to the child (LLM replies and errors) and reads back from it."""

    def __init__(self, secrets: list[str]) -> None:
        forms = {form for s in secrets for form in (s, json.dumps(s)[1:-1], json.dumps(s, ensure_ascii=False)[1:-1])}
        self._pattern = re.compile("|".join(map(re.escape, sorted(forms, key=len, reverse=True)))) if forms else None

    @classmethod
    def from_environment(cls) -> _Redactor:
        return cls([v for k, v in os.environ.items() if _SECRET_NAME.search(k) and len(v) >= 8])

    def __call__(self, text: str) -> str:
        return self._pattern.sub("[redacted]", text) if self._pattern else text


class _Session:
    """One child seen from the parent: feeds it, answers its LLM requests, enforces wall time and
    output, and classifies how it ended. All pipes are non-blocking, so a child that stops reading
    or never writes cannot hang the parent past its deadline."""

    def __init__(self, proc: subprocess.Popen[bytes], llm: LLMHandler | None, limits: Limits,
                 redact: _Redactor) -> None:
        assert proc.stdin and proc.stdout and proc.stderr
        self._proc, self._llm, self._limits, self._redact = proc, llm, limits, redact
        self._stdin, self._stdout, self._stderr_fd = proc.stdin.fileno(), proc.stdout.fileno(), proc.stderr.fileno()
        self._outbox = bytearray()
        self._inbox = bytearray()
        self._stderr_tail = b""
        self._received = 0
        self._deadline = 0.0
        self._result: dict[str, Any] | None = None
        self._stopped: tuple[str, str] | None = None  # (kind, error) when the parent killed the child
        self._status = 0
        self._cpu_s = 0.0
        self._llm_calls = 0

    def run(self, job: bytes) -> None:
        self._outbox += job
        self._deadline = time.monotonic() + self._limits.wall_s
        with selectors.DefaultSelector() as selector:
            for fd in (self._stdin, self._stdout, self._stderr_fd):
                os.set_blocking(fd, False)
            selector.register(self._stdin, selectors.EVENT_WRITE)
            reading = {self._stdout, self._stderr_fd}
            for fd in reading:
                selector.register(fd, selectors.EVENT_READ)
            while self._result is None and self._stopped is None and reading:
                remaining = self._deadline - time.monotonic()
                if remaining <= 0:
                    return self._stop("timeout", f"timeout: wall time {self._limits.wall_s:g}s exceeded")
                for key, _ in selector.select(remaining):
                    if key.fd in reading:
                        self._read(key.fd, selector, reading)
                    else:
                        self._write(selector)
        # The result is in, or the child closed its pipes: it should be exiting.
        grace = _EXIT_GRACE_S if self._result is not None else self._deadline - time.monotonic()
        if not self._wait_exit(time.monotonic() + grace) and self._result is None and self._stopped is None:
            self._stop("timeout", f"timeout: wall time {self._limits.wall_s:g}s exceeded")

    def _read(self, fd: int, selector: selectors.BaseSelector, reading: set[int]) -> None:
        data = os.read(fd, 65536)
        if not data:
            selector.unregister(fd)
            reading.discard(fd)
            return
        self._received += len(data)
        if self._received > self._limits.max_output_bytes + _SLACK_BYTES:
            return self._stop("output", f"killed: output over {self._limits.max_output_bytes} bytes")
        if fd == self._stderr_fd:
            self._stderr_tail = (self._stderr_tail + data)[-_STDERR_TAIL_BYTES:]
            return
        self._inbox += data
        while self._result is None and self._stopped is None and b"\n" in self._inbox:
            end = self._inbox.index(b"\n")
            line = bytes(self._inbox[:end])
            del self._inbox[:end + 1]
            self._handle(line, selector)

    def _handle(self, line: bytes, selector: selectors.BaseSelector) -> None:
        try:
            message = json.loads(self._redact(line.decode()))
        except (UnicodeDecodeError, ValueError, RecursionError):
            return self._stop("protocol", "protocol: malformed message from the sandbox")
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "result":
            self._result = message
        elif kind == "llm":
            self._reply(self._answer(message.get("request")), selector)
        else:
            self._stop("protocol", f"protocol: unexpected message type {str(kind)[:40]!r} from the sandbox")

    def _answer(self, request: object) -> dict[str, Any]:
        """The reply to one LLM request; the handler's time is not charged to the agent's wall time."""
        if not isinstance(request, dict) or not isinstance(request.get("messages"), list):
            return {"ok": False, "error": "malformed LLM request: it needs a list of messages"}
        if self._llm_calls >= self._limits.max_llm_calls:  # the child stops first; this is the backstop
            return {"ok": False, "error": f"too many LLM calls (limit {self._limits.max_llm_calls})"}
        if self._llm is None:
            return {"ok": False, "error": "no LLM handler is configured for this sandbox"}
        self._llm_calls += 1
        started = time.monotonic()
        try:
            text = self._llm(request)
        except BudgetExhausted:
            raise
        except Exception as exc:  # errors are data: the agent sees them, the result records them
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        finally:
            self._deadline += time.monotonic() - started
        if not isinstance(text, str):
            return {"ok": False, "error": f"the LLM handler returned {type(text).__name__}, not str"}
        return {"ok": True, "text": text}

    def _reply(self, reply: dict[str, Any], selector: selectors.BaseSelector) -> None:
        self._outbox += self._redact(json.dumps(reply)).encode() + b"\n"
        self._write(selector)

    def _write(self, selector: selectors.BaseSelector) -> None:
        try:
            del self._outbox[:os.write(self._stdin, self._outbox) if self._outbox else 0]
        except BlockingIOError:
            pass
        except BrokenPipeError:  # the child is gone; its exit tells the rest
            self._outbox.clear()
        registered = self._stdin in selector.get_map()
        if self._outbox and not registered:
            selector.register(self._stdin, selectors.EVENT_WRITE)
        elif not self._outbox and registered:
            selector.unregister(self._stdin)

    def _stop(self, kind: str, error: str) -> None:
        self._stopped = (kind, error)
        self._kill()

    def _kill(self) -> None:
        for kill, target in ((os.killpg, self._proc.pid), (os.kill, self._proc.pid)):
            try:
                kill(target, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def _wait_exit(self, until: float) -> bool:
        """Whether the child exited by ``until``; it is left unreaped so its group id stays its own."""
        while True:
            try:
                if os.waitid(os.P_PID, self._proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                    return True
            except ChildProcessError:  # reaped behind our back (a SIGCHLD handler): it has exited
                return True
            if time.monotonic() >= until:
                return False
            time.sleep(0.005)

    def end(self) -> None:
        """Kill the group whatever happened, then reap the child (recording its CPU time)."""
        self._kill()
        try:
            _, status, usage = os.wait4(self._proc.pid, 0)
            self._status, self._cpu_s = os.waitstatus_to_exitcode(status), usage.ru_utime + usage.ru_stime
        except ChildProcessError:  # reaped behind our back: status and CPU time are unknown
            pass
        self._proc.returncode = self._status  # so that Popen never waits for it again
        for pipe in (self._proc.stdin, self._proc.stdout, self._proc.stderr):
            if pipe is not None:
                pipe.close()

    def verdict(self, wall_s: float) -> SandboxResult:
        if self._stopped is not None:
            kind, error = self._stopped
            return self._failure(kind, error, wall_s)
        if self._result is not None:
            return self._from_message(self._result, wall_s)
        return self._from_exit(wall_s)

    def _from_message(self, message: dict[str, Any], wall_s: float) -> SandboxResult:
        stdout = message.get("stdout")
        stdout = stdout[-STDOUT_TAIL_CHARS:] if isinstance(stdout, str) else ""
        if message.get("ok") is True:
            return SandboxResult(True, message.get("value"), None, None, stdout, self._llm_calls, wall_s)
        kind, error = message.get("kind"), message.get("error")
        if kind not in _CHILD_KINDS or not isinstance(error, str):
            return self._failure("protocol", "protocol: malformed result from the sandbox", wall_s)
        return self._failure(kind, error, wall_s, stdout)

    def _from_exit(self, wall_s: float) -> SandboxResult:
        """No result: the kernel or the interpreter ended the child; say which limit, if any."""
        stderr = self._redact(self._stderr_tail.decode(errors="replace"))
        last = stderr.strip().splitlines()[-1] if stderr.strip() else ""
        cpu_limit = math.ceil(self._limits.cpu_s)
        if -self._status == signal.SIGXCPU or (-self._status == signal.SIGKILL and self._cpu_s >= cpu_limit):
            return self._failure("cpu", f"cpu: CPU time {cpu_limit}s exceeded", wall_s)
        if "MemoryError" in stderr or "Cannot allocate memory" in stderr:
            return self._failure("memory", f"memory limit: {self._limits.memory_mb} MB exceeded", wall_s)
        if self._status < 0:
            try:
                error = f"crash: killed by {signal.Signals(-self._status).name}"
            except ValueError:
                error = f"crash: killed by signal {-self._status}"
        else:
            error = f"crash: exited with status {self._status} without a result"
        return self._failure("crash", f"{error}: {last}" if last else error, wall_s)

    def _failure(self, kind: str, error: str, wall_s: float, stdout: str = "") -> SandboxResult:
        line = " ".join(self._redact(error).split())
        return SandboxResult(False, None, line[:500], kind, stdout, self._llm_calls, wall_s)
