"""The child half of :mod:`agentopt.agents.sandbox`: confines its own process, then runs one agent.

The parent starts this file as ``python -I -S -B sandbox_child.py``: it imports the standard library
only (never the package it sits in), so an agent can neither import agentopt nor anything installed
beside it. Before any agent code exists in the process, and in this order, it: loads the stdlib
extension modules agents may use, asks to die with the parent, lowers its rlimits, enters new
network and mount namespaces and a minimal root (where the kernel permits), installs a seccomp
filter, makes ctypes (which those steps need) unreachable, swaps stdout/stderr for a capped buffer,
takes native-code loading away and finally installs the audit hook. Why each layer exists, and what
none of them stops, is in the parent module's docstring.

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

import _imp
import _json
import _signal  # type: ignore[import-not-found]  # private C module under signal: typeshed has no stub
import _thread
import _weakref
import builtins
import collections
import collections.abc
import gc
import io
import json
import math
import os
import posix
import resource
import struct
import sys
import types

# Names for the type checker only. The child never imports typing (nor ctypes at module level): it
# loads no more than it runs on, and this constant stands in for typing.TYPE_CHECKING.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import ctypes
    from importlib.machinery import ModuleSpec
    from typing import BinaryIO, NoReturn, TypedDict, TypeGuard, TypeVar

    _T = TypeVar("_T")
    _Insn = tuple[int, int | str, int | str, int]
    """A BPF instruction (code, jt, jf, k); a jump is an offset or a label."""

    class _Job(TypedDict):
        """The parent's first line (``sandbox._job``): the call, where it runs, and its Limits."""

        code: str
        entry: str
        args: list[object]
        serve: bool
        workdir: str
        root: str
        parent_pid: int
        stdout_tail_chars: int
        cpu_s: float
        wall_s: float
        memory_mb: int
        max_output_bytes: int
        max_llm_calls: int
        max_processes: int
        max_file_mb: int

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

# Compiled-in and lib-dynload modules an agent may import. They are loaded before the seccomp filter
# forbids mapping new executable code and before ``_imp`` loses its loaders; anything not here (and
# not blocked below, with a reason) is simply not importable in the sandbox.
_EXTENSIONS = (
    "_bisect", "_blake2", "_bz2", "_codecs_cn", "_codecs_hk", "_codecs_iso2022", "_codecs_jp",
    "_codecs_kr", "_codecs_tw", "_contextvars", "_csv", "_datetime", "_decimal", "_elementtree",
    "_hashlib", "_heapq", "_json", "_lzma", "_md5", "_multibytecodec", "_opcode", "_pickle", "_queue",
    "_random", "_sha1", "_sha256", "_sha3", "_sha512", "_socket", "_statistics", "_struct", "_typing",
    "_uuid", "_zoneinfo", "array", "binascii", "cmath", "fcntl", "math", "pyexpat", "select",
    "unicodedata", "zlib",
)

