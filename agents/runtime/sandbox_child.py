"""The child half of :mod:`agentopt.agents.runtime.sandbox`: confines its own process, then runs one agent.

The parent starts this file as ``python -I -S -B sandbox_child.py``: it imports the standard library
only (never the package it sits in), so an agent can neither import agentopt nor anything installed
beside it. Its two companions, ``sandbox_kernel.py`` (the kernel layers) and ``sandbox_hook.py`` (the
interpreter layers and the audit hook), are standard-library code too, loaded from their files at
start, before anything else runs. Before any agent code exists in the process, and in this order, it:
loads the stdlib extension modules agents may use, asks to die with the parent, lowers its rlimits,
enters new network and mount namespaces and a minimal root (where the kernel permits), installs a
seccomp filter, makes ctypes (which those steps need) unreachable, swaps stdout/stderr for a capped
buffer, takes native-code loading away and finally installs the audit hook. Why each layer exists,
and what none of them stops, is in the parent module's docstring.

Protocol, one JSON object per line. Parent to child on stdin: the job, then ``{"ok": true, "text":
...}`` or ``{"ok": false, "error": ...}`` per LLM request. Child to parent on a duplicate of the
original stdout (fd 1 itself is pointed at stderr, so stray native writes cannot forge a message):
``{"type": "llm", "request": {...}}``, ``{"type": "blocked", "reason": ...}`` from the audit hook
the moment it refuses an action (the process then exits with :data:`BLOCKED_STATUS`) and, last,
``{"type": "result", "ok": ..., ...}``. When the job says ``serve``, the loaded entry is called once
per parent message instead: the child sends ``{"type": "ready"}``, then answers each ``{"call":
{"args": ..., "kwargs": ...}}`` with ``{"type": "return", "value": ...}`` (both sides in
:func:`encode_plain`'s form) until ``{"stop": true}``. The agent shares the process and its
descriptors, so it can write any of these itself: the parent treats every message as a claim, and
decides nothing from one that an agent could gain by forging (see the parent module).
"""

from __future__ import annotations

import _thread
import _weakref
import builtins
import collections.abc
import gc
import io
import json
import os
import sys
import types

# Names for the type checker only. The child never imports typing (nor ctypes at module level): it
# loads no more than it runs on, and this constant stands in for typing.TYPE_CHECKING.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import BinaryIO, TypedDict

    from .sandbox_kernel import Confinement

    class _Job(Confinement):
        """The parent's first line (``sandbox._job``): the call, its Limits, and (in
        :class:`~.sandbox_kernel.Confinement`) where it runs."""

        code: str
        entry: str
        args: list[object]
        serve: bool
        stdout_tail_chars: int
        wall_s: float
        max_output_bytes: int
        max_llm_calls: int

    class _Call(TypedDict):
        """A call to serve, both sides in :func:`encode_plain`'s form."""

        args: object
        kwargs: object

    class _Reply(TypedDict, total=False):
        """A parent message after the job: an LLM reply, a call to serve, or stop."""

        ok: bool
        text: str
        error: str
        call: _Call
        stop: bool


