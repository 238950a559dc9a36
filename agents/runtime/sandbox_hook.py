"""The child's interpreter-level layers: which modules an agent may load, what is taken out of its
reach before it runs, and the audit hook, installed last (see :mod:`agentopt.agents.runtime.sandbox`).

Loaded by ``sandbox_child.py`` from its own file, as standard-library-only code (the child never
imports the package it sits in). The hook cannot be removed, but it shares the interpreter with the
agent, which may monkeypatch any module or builtin: so it looks nothing up at call time (everything
is a closure variable bound when it is installed) and reads its arguments by exact type, never
calling a method an agent could override (tests check its code has no global lookups). A refused
action is reported to the parent and ends the process on the spot, whether the report got through
or not: the agent never regains control, so it cannot catch the refusal and then forge a clean
result, and the record lives in the parent, not here.
"""

from __future__ import annotations

import _imp
import _json
import _signal  # type: ignore[import-not-found]  # private C module under signal: typeshed has no stub
import os
import posix
import sys
import types

# Names for the type checker only: the child never imports typing (see sandbox_child.py).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from importlib.machinery import ModuleSpec
    from typing import NoReturn, TypeGuard, TypeVar

    _T = TypeVar("_T")
    _PathEvent = tuple[tuple[int, ...], bool | None, bool]
    """An entry of ``_PATH_EVENTS``: argument positions holding paths, writes (None: by the open flags), opens."""

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
DEVICES = ("/dev/null", "/dev/urandom")
"""Device files an agent may open (the minimal root holds them too)."""
ZONEINFO = "/usr/share/zoneinfo"
"""Read-only beside the stdlib, for ``zoneinfo``."""
BLOCKED_STATUS = 86
"""The exit status of a child whose audit hook refused an action (even if its notice was lost)."""


def preload() -> None:
    """Import the extension modules an agent may use while they can still be loaded."""
    for name in (*sys.builtin_module_names, *_EXTENSIONS):
        if name not in _BLOCKED_IMPORTS:
            try:
                __import__(name)
            except ImportError:
                pass


def lock_interpreter(workdir: str) -> None:
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


def install_audit_hook(workdir: str, read_roots: tuple[str, ...], notice_fd: int) -> None:
    """Last step before agent code: refuse the events and imports of the tables above and the file
    access :func:`_path_rules` refuses, reporting each refusal on ``notice_fd`` as the process ends.
    Everything it uses is bound here, before any agent code exists (see the module docstring)."""
    blocked = types.MappingProxyType(dict(_BLOCKED_EVENTS))
    prefixes = _BLOCKED_PREFIXES
    imports = types.MappingProxyType(dict(_BLOCKED_IMPORTS))
    path_events = types.MappingProxyType(dict(_PATH_EVENTS))
    check_paths = _path_rules(workdir, read_roots)
    type_, str_, copy_str = type, str, str.__str__
    write, leave, status = os.write, os._exit, BLOCKED_STATUS
    quote, to_bytes = _json.encode_basestring_ascii, str.encode

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
        return None if spec is None else check_paths(spec, args)

    def hook(event: str, args: tuple[object, ...]) -> None:
        reason = check(event, args)
        if reason is not None:
            try:
                write(notice_fd, to_bytes('{"type": "blocked", "reason": ' + quote(reason) + "}\n"))
            finally:
                leave(status)

    sys.addaudithook(hook)


def _path_rules(workdir: str, read_roots: tuple[str, ...]) -> Callable[[_PathEvent, tuple[object, ...]], str | None]:
    """The hook's file rules, bound like the hook itself: writes only under ``workdir``, reads under
    it, ``read_roots`` and :data:`DEVICES`, and no descriptor of a directory outside ``workdir``.
    Returns the check of one path event's arguments: the reason to refuse it, or None."""
    devices = frozenset(DEVICES)
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    getcwd, stat, decode = os.getcwd, os.stat, bytes.decode
    type_, str_, bytes_, int_, os_error = type, str, bytes, int, OSError

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

    def check_paths(spec: _PathEvent, args: tuple[object, ...]) -> str | None:
        positions, write, opening = spec
        if write is None:
            write = not exactly(args[2], int_) or args[2] & write_flags != 0
        for position in positions:
            reason = check_path(args[position], write, opening)
            if reason is not None:
                return reason
        return None

    return check_paths