# Audit events refused outright, with the reason reported to the caller.
_BLOCKED_EVENTS = {
    **dict.fromkeys(("os.system", "os.exec", "os.fork", "os.forkpty", "os.posix_spawn", "os.spawn",
                     "subprocess.Popen", "pty.spawn", "os.startfile", "webbrowser.open"), "process creation"),
    **dict.fromkeys(("os.kill", "os.killpg", "signal.pthread_kill"), "signalling a process"),
    **dict.fromkeys(("os.link", "os.symlink"), "creating a link"),
    **dict.fromkeys(("sqlite3.connect", "sqlite3.enable_load_extension", "sqlite3.load_extension"),
                    "database access"),
    **dict.fromkeys(("resource.setrlimit", "resource.prlimit"), "changing resource limits"),
    # Hand-made bytecode and tracing can corrupt the interpreter or rewrite the hook's locals.
    **dict.fromkeys(("code.__new__", "marshal.load", "marshal.loads"), "loading bytecode"),
    **dict.fromkeys(("sys.settrace", "sys.setprofile"), "tracing the interpreter"),
    **dict.fromkeys(("gc.get_objects", "gc.get_referrers", "gc.get_referents"), "walking the heap"),
    "sys.addaudithook": "adding an audit hook",
    "cpython.PyInterpreterState_New": "starting a sub-interpreter",
}
_BLOCKED_PREFIXES = (("socket.", "network access"), ("ctypes.", "native code"))
# Modules refused at import (by top-level name): what they do happens in C, out of the hook's sight.
_BLOCKED_IMPORTS = {
    **dict.fromkeys(("ctypes", "_ctypes"), "native code"),
    **dict.fromkeys(("_posixsubprocess", "multiprocessing", "_multiprocessing", "_posixshmem"),
                    "process creation"),
    **dict.fromkeys(("sqlite3", "_sqlite3", "dbm", "_dbm", "_gdbm"), "database access"),
    **dict.fromkeys(("pwd", "grp", "spwd"), "reading the user database"),
    **dict.fromkeys(("_xxsubinterpreters", "_testcapi", "_testinternalcapi"), "interpreter internals"),
}
# Audit events naming paths: the argument positions holding them, whether the call writes (None:
# an open, decided by its flags), and whether it yields a descriptor (which may be used as a dir_fd).
_PATH_EVENTS = {
    "open": ((0,), None, True),
    **dict.fromkeys(("os.listdir", "os.scandir"), ((0,), False, False)),
    **dict.fromkeys(("os.chdir", "os.mkdir", "os.remove", "os.rmdir", "os.chmod", "os.chown", "os.utime",
                     "os.truncate", "os.chflags", "os.lchflags", "os.setxattr", "os.removexattr",
                     "shutil.rmtree"), ((0,), True, False)),
    "os.rename": ((0, 1), True, False),
}
_DEVICES = ("/dev/null", "/dev/urandom")
_ZONEINFO = "/usr/share/zoneinfo"
BLOCKED_STATUS = 86
"""The exit status of a child whose audit hook refused an action (even if its notice was lost)."""
_PLAIN_TAGS = {"tuple": tuple, "set": set, "frozenset": frozenset}  # encode_plain's tags, dict aside

# Linux constants (uapi headers).
_PR_SET_PDEATHSIG, _PR_SET_NO_NEW_PRIVS, _PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 1, 38, 22, 2
_CLONE_NEWNS, _CLONE_NEWNET, _CLONE_THREAD = 0x00020000, 0x40000000, 0x00010000
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 1, 2, 4, 8
_MS_REMOUNT, _MS_BIND, _MS_REC, _MS_PRIVATE = 32, 4096, 16384, 1 << 18
_SIGKILL, _EPERM, _ENOSYS, _PROT_EXEC = 9, 1, 38, 4

# Per architecture: its audit arch, whether x32 numbers (bit 30) must be refused, the syscalls the
# filter refuses outright (process creation other than threads, pidfds, sockets, tracing other
# processes, namespaces and mounts, kernel modules and keys, raising rlimits, device nodes, other
# processes' scheduling), and the few it allows only with some arguments. Numbers from the kernel's
# unistd headers.
_Syscalls = collections.namedtuple("_Syscalls", "arch x32 deny clone clone3 signals maps prlimit")
_SYSCALLS = {
    "x86_64": _Syscalls(
        arch=0xC000003E, x32=True,
        deny=(57, 58, 59, 322, 434, 424, 438, 41, 53, 101, 310, 311, 165, 166, 272, 308, 155, 161, 169, 175,
              313, 176, 246, 320, 321, 298, 250, 248, 249, 323, 425, 304, 303, 430, 432, 429, 428, 433, 442,
              167, 168, 172, 173, 160, 133, 259, 141, 142, 144, 203, 314, 251),
        clone=56, clone3=435, signals=(62, 200, 234, 129, 297), maps=(9, 10, 329), prlimit=302),
    "aarch64": _Syscalls(
        arch=0xC00000B7, x32=False,
        deny=(221, 281, 434, 424, 438, 198, 199, 117, 270, 271, 40, 39, 97, 268, 41, 51, 142, 105, 273, 106,
              104, 294, 280, 241, 219, 217, 218, 282, 425, 265, 264, 430, 432, 429, 428, 433, 442, 224, 225,
              164, 33, 140, 118, 119, 122, 274, 30),
        clone=220, clone3=435, signals=(129, 130, 131, 138, 240), maps=(222, 226, 288), prlimit=261),
}


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
    _lock_interpreter(job["workdir"])
    _install_audit_hook(job["workdir"], read_roots + (_ZONEINFO,), protocol_fd)
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
    _preload()
    known = _classes()
    _kernel_layers(job, read_roots)
    _forget_ctypes(known)
    gc.collect()  # what is left of ctypes is cyclic garbage (modules, classes, the libc handle)


