"""The parent's side of one sandboxed child: its pipes, its requests, its deadline and its verdict.

Standard library only, imports relative: ``agentopt export`` copies the sandbox into packages.
"""

from __future__ import annotations

import json
import math
import os
import selectors
import signal
import subprocess
import time
from typing import Any

from .errors import BudgetExhausted
from .sandbox_child import BLOCKED_STATUS
from .sandbox_limits import STDOUT_TAIL_CHARS, LLMHandler, Limits, SandboxResult
from .sandbox_secrets import Redactor

_CHILD_KINDS = frozenset({"memory", "output", "exception"})
# What the child may send beyond max_output_bytes: the stdout tail repeated in the result (at most
# 12 bytes per character once JSON-escaped) and the message envelope.
_SLACK_BYTES = 12 * STDOUT_TAIL_CHARS + 4_096
_EXIT_GRACE_S = 2.0
_STDERR_TAIL_BYTES = 4_096


class Session:
    """One child seen from the parent: feeds it, answers its requests, enforces wall time and
    output, records refused actions as they are reported, and classifies how it ended. All pipes
    are non-blocking, so a child that stops reading or never writes cannot hang the parent past its
    deadline. When serving, the child stops to wait for each call: only its time between a call and
    its value is charged to ``wall_s``."""

    def __init__(self, proc: subprocess.Popen[bytes], llm: LLMHandler | None, limits: Limits,
                 redact: Redactor, serving: bool) -> None:
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
