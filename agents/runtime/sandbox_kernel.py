"""The child's kernel-enforced layers: rlimits, the death signal, network and mount namespaces with
a minimal root, and the seccomp filter (see :mod:`agentopt.agents.runtime.sandbox` for why each exists).

Loaded by ``sandbox_child.py`` from its own file, as standard-library-only code (the child never
imports the package it sits in). The layers are set up through ctypes, imported inside the
functions that need it, so that nothing here keeps it reachable once the child has hidden it.
"""

from __future__ import annotations

import collections
import math
import os
import resource
import struct

# Names for the type checker only: the child never imports typing (see sandbox_child.py).
TYPE_CHECKING = False
if TYPE_CHECKING:
    import ctypes
    from typing import TypedDict

    _Insn = tuple[int, int | str, int | str, int]
    """A BPF instruction (code, jt, jf, k); a jump is an offset or a label."""

    class Confinement(TypedDict):
        """The part of the parent's job (``sandbox._job``) these layers read: where the child runs,
        who its parent is, and the Limits the kernel enforces."""

        workdir: str
        root: str
        parent_pid: int
        cpu_s: float
        memory_mb: int
        max_processes: int
        max_file_mb: int

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


def kernel_layers(job: Confinement, readable: tuple[str, ...], devices: tuple[str, ...]) -> None:
    """Each layer is best effort except the rlimits, because a kernel or container may refuse
    namespaces or seccomp while the hook and the other layers still hold. ``readable`` and
    ``devices`` are what the minimal root holds beside the work directory."""
    import ctypes  # only the set-up may see ctypes: the child makes it unreachable afterwards

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
    _enter_private_root(libc, str(job["root"]), str(job["workdir"]), readable, devices)
    _install_seccomp(libc)


def _lower_rlimits(job: Confinement) -> None:
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


def _enter_private_root(libc: ctypes.CDLL, root: str, workdir: str, readable: tuple[str, ...],
                        devices: tuple[str, ...]) -> None:
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
        for path in readable:
            if os.path.exists(path):
                bind(path, _MS_RDONLY | _MS_NODEV)
        for path in devices:
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