def _kernel_layers(job: _Job, read_roots: tuple[str, ...]) -> None:
    """Each layer is best effort except the rlimits, because a kernel or container may refuse
    namespaces or seccomp while the hook and the other layers still hold."""
    import ctypes  # only the set-up may see ctypes: _forget_ctypes makes it unreachable

    libc = ctypes.CDLL(None, use_errno=True)
    _prctl(libc, _PR_SET_PDEATHSIG, _SIGKILL)
    if os.getppid() != job["parent_pid"]:
        os._exit(1)  # the parent died before the death signal was armed
    try:  # glibc dlopens it lazily to unwind exiting threads: map it before the filter forbids that
        ctypes.CDLL("libgcc_s.so.1")
    except OSError:
        pass
    _lower_rlimits(job)
    libc.unshare(_CLONE_NEWNET)
    _enter_private_root(libc, str(job["root"]), str(job["workdir"]), read_roots)
    _install_seccomp(libc)


def _preload() -> None:
    for name in (*sys.builtin_module_names, *_EXTENSIONS):
        if name not in _BLOCKED_IMPORTS:
            try:
                __import__(name)
            except ImportError:
                pass


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


def _lower_rlimits(job: _Job) -> None:
    cpu = math.ceil(float(job["cpu_s"]))
    memory = int(job["memory_mb"]) * 2**20
    with open("/proc/loadavg") as f:  # "0.1 0.2 0.3 running/total last_pid"
        tasks = int(f.read().split()[3].split("/")[1])
    # RLIMIT_NPROC counts every task of the user, so the child may add max_processes to all the
    # machine runs now (an upper bound of the user's share); root is exempt from it anyway.
    for which, soft, hard in ((resource.RLIMIT_CPU, cpu, cpu + 1), (resource.RLIMIT_AS, memory, memory),
                              (resource.RLIMIT_FSIZE, int(job["max_file_mb"]) * 2**20, None),
                              (resource.RLIMIT_NPROC, tasks + int(job["max_processes"]), None),
                              (resource.RLIMIT_CORE, 0, None)):
        old = resource.getrlimit(which)[1]
        hard = soft if hard is None else hard
        hard = hard if old == resource.RLIM_INFINITY else min(hard, old)
        resource.setrlimit(which, (min(soft, hard), hard))


