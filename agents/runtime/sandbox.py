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
refusal whose report was lost still leaves ``BLOCKED_STATUS``). Exits without a result are
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

Standard library only, imports relative: ``agentopt export`` copies the sandbox (this module and
:data:`FILES`) into packages, so an exported code agent runs confined exactly as it did during the
campaign. The parent's side is here and in ``sandbox_limits`` (what a run may use, how it ended),
``sandbox_secrets`` (masking) and ``sandbox_session`` (one child's pipes and verdict); the child's
is ``sandbox_child`` (the protocol and the agent's run), ``sandbox_kernel`` and ``sandbox_hook``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

from .errors import AgentoptError
from .sandbox_child import decode_plain, encode_plain
from .sandbox_limits import KINDS, STDOUT_TAIL_CHARS, LLMHandler, Limits, SandboxResult
from .sandbox_secrets import Redactor, register_secret
from .sandbox_session import Session

__all__ = ["FILES", "KINDS", "STDOUT_TAIL_CHARS", "LLMHandler", "Limits", "SandboxCallError", "SandboxError",
           "SandboxResult", "SandboxedFunction", "register_secret", "run_sandboxed"]

_CHILD = Path(__file__).with_name("sandbox_child.py")
FILES = tuple(Path(__file__).with_name(name) for name in (
    "sandbox_limits.py", "sandbox_secrets.py", "sandbox_session.py",  # the parent's, besides this one
    "sandbox_child.py", "sandbox_kernel.py", "sandbox_hook.py"))  # the child's, run from their files
"""The files this module runs with, which ``agentopt export`` copies beside it."""


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
           serve: bool) -> Iterator[Session]:
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
        session = Session(proc, llm, limits, Redactor.current(), serve)
        try:
            session.start(job)
            yield session
        finally:
            session.end()


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
