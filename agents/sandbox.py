"""Run untrusted agent code (ADAS-style "code agents" written by an LLM) in a confined child process.

Threat model. The code is hostile or merely broken: it may loop forever, exhaust memory, fork-bomb,
flood output, open sockets, read secrets (environment, home directory, the archive database), write
outside its directory, load native code or signal the parent. It may also try to pass for what it
is not, because a search that rewards passing tests finds such tricks: forge the runner's messages,
exit early, hide a refused action, return objects that compare equal to anything. None of it may
harm the parent or the machine, a secret of the parent must never reach the agent or the returned
result, and no trick may earn a grade. LLM calls go through the parent (``call_llm`` in the agent
is a proxy), so caches, budgets and API keys never leave it. Every attack ends as a
:class:`SandboxResult` with ``ok=False``, a ``kind`` and a one-line ``error``; the parent carries
on. Linux only.

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
* ctypes out of reach. The layers above need it; once they are set up, its modules leave
  ``sys.modules`` and its classes, which ``_ctypes`` never frees, leave their bases' subclass
  registries, so neither an import nor ``object.__subclasses__()`` leads an agent to them (a child
  whose set-up left one reachable stops before any agent code).
* Interpreter lock-down. The agent's ``print`` goes to a capped in-memory buffer (the protocol has
  its own descriptors); ``_imp``'s native loaders now raise ImportError (the stdlib extensions an
  agent may use were loaded first); the unaudited ``os.pidfd_open``/``mknod``/``mkfifo``/``chroot``
  and ``signal.pidfd_send_signal`` are deleted.
* Audit hook (``sys.addaudithook``, installed last, cannot be removed). Refuses process creation,
  signals, sockets, ctypes, sub-interpreters, sqlite/dbm, links, rlimit changes, bytecode loading,
  tracing and heap walking; reads only under the stdlib and the work directory, writes only under
  the work directory. A refused action is reported to the parent and ends the child on the spot:
  an agent has no business probing, and one that never regains control cannot hide the refusal.

Verdicts: what the parent trusts. The agent shares its process with the runner, so it can write
whatever the runner could on the protocol descriptor (a result claiming success, then
``os._exit(0)``) and read whatever the runner holds: a nonce kept there would be one frame walk
away, so the parent relies on none. It trusts only its own records and the kernel. A run is ``ok``
when a result claims success, no refusal was reported (the parent records a refusal as it arrives,
and nothing that comes after undoes it), and the child then exits by itself with status 0 (a
refusal whose report was lost still leaves :data:`BLOCKED_STATUS`). Exits without a result are
failures (``os._exit``, a signal to itself; the runner catches ``SystemExit``). What ``ok`` cannot
tell is whether the entry computed ``value``: a forged result is one more way to return a value, so
a value is the agent's claim, never a grade. Code is graded with :class:`SandboxedFunction`: the
caller keeps the tests, the expected values and every comparison in its own process and takes from
the child only return values, decoded into built-in types (``decode_plain``). A forged message
is then one more claim about a return value, checked like the others; an object whose ``__eq__``
always says yes, or an ``int`` subclass, is not plain data and fails its call; monkeypatched
builtins, a rewritten ``check`` or an early exit change the child only, and the tests were never in
it.

What it does not protect against. Audit hooks are not a security boundary: the agent shares the
interpreter with the hook, and a determined attacker can corrupt it from pure Python (interpreter
bugs; ``_ctypes``' classes stay in memory after the set-up, unreachable without the heap walks the
hook refuses). Such an agent is still held by the kernel layers above: no network, no other
processes, no signals, no new native code, rlimits, a session the parent kills, and, where
namespaces are permitted, a root in which nothing but the stdlib and its own directory exists. Where
namespaces are refused (an unprivileged user, most default Docker profiles), files are guarded by
the audit hook alone, so an attacker who defeats it can read what the parent's user can read,
``/proc/<parent>/environ`` included. Without seccomp (other architectures, or where it is refused)
the hook and the replaced loaders are all that stand between an agent and native code. ``os.stat``
is not audited, so an agent can learn whether a path exists. Disk use inside the work directory is
limited per file (``max_file_mb``), not in total. Secrets are masked by value, so only those the
process knows of: variables named like secrets, the password of a URL in any variable, and what
:func:`register_secret` was given (the keys of a code agent's own model are registered as it runs);
a secret an agent learnt and re-encoded passes. Timing side channels and CPU contention are out of
scope. The LLM request dict is agent-controlled: the handler must choose the model and cap
parameters itself.

What still remains possible for a candidate being graded. It can answer with values its entry never
computed (forged ``result`` or ``return`` messages): that is returning them, and is graded as such;
even one that corrupts its interpreter (above) controls only what its child says. It sees each
call's arguments as the call is made (never the expected values), so it can recognise published test
inputs and answer from memory: only hidden tests defend against that. A grade is as strict as the
caller's tests: an assertion that a wrong value passes (a loose tolerance, HumanEval/33 comparing
the candidate with itself) passes here too. The tests run unconfined in the caller's process, so
they must be trusted code. A refusal in one thread can go unreported if another thread of the agent
exits first with a forged result, but then the refused action never happened. It can forge failures,
a refusal included, which fail only its own run; malformed messages end the run as ``"protocol"``.

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
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from .errors import AgentoptError, BudgetExhausted, ConfigError
from .sandbox_child import BLOCKED_STATUS, decode_plain, encode_plain

LLMHandler = Callable[[dict[str, Any]], str]
"""Parent side of ``call_llm``: the agent's request (``{"messages": [...], **params}``) -> reply text.
May raise; the agent then sees ``RuntimeError("LLM error: ...")``. :class:`BudgetExhausted` is not
an agent failure: it aborts the run and propagates to the caller."""

KINDS = ("timeout", "cpu", "memory", "blocked", "output", "exception", "crash", "protocol")
STDOUT_TAIL_CHARS = 8_192
_CHILD = Path(__file__).with_name("sandbox_child.py")
_CHILD_KINDS = frozenset({"memory", "output", "exception"})
# What the child may send beyond max_output_bytes: the stdout tail repeated in the result (at most
# 12 bytes per character once JSON-escaped) and the message envelope.
_SLACK_BYTES = 12 * STDOUT_TAIL_CHARS + 4_096
_EXIT_GRACE_S = 2.0
_STDERR_TAIL_BYTES = 4_096
_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASS|AUTH|CREDENTIAL", re.IGNORECASE)
# The password of a URL such as postgresql://user:password@host/db (SQLAlchemy's reading: up to the '@').
_URL_PASSWORD = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]*:([^\s@]+)@")
# Shorter values are not masked: they would rewrite ordinary words in answers, and are guessable anyway.
_MIN_SECRET_CHARS = 8
_registered: set[str] = set()
_registered_lock = threading.Lock()


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


class SandboxCallError(AgentoptError):
    """A call to a :class:`SandboxedFunction` got no value: the child failed or broke the protocol.
    ``result`` is the run's verdict, never ok."""

    def __init__(self, result: SandboxResult) -> None:
        super().__init__(result.error)
        self.result = result