def _enter_private_root(libc: ctypes.CDLL, root: str, workdir: str, read_roots: tuple[str, ...]) -> None:
    """A new mount namespace whose root holds only the stdlib (read-only), the work directory
    (no exec) and /dev/null: files the agent is not given do not exist for it, even if it got past
    the audit hook. Paths stay the same, so the hook's rules read the same with or without it."""
    import ctypes

    def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
        if libc.mount(*(s.encode() if s else None for s in (source, target, fstype)), ctypes.c_ulong(flags),
                      data.encode() if data else None) != 0:
            raise OSError(ctypes.get_errno(), f"mount {target}")

    def bind(path: str, flags: int) -> None:
        target = root + path
        if os.path.isdir(path):
            os.makedirs(target, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            open(target, "w").close()
        mount(path, target, None, _MS_BIND | _MS_REC)
        mount(None, target, None, _MS_REMOUNT | _MS_BIND | _MS_NOSUID | flags)

    if libc.unshare(_CLONE_NEWNS) != 0:
        return
    try:
        mount(None, "/", None, _MS_REC | _MS_PRIVATE)
        mount("tmpfs", root, "tmpfs", _MS_NOSUID | _MS_NODEV, "size=1m,mode=0755")
        for path in read_roots + (_ZONEINFO,):
            if os.path.exists(path):
                bind(path, _MS_RDONLY | _MS_NODEV)
        for path in _DEVICES:
            bind(path, _MS_RDONLY | _MS_NOEXEC)
        bind(workdir, _MS_NODEV | _MS_NOEXEC)
        mount(None, root, None, _MS_REMOUNT | _MS_RDONLY | _MS_NOSUID | _MS_NODEV | _MS_NOEXEC)
    except OSError:
        return  # the half-built root is private to this namespace; the other layers still hold
    os.chroot(root)
    os.chdir(workdir)


def _install_seccomp(libc: ctypes.CDLL) -> None:
    """A kernel filter, inherited by every thread: no processes (threads only), no signals to
    anything but itself, no sockets, no new executable mappings, no namespace or mount changes,
    no raised rlimits. It is what still holds if an agent gets past the audit hook."""
    import ctypes

    table = _SYSCALLS.get(os.uname().machine)
    if table is None:
        return
    program = _bpf(table, os.getpid())

    class SockFprog(ctypes.Structure):
        _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_char_p))

    fprog = SockFprog(len(program) // 8, program)
    _prctl(libc, _PR_SET_NO_NEW_PRIVS, 1)
    _prctl(libc, _PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.addressof(fprog))


def _prctl(libc: ctypes.CDLL, option: int, *args: int) -> None:
    """prctl is variadic: pass all four arguments as full-width longs (unused ones must be 0)."""
    import ctypes

    libc.prctl(ctypes.c_int(option), *(ctypes.c_ulong(a) for a in (*args, 0, 0, 0, 0)[:4]))


def _bpf(table: _Syscalls, pid: int) -> bytes:
    """The classic-BPF program (struct sock_filter[]) for one architecture; jumps go forward to labels."""
    ld, jeq, jge, jset, ret = 0x20, 0x15, 0x35, 0x45, 0x06
    nr, arch, arg0, arg2, arg2_high = 0, 4, 16, 32, 36  # offsets in struct seccomp_data (little endian)
    program: list[_Insn] = [(ld, 0, 0, arch), (jeq, 1, 0, table.arch), (ret, 0, 0, 0x80000000), (ld, 0, 0, nr)]
    if table.x32:
        program.append((jge, "deny", 0, 0x40000000))
    program += [(jeq, "deny", 0, n) for n in table.deny]
    program += [(jeq, "nosys", 0, table.clone3), (jeq, "clone", 0, table.clone), (jeq, "prlimit", 0, table.prlimit)]
    program += [(jeq, "signal", 0, n) for n in table.signals]
    program += [(jeq, "map", 0, n) for n in table.maps]
    program.append((ret, 0, 0, 0x7FFF0000))
    blocks: dict[str, list[_Insn]] = {  # glibc falls back from clone3 to clone, whose flags a filter can read
        "clone": [(ld, 0, 0, arg0), (jset, "allow", "deny", _CLONE_THREAD)],
        "signal": [(ld, 0, 0, arg0), (jeq, "allow", "deny", pid)],
        "map": [(ld, 0, 0, arg2), (jset, "deny", "allow", _PROT_EXEC)],
        "prlimit": [(ld, 0, 0, arg2), (jeq, 0, "deny", 0), (ld, 0, 0, arg2_high), (jeq, "allow", "deny", 0)],
        "allow": [(ret, 0, 0, 0x7FFF0000)],
        "deny": [(ret, 0, 0, 0x00050000 | _EPERM)],
        "nosys": [(ret, 0, 0, 0x00050000 | _ENOSYS)],
    }
    labels: dict[str, int] = {}
    for label, block in blocks.items():
        labels[label] = len(program)
        program += block

    def offset(target: int | str, at: int) -> int:
        jump = labels[target] - at - 1 if isinstance(target, str) else target
        assert 0 <= jump < 256, "seccomp jump out of range"
        return jump

    return b"".join(struct.pack("HBBI", code, offset(jt, i), offset(jf, i), k)
                    for i, (code, jt, jf, k) in enumerate(program))


def _lock_interpreter(workdir: str) -> None:
    """Remove, before the hook is installed, what it could not see being used: the loaders of native
    modules, and the few posix calls that no audit event covers."""
    _imp.create_dynamic = _imp.create_builtin = _refuse_native
    for module, names in ((os, ("pidfd_open", "mknod", "mkfifo", "chroot")),
                          (posix, ("pidfd_open", "mknod", "mkfifo", "chroot")),
                          (_signal, ("pidfd_send_signal",))):
        for name in names:
            if hasattr(module, name):
                delattr(module, name)
    # Compile imports from source: reading a stdlib .pyc would need marshal, which the hook refuses.
    sys.pycache_prefix = os.path.join(workdir, ".no-pycache")


def _refuse_native(spec: ModuleSpec, file: object = None) -> NoReturn:
    """Stands in for _imp's loaders: ImportError, so that optional accelerators fall back."""
    raise ImportError(f"native module {getattr(spec, 'name', spec)!r} cannot be loaded in the sandbox")


def _install_audit_hook(workdir: str, read_roots: tuple[str, ...], notice_fd: int) -> None:
    """Last step before agent code. The hook cannot be removed, but it shares the interpreter with
    the agent, which may monkeypatch any module or builtin: so the hook looks nothing up at call
    time (everything is a closure variable bound here) and reads its arguments by exact type,
    never calling a method an agent could override (tests check its code has no global lookups).

    A refused action is reported to the parent on ``notice_fd`` and ends the process on the spot,
    whether the report got through or not: the agent never regains control, so it cannot catch
    the refusal and then forge a clean result, and the record lives in the parent, not here."""
    blocked = types.MappingProxyType(dict(_BLOCKED_EVENTS))
    prefixes = _BLOCKED_PREFIXES
    imports = types.MappingProxyType(dict(_BLOCKED_IMPORTS))
    path_events = types.MappingProxyType(dict(_PATH_EVENTS))
    devices = frozenset(_DEVICES)
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    getcwd, stat, decode, copy_str = os.getcwd, os.stat, bytes.decode, str.__str__
    type_, str_, bytes_, int_, os_error = type, str, bytes, int, OSError
    write, leave, status = os.write, os._exit, BLOCKED_STATUS
    quote, to_bytes = _json.encode_basestring_ascii, str.encode

    def exactly(value: object, kind: type[_T]) -> TypeGuard[_T]:
        """``type(value) is kind``, as the type checker can follow it (it cannot through ``type_``)."""
        return type_(value) is kind

    def resolve(path: object) -> str | None:
        """The absolute path, worked out lexically; None for a non-str path or one with '..'
        (a path object could name one file to the hook and another to open())."""
        if path is None:
            path = "."
        if exactly(path, bytes_):
            path = decode(path, "utf-8", "surrogateescape")
        elif not exactly(path, str_):
            return None
        if not path.startswith("/"):
            path = getcwd() + "/" + path
        parts = []
        for part in path.split("/"):
            if part == "..":
                return None
            if part and part != ".":
                parts.append(part)
        return "/" + "/".join(parts)

    def under(path: str, root: str) -> bool:
        return path == root or path.startswith(root + "/")

    def check_path(arg: object, write: bool, opening: bool) -> str | None:
        if type_(arg) is int_:
            return None  # a descriptor the process already holds
        path = resolve(arg)
        if path is None:
            return "file access through a non-str path or one with '..'"
        if path in devices:
            return None
        own = under(path, workdir)
        if not own and write:
            return "file write outside the sandbox (" + path + ")"
        if not own:
            readable = False
            for root in read_roots:
                readable = readable or under(path, root)
            if not readable:
                return "file read outside the sandbox (" + path + ")"
        if not opening:
            return None
        try:
            kind = stat(path).st_mode & 0o170000
        except os_error:
            return None  # nothing there yet
        if kind == 0o100000 or (own and kind == 0o040000):
            return None
        # A descriptor of a directory outside would let a relative path with dir_fd escape.
        return "opening a directory or special file (" + path + ")"

    def check(event: str, args: tuple[object, ...]) -> str | None:
        if type_(event) is not str_:
            return None
        reason = blocked.get(event)
        if reason is not None:
            return reason + " (" + event + ")"
        for prefix, reason in prefixes:
            if event.startswith(prefix):
                return reason + " (" + event + ")"
        if event == "import":
            name = copy_str(args[0])
            reason = imports.get(name.partition(".")[0])
            return None if reason is None else reason + " (import " + name + ")"
        spec = path_events.get(event)
        if spec is None:
            return None
        positions, write, opening = spec
        if write is None:
            write = not exactly(args[2], int_) or args[2] & write_flags != 0
        for position in positions:
            reason = check_path(args[position], write, opening)
            if reason is not None:
                return reason
        return None

    def hook(event: str, args: tuple[object, ...]) -> None:
        reason = check(event, args)
        if reason is not None:
            try:
                write(notice_fd, to_bytes('{"type": "blocked", "reason": ' + quote(reason) + "}\n"))
            finally:
                leave(status)

    sys.addaudithook(hook)


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