def _companion(name: str) -> types.ModuleType:
    """``name``.py from this file's folder, as a module of its own. ``-I`` leaves the folder off
    ``sys.path``, and putting it there would let an agent import everything beside this file
    (agentopt's own modules); the module is not entered in ``sys.modules`` either, so an agent
    cannot import it by name."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), name + ".py")
    module = types.ModuleType(name)
    module.__file__ = path
    with open(path, encoding="utf-8") as source:
        exec(compile(source.read(), path, "exec"), module.__dict__)
    return module


if TYPE_CHECKING or __package__:  # imported by the parent: the package's modules, compiled once
    from . import sandbox_hook as _hook
    from . import sandbox_kernel as _kernel
else:  # run as the child (or loaded from this file alone by a test)
    _hook, _kernel = _companion("sandbox_hook"), _companion("sandbox_kernel")

BLOCKED_STATUS = _hook.BLOCKED_STATUS
"""The exit status of a child whose audit hook refused an action (even if its notice was lost)."""
_PLAIN_TAGS = {"tuple": tuple, "set": set, "frozenset": frozenset}  # encode_plain's tags, dict aside


class _Link:
    """The child's end of the protocol, and the output budget that prints and messages share."""

    def __init__(self, fd: int, replies: BinaryIO, job: _Job) -> None:
        self._fd, self._replies = fd, replies
        self._max_bytes = int(job["max_output_bytes"])
        self._tail_chars = int(job["stdout_tail_chars"])
        self._spent = 0
        self._tail: list[str] = []
        self._tail_len = 0
        self._lock = _thread.allocate_lock()

    def printed(self, text: str) -> None:
        size = len(text)  # a UTF-8 byte count, unless the text is over budget on characters alone
        self._spend(size if size > self._max_bytes else len(text.encode("utf-8", "surrogatepass")))
        with self._lock:
            self._tail.append(text)
            self._tail_len += size
            if self._tail_len > 2 * self._tail_chars:
                self._tail = [self.tail()]
                self._tail_len = len(self._tail[0])

    def tail(self) -> str:
        return "".join(self._tail)[-self._tail_chars:]

    def ask(self, line: str) -> _Reply:
        """Send one LLM request and block for the parent's answer."""
        self._spend(len(line))
        self._write(line)
        reply = self._replies.readline()
        if not reply:
            os._exit(1)  # the parent is gone
        message: _Reply = json.loads(reply)  # a line the parent wrote in this form (sandbox.py)
        return message

    def finish(self, message: dict[str, object], value: object = None) -> None:
        """Send the result and leave at once: the agent's threads and atexit handlers must not run."""
        if message["ok"]:
            message = self._with_value(value)
        self._write(json.dumps({"type": "result", **message, "stdout": self.tail()}, allow_nan=False))
        os._exit(0)

    def _with_value(self, value: object) -> dict[str, object]:
        try:
            size = len(json.dumps(value, allow_nan=False))  # ASCII: characters are bytes
        except (TypeError, ValueError, RecursionError) as exc:
            return _failure("exception", f"exception: return value is not JSON-serialisable: {exc}")
        if self._spent + size > self._max_bytes:
            return _failure("output", f"killed: output over {self._max_bytes} bytes (return value of {size} bytes)")
        return {"ok": True, "value": value}

    def _spend(self, n: int) -> None:
        self._spent += n
        if self._spent > self._max_bytes:
            self.finish(_failure("output", f"killed: output over {self._max_bytes} bytes"))

    def _write(self, line: str) -> None:
        data = (line + "\n").encode()
        try:
            while data:
                data = data[os.write(self._fd, data):]
        except OSError:
            os._exit(1)


class _Capture(io.TextIOBase):
    """The agent's ``sys.stdout`` and ``sys.stderr``: prints stay in memory, so they can neither
    corrupt the protocol nor escape the output budget."""

    def __init__(self, link: _Link) -> None:
        self._link = link

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        self._link.printed(text)
        return len(text)


def main() -> None:
    replies = sys.stdin.buffer
    job: _Job = json.loads(replies.readline())  # the parent's job line (sandbox._job)
    protocol_fd = os.dup(1)
    link = _Link(protocol_fd, replies, job)
    os.dup2(2, 1)
    read_roots = _stdlib_roots()
    _confine(job, read_roots)
    sys.stdout = sys.stderr = _Capture(link)
    sys.stdin = io.StringIO()
    _hook.lock_interpreter(job["workdir"])
    _hook.install_audit_hook(job["workdir"], read_roots + (_hook.ZONEINFO,), protocol_fd)
    link.finish(*_run(job, link))


def encode_plain(value: object) -> object:
    """Plain data (None, bool, int, float, str, and lists, tuples, sets, frozensets and dicts of
    them) in a JSON form that keeps the types JSON lacks: ``{"tuple": [...]}``, ``{"set": [...]}``,
    ``{"frozenset": [...]}``, ``{"dict": [[key, value], ...]}``. Types must match exactly, so an
    object that merely compares equal to everything (or an ``int`` subclass that does) is a
    TypeError, not data."""
    kind = type(value)
    if value is None or kind in (bool, int, float, str):
        return value
    if type(value) is list:
        return [encode_plain(item) for item in value]
    if type(value) is dict:
        return {"dict": [[encode_plain(key), encode_plain(item)] for key, item in value.items()]}
    if type(value) is tuple or type(value) is set or type(value) is frozenset:
        return {kind.__name__: [encode_plain(item) for item in value]}
    raise TypeError(f"{kind.__name__} is not plain data")