def run_sandboxed(code: str, entry: str, args: Sequence[Any], llm: LLMHandler | None = None,
                  limits: Limits = Limits()) -> SandboxResult:
    """Run ``entry(*args)`` from ``code`` in a confined child and return how it ended.

    ``code`` is executed as a module in which ``call_llm(messages, **params) -> str`` is a global:
    it sends ``{"messages": messages, **params}`` to ``llm`` in this process and returns its reply.
    """
    started = time.monotonic()
    with _child(code, entry, args, llm, limits, serve=False) as session:
        session.run()
    return session.verdict(time.monotonic() - started)


class SandboxedFunction:
    """``entry`` from ``code``, loaded once in a confined child and called from this process, which
    gets back only plain data (built-in types, see ``encode_plain``): the way to grade untrusted
    code, since every comparison then happens here, on values no agent object takes part in.

    A context manager; use it from the thread that made it (the child dies with that thread).
    ``limits`` cover the whole session, but wall time is charged only while a call is running.
    """

    def __init__(self, code: str, entry: str, limits: Limits = Limits()) -> None:
        self._started = time.monotonic()
        self._verdict: SandboxResult | None = None
        with ExitStack() as stack:
            self._session = stack.enter_context(_child(code, entry, [], None, limits, serve=True))
            self._session.run()
            self._stack = stack.pop_all()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """``entry(*args, **kwargs)`` in the child; :class:`SandboxCallError` when it yields no value."""
        try:
            call = {"call": {"args": encode_plain(args), "kwargs": encode_plain(kwargs)}}
        except (TypeError, RecursionError) as exc:
            raise SandboxError(f"arguments of a sandboxed call must be plain data: {exc}") from exc
        if self._verdict is None and self._session.waiting is not None:
            returned = self._session.reply(call)
            if returned is not None and returned.get("type") == "return":
                try:
                    return decode_plain(returned.get("value"))
                except (TypeError, ValueError, RecursionError):
                    self._session.stop("protocol", "protocol: a return value that is not plain data")
            elif returned is not None:
                self._session.stop("protocol", "protocol: the sandbox answered a call with no value")
        raise SandboxCallError(self.close())

    def close(self) -> SandboxResult:
        """Tell the child to finish, end it and give the run's verdict: ok when the code loaded,
        every call returned, no action was refused and the child finished when told to."""
        if self._verdict is None:
            if self._session.waiting is not None:
                self._session.reply({"stop": True})
            self._stack.close()
            self._verdict = self._session.verdict(time.monotonic() - self._started)
        return self._verdict

    def __enter__(self) -> SandboxedFunction:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()


@contextmanager
def _child(code: str, entry: str, args: Sequence[Any], llm: LLMHandler | None, limits: Limits,
           serve: bool) -> Iterator[_Session]:
    """A started child in a fresh temporary directory; killed, reaped and removed on leaving."""
    with tempfile.TemporaryDirectory(prefix="agentopt-sandbox-") as tmp:
        workdir, root = (os.path.join(os.path.realpath(tmp), d) for d in ("work", "root"))
        os.mkdir(workdir, 0o700)
        os.mkdir(root, 0o700)
        job = _job(code, entry, args, limits, workdir, root, serve)
        try:
            proc = subprocess.Popen([sys.executable, "-I", "-S", "-B", str(_CHILD)], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=workdir,
                                    env=_child_env(workdir), start_new_session=True)
        except OSError as exc:
            raise SandboxError(f"cannot start the sandbox interpreter: {exc}") from exc
        session = _Session(proc, llm, limits, _Redactor.current(), serve)
        try:
            session.start(job)
            yield session
        finally:
            session.end()


def register_secret(value: str) -> None:
    """Mask ``value`` in everything the sandboxes this process starts from now on are given and
    give back, as the secret-looking environment variables are: for a secret the parent holds
    outside its environment (an API key read from a variable with any name, an archive URL given
    in Python). A URL registers its password, not itself (the rest of it is no secret)."""
    with _registered_lock:
        _registered.update(_url_passwords(value) or [value])


def _url_passwords(text: str) -> list[str]:
    """The passwords of the URLs in ``text``, as written and percent-decoded (the form a database
    driver, and so a leak, would use)."""
    return [form for match in _URL_PASSWORD.finditer(text) for form in (match[1], urllib.parse.unquote(match[1]))]