def decode_plain(data: object) -> object:
    """The value :func:`encode_plain` encoded, from what ``json.loads`` parsed. It builds built-in
    types only, so whatever the data came from, its comparisons are Python's own. ValueError
    (TypeError for an unhashable key) when the data is not in that form."""
    kind = type(data)
    if data is None or kind in (bool, int, float, str):
        return data
    if type(data) is list:
        return [decode_plain(item) for item in data]
    if type(data) is dict and len(data) == 1:
        ((tag, items),) = data.items()
        if type(items) is list and tag in _PLAIN_TAGS:
            return _PLAIN_TAGS[tag](decode_plain(item) for item in items)
        if type(items) is list and tag == "dict" and all(type(p) is list and len(p) == 2 for p in items):
            return {decode_plain(key): decode_plain(item) for key, item in items}
    raise ValueError(f"not encoded plain data: {str(data)[:80]}")


def _stdlib_roots() -> tuple[str, ...]:
    """Where the interpreter reads its stdlib: with -I -S, exactly sys.path (no site-packages),
    as named there (imports open those paths) and as resolved."""
    roots = sorted({q for p in sys.path if os.path.isdir(p) for q in (os.path.abspath(p), os.path.realpath(p))})
    return tuple(r for r in roots if not any(r.startswith(o + "/") for o in roots))


def _confine(job: _Job, read_roots: tuple[str, ...]) -> None:
    """The kernel-enforced layers, set up through ctypes, which is then made unreachable. The
    extension modules are loaded first, so that the only classes the set-up adds are ctypes' own."""
    _hook.preload()
    known = _classes()
    _kernel.kernel_layers(job, read_roots + (_hook.ZONEINFO,), _hook.DEVICES)
    _forget_ctypes(known)
    gc.collect()  # what is left of ctypes is cyclic garbage (modules, classes, the libc handle)


def _classes() -> dict[int, type]:
    """Every class ``object.__subclasses__()`` leads to, directly or not, by id."""
    found: dict[int, type] = {}
    stack = [object]
    while stack:
        for sub in type.__subclasses__(stack.pop()):
            if id(sub) not in found:
                found[id(sub)] = sub
                stack.append(sub)
    return found


def _forget_ctypes(known: dict[int, type]) -> None:
    """Leave no way from Python to the classes the set-up added (``known`` is every class before).

    Dropping ctypes from ``sys.modules`` is not enough: ``_ctypes`` is an extension whose classes
    are static, so they are never freed, and ``object.__subclasses__()`` would still lead an agent
    to ``_ctypes._Pointer``, whose indexing reads and writes any address without an audit event
    (the route to disabling the hook). Each class is listed in its bases' subclass registries,
    ``{id(cls): weakref(cls)}`` dicts found here through the weak references; removing it there
    hides it from ``__subclasses__`` alone (the interpreter also walks them to invalidate caches
    when a base changes, and these bases, builtins and ctypes' own, never change). After this, only
    walking the heap, which the hook refuses, or re-importing ctypes, refused too, would find them.
    Fails closed: a run whose set-up left one reachable never gets to agent code."""
    for name in [n for n in sys.modules if n.split(".")[0] in ("ctypes", "_ctypes")]:
        del sys.modules[name]
    added = {key: cls for key, cls in _classes().items() if key not in known}
    refs = [ref for cls in added.values() for ref in _weakref.getweakrefs(cls)]
    for holder in gc.get_referrers(*refs):
        if type(holder) is dict:
            for key in [k for k in holder if type(k) is int and k in added]:
                if type(holder[key]) is _weakref.ReferenceType and holder[key]() is added[key]:
                    del holder[key]
    left = [cls.__qualname__ for key, cls in _classes().items() if key not in known]
    if left:
        raise RuntimeError(f"classes added by the set-up are still reachable: {', '.join(left)}")