def _job(code: str, entry: str, args: Sequence[Any], limits: Limits, workdir: str, root: str,
         serve: bool) -> bytes:
    try:
        line = json.dumps({"code": code, "entry": entry, "args": list(args), "serve": serve, "workdir": workdir,
                           "root": root, "parent_pid": os.getpid(), "stdout_tail_chars": STDOUT_TAIL_CHARS,
                           **vars(limits)}, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise SandboxError(f"sandbox arguments must be JSON-serialisable: {exc}") from exc
    return line.encode() + b"\n"


def _child_env(workdir: str) -> dict[str, str]:
    """Built from nothing, so no secret of the parent's environment can leak into the child."""
    return {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "HOME": workdir, "TMPDIR": workdir}


class _Redactor:
    """Last line of defence for secrets: every secret the parent holds is masked, by value, in
    everything it passes to the child (LLM replies and errors) and reads back from it (requests,
    prints, return values, errors). It masks the text as it is, and in JSON-escaped form; a secret
    the agent has re-encoded (reversed, base64) passes, which is why none is given to it."""

    def __init__(self, secrets: list[str]) -> None:
        forms = {form for s in secrets for form in (s, json.dumps(s)[1:-1], json.dumps(s, ensure_ascii=False)[1:-1])}
        self._pattern = re.compile("|".join(map(re.escape, sorted(forms, key=len, reverse=True)))) if forms else None

    @classmethod
    def current(cls) -> _Redactor:
        """Variables whose names look secret, the password of a URL in any variable (a database URL
        in ``AGENTOPT_DB`` or ``DATABASE_URL`` is named like any other setting) and what
        :func:`register_secret` was given, as they are now."""
        with _registered_lock:
            registered = list(_registered)
        named = [v for k, v in os.environ.items() if _SECRET_NAME.search(k)]
        passwords = [p for v in os.environ.values() for p in _url_passwords(v)]
        return cls([s for s in (*named, *passwords, *registered) if len(s) >= _MIN_SECRET_CHARS])

    def __call__(self, text: str) -> str:
        return self._pattern.sub("[redacted]", text) if self._pattern else text


class _Session:
    """One child seen from the parent: feeds it, answers its requests, enforces wall time and
    output, records refused actions as they are reported, and classifies how it ended. All pipes
    are non-blocking, so a child that stops reading or never writes cannot hang the parent past its
    deadline. When serving, the child stops to wait for each call: only its time between a call and
    its value is charged to ``wall_s``."""

    def __init__(self, proc: subprocess.Popen[bytes], llm: LLMHandler | None, limits: Limits,
                 redact: _Redactor, serving: bool) -> None:
        assert proc.stdin and proc.stdout and proc.stderr
        self._proc, self._llm, self._limits, self._redact, self._serving = proc, llm, limits, redact, serving
        self._stdin, self._stdout, self._stderr_fd = proc.stdin.fileno(), proc.stdout.fileno(), proc.stderr.fileno()
        self._selector = selectors.DefaultSelector()
        self._reading = {self._stdout, self._stderr_fd}
        self._outbox = bytearray()
        self._inbox = bytearray()
        self._stderr_tail = b""
        self._received = 0
        self._left = limits.wall_s  # agent wall time not yet spent
        self._deadline = 0.0
        self.waiting: dict[str, Any] | None = None  # serving: the message the child waits on a reply to
        self._stopping = False  # serving: the parent told the child to finish
        self._blocked: str | None = None  # the first refusal the child's audit hook reported
        self._result: dict[str, Any] | None = None
        self._stopped: tuple[str, str] | None = None  # (kind, error) when the parent killed the child
        self._status = 0
        self._cpu_s = 0.0
        self._llm_calls = 0

    def start(self, job: bytes) -> None:
        for fd in (self._stdin, self._stdout, self._stderr_fd):
            os.set_blocking(fd, False)
        for fd in self._reading:
            self._selector.register(fd, selectors.EVENT_READ)
        self._send(job)

    def reply(self, message: dict[str, Any]) -> dict[str, Any] | None:
        """Serving: answer what the child waits on (a call, or stop) and run it until it waits
        again; what it then waits with, or None once it has ended."""
        self.waiting = None
        self._stopping = "stop" in message
        self._send(json.dumps(message).encode() + b"\n")
        self.run()
        return self.waiting

    def run(self) -> None:
        """Run the child until it waits for a reply (serving) or has ended. After its result, a
        child gets a short grace to exit and is still heard: a refusal reported then still counts."""
        self._deadline = time.monotonic() + self._left
        while self._reading and self._stopped is None and self.waiting is None:
            remaining = self._deadline - time.monotonic()
            if remaining <= 0:
                self.stop(*self._overtime())
                break
            for key, _ in self._selector.select(remaining):
                if key.fd in self._reading:
                    self._read(key.fd)
                else:
                    self._write()
        self._left = self._deadline - time.monotonic()
        # The child closed its pipes: it should be exiting.
        if not self._reading and self._stopped is None and not self._wait_exit(self._deadline):
            self.stop(*self._overtime())

    def _overtime(self) -> tuple[str, str]:
        if self._result is not None:
            return "protocol", "protocol: the sandbox did not exit after its result"
        return "timeout", f"timeout: wall time {self._limits.wall_s:g}s exceeded"

    def _read(self, fd: int) -> None:
        data = os.read(fd, 65536)
        if not data:
            self._selector.unregister(fd)
            self._reading.discard(fd)
            return
        self._received += len(data)
        if self._received > self._limits.max_output_bytes + _SLACK_BYTES:
            return self.stop("output", f"killed: output over {self._limits.max_output_bytes} bytes")
        if fd == self._stderr_fd:
            self._stderr_tail = (self._stderr_tail + data)[-_STDERR_TAIL_BYTES:]
            return
        self._inbox += data
        while self._stopped is None and b"\n" in self._inbox:
            end = self._inbox.index(b"\n")
            line = bytes(self._inbox[:end])
            del self._inbox[:end + 1]
            self._handle(line)

    def _handle(self, line: bytes) -> None:
        try:
            message = json.loads(self._redact(line.decode()))
        except (UnicodeDecodeError, ValueError, RecursionError):
            return self.stop("protocol", "protocol: malformed message from the sandbox")
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "blocked":  # sticky: whatever arrives afterwards, the run has failed
            self._blocked = self._blocked or str(message.get("reason"))[:500]
        elif self._result is not None:
            self.stop("protocol", "protocol: a message after the sandbox's result")
        elif kind == "result":
            self._finished(message)
        elif kind == "llm":
            self._send(self._redact(json.dumps(self._answer(message.get("request")))).encode() + b"\n")
        elif kind in ("ready", "return") and self._serving and not self._stopping and self.waiting is None:
            self.waiting = message
        else:
            self.stop("protocol", f"protocol: unexpected message type {str(kind)[:40]!r} from the sandbox")

    def _finished(self, message: dict[str, Any]) -> None:
        if self._serving and message.get("ok") is True and not self._stopping:
            return self.stop("protocol", "protocol: the sandbox claimed success before it was told to stop")
        self._result = message
        self._deadline = min(self._deadline, time.monotonic() + _EXIT_GRACE_S)

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

    def _send(self, data: bytes) -> None:
        self._outbox += data
        self._write()

    def _write(self) -> None:
        try:
            del self._outbox[:os.write(self._stdin, self._outbox) if self._outbox else 0]
        except BlockingIOError:
            pass
        except BrokenPipeError:  # the child is gone; its exit tells the rest
            self._outbox.clear()
        registered = self._stdin in self._selector.get_map()
        if self._outbox and not registered:
            self._selector.register(self._stdin, selectors.EVENT_WRITE)
        elif not self._outbox and registered:
            self._selector.unregister(self._stdin)

    def stop(self, kind: str, error: str) -> None:
        """Kill the child; the run ends as ``kind`` unless a refusal was reported first."""
        self._stopped = self._stopped or (kind, error)
        self.waiting = None
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
        self._selector.close()
        for pipe in (self._proc.stdin, self._proc.stdout, self._proc.stderr):
            if pipe is not None:
                pipe.close()

    def verdict(self, wall_s: float) -> SandboxResult:
        """Refusals first, then the parent's own reasons, and only then what the child said."""
        lost = "the sandbox refused an action (its report was lost)" if self._status == BLOCKED_STATUS else None
        blocked = self._blocked or lost
        if blocked is not None:
            return self._failure("blocked", f"blocked: {blocked}", wall_s)
        if self._stopped is not None:
            kind, error = self._stopped
            return self._failure(kind, error, wall_s)
        if self._result is not None:
            return self._from_message(self._result, wall_s)
        return self._from_exit(wall_s)

    def _from_message(self, message: dict[str, Any], wall_s: float) -> SandboxResult:
        stdout = message.get("stdout")
        stdout = stdout[-STDOUT_TAIL_CHARS:] if isinstance(stdout, str) else ""
        if message.get("ok") is True and self._status != 0:
            return self._failure("protocol", f"protocol: the sandbox exited with status {self._status} after "
                                 "reporting success", wall_s)
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