def _run(job: _Job, link: _Link) -> tuple[dict[str, object], object]:
    """Compile the agent, call its entry (or serve calls to it); every failure becomes a result,
    never a traceback."""
    namespace = {"__name__": "agent", "__builtins__": builtins,
                 "call_llm": _llm_proxy(link, int(job["max_llm_calls"]))}
    try:
        exec(compile(str(job["code"]), "<agent>", "exec"), namespace)
        function = namespace.get(str(job["entry"]))
        if not callable(function):
            return _failure("exception", f"exception: the code defines no function named {job['entry']!r}"), None
        if job["serve"]:
            return _serve(function, link), None
        return {"ok": True}, function(*job["args"])
    except MemoryError:
        return _failure("memory", f"memory limit: {job['memory_mb']} MB exceeded"), None
    except BaseException as exc:  # SystemExit and KeyboardInterrupt from an agent are failures too
        return _failure("exception", f"exception: {_describe(exc)}"), None


def _serve(function: collections.abc.Callable[..., object], link: _Link) -> dict[str, object]:
    """Call ``function`` once per call the parent sends and send back each value as plain data,
    until the parent says stop. Nothing here needs to hold against the agent: the parent only takes
    values from it and does every comparison itself."""
    reply = link.ask(json.dumps({"type": "ready"}))
    while "call" in reply:
        call = reply["call"]
        # The parent encodes a tuple and a dict (sandbox.py). Not checked here with isinstance: that
        # would look up ``tuple`` and ``dict`` in builtins, which the agent's code may have replaced.
        args: tuple[object, ...] = decode_plain(call["args"])  # type: ignore[assignment]  # see above
        kwargs: dict[str, object] = decode_plain(call["kwargs"])  # type: ignore[assignment]  # see above
        value = function(*args, **kwargs)
        try:
            encoded = encode_plain(value)
        except (TypeError, RecursionError) as exc:
            return _failure("exception", f"exception: the return value is not plain data: {exc}")
        reply = link.ask(json.dumps({"type": "return", "value": encoded}))
    return {"ok": True}


def _llm_proxy(link: _Link, max_calls: int) -> collections.abc.Callable[..., str]:
    lock = _thread.allocate_lock()
    calls = 0

    def call_llm(messages: list[dict[str, str]], **params: object) -> str:
        """Ask the parent's LLM and block for the reply text. ``messages`` are chat messages
        (``{"role": ..., "content": ...}``), ``params`` options such as ``temperature``. A failed
        call raises RuntimeError("LLM error: ...") rather than returning an empty answer, so the
        failure is recorded as one. Thread-safe; calls are answered one at a time."""
        nonlocal calls
        line = json.dumps({"type": "llm", "request": {"messages": messages, **params}})
        with lock:
            if calls >= max_calls:
                raise RuntimeError(f"too many LLM calls (limit {max_calls})")
            calls += 1
            reply = link.ask(line)
        if reply.get("ok") is True and isinstance(reply.get("text"), str):
            return reply["text"]
        raise RuntimeError(f"LLM error: {reply.get('error', 'malformed reply')}")

    return call_llm


def _failure(kind: str, error: str) -> dict[str, object]:
    return {"ok": False, "kind": kind, "error": error}


def _describe(exc: BaseException) -> str:
    """'ZeroDivisionError: division by zero (agent line 3)'; the agent's own __str__ may fail."""
    try:
        text = str(exc)
    except BaseException:
        text = "<unprintable>"
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<agent>":
            line = tb.tb_lineno
        tb = tb.tb_next
    where = f" (agent line {line})" if line is not None else ""
    return (f"{type(exc).__name__}: {text}" if text else type(exc).__name__) + where


if __name__ == "__main__":
    try:
        main()
    except BaseException as exc:  # a failure of the runner itself: tell the parent on stderr
        os.write(2, f"sandbox runner failed: {exc!r}\n".encode(errors="replace"))
        os._exit(3)
