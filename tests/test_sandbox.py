"""The hostile-agent suite: every attack must end as ``ok=False`` with the right kind and a readable
reason, and leave the parent (this test process) working."""

import dataclasses
import dis
import importlib.util
import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentopt.agents.runtime import sandbox
from agentopt.agents.runtime.errors import BudgetExhausted, ConfigError
from agentopt.agents.runtime.sandbox import (KINDS, Limits, SandboxCallError, SandboxedFunction, SandboxError, SandboxResult,
                                     run_sandboxed)

FAST = Limits(cpu_s=2, wall_s=10, memory_mb=256, max_output_bytes=10_000, max_llm_calls=3)
SECRET = "sk-secret-123"


def run(code: str, *args: Any, limits: Limits = FAST, **kwargs: Any) -> SandboxResult:
    return run_sandboxed(code, "agent", args, limits=limits, **kwargs)


def assert_fails(result: SandboxResult, kind: str, *phrases: str) -> None:
    """The run failed for the expected reason, and a normal run right after still works."""
    assert result.ok is False and result.value is None, result
    assert result.kind == kind and result.kind in KINDS, result
    assert result.error and "\n" not in result.error, result
    for phrase in phrases:
        assert phrase in result.error, result.error
    assert run("def agent(x):\n    return x + 1\n", 41).value == 42


def agent(body: str, imports: str = "", params: str = "*args") -> str:
    return f"{imports}\ndef agent({params}):\n" + "".join(f"    {line}\n" for line in body.splitlines())


# --- well-behaved agents and the LLM proxy ---------------------------------------------------------

def test_good_agent_calls_the_llm_twice_through_the_parent() -> None:
    requests: list[dict[str, Any]] = []

    def llm(request: dict[str, Any]) -> str:
        requests.append(request)
        return f"reply {len(requests)} to {request['messages'][-1]['content']}"

    code = agent('a = call_llm([{"role": "user", "content": q}], temperature=0.5)\n'
                 'b = call_llm([{"role": "user", "content": a}], sample=3)\n'
                 'print("combined")\n'
                 'return {"answer": a + " | " + b}', params="q")
    result = run(code, "2+2?", llm=llm)
    assert result.ok and result.kind is None and result.error is None, result
    assert result.value == {"answer": "reply 1 to 2+2? | reply 2 to reply 1 to 2+2?"}
    assert result.llm_calls == 2 and result.stdout == "combined\n"
    assert requests[0] == {"messages": [{"role": "user", "content": "2+2?"}], "temperature": 0.5}
    assert requests[1]["sample"] == 3


def test_threads_may_call_the_llm_concurrently() -> None:
    code = agent("with ThreadPoolExecutor(4) as pool:\n"
                 "    return sorted(pool.map(lambda i: call_llm([{'role': 'user', 'content': str(i)}]), range(3)))",
                 "from concurrent.futures import ThreadPoolExecutor")
    result = run(code, llm=lambda request: "r" + request["messages"][0]["content"])
    assert result.ok and result.value == ["r0", "r1", "r2"] and result.llm_calls == 3, result


def test_handler_error_reaches_the_agent_as_runtime_error() -> None:
    def failing(request: dict[str, Any]) -> str:
        raise ValueError("quota exceeded")

    uncaught = run(agent("return call_llm([{'role': 'user', 'content': 'x'}])"), llm=failing)
    assert_fails(uncaught, "exception", "RuntimeError: LLM error: ValueError: quota exceeded")
    assert uncaught.llm_calls == 1
    caught = run(agent("try:\n    call_llm([{'role': 'user', 'content': 'x'}])\n"
                       "except RuntimeError as e:\n    return str(e)"), llm=failing)
    assert caught.ok and caught.value == "LLM error: ValueError: quota exceeded"  # errors are data, not ""


def test_no_handler_is_an_llm_error() -> None:
    assert_fails(run(agent("return call_llm([{'role': 'user', 'content': 'x'}])")), "exception",
                 "LLM error: no LLM handler is configured")


def test_more_llm_calls_than_allowed_is_an_error() -> None:
    result = run(agent("return [call_llm([{'role': 'user', 'content': 'x'}]) for _ in range(5)]"), llm=lambda r: "ok")
    assert_fails(result, "exception", "too many LLM calls (limit 3)")
    assert result.llm_calls == 3


def test_an_exhausted_budget_aborts_the_run_instead_of_failing_the_agent() -> None:
    def spent(request: dict[str, Any]) -> str:
        raise BudgetExhausted("task calls")

    with pytest.raises(BudgetExhausted):
        run(agent("return call_llm([{'role': 'user', 'content': 'x'}])"), llm=spent)


# --- broken agents -----------------------------------------------------------------------------------

def test_exception_is_reported_with_the_agent_line() -> None:
    assert_fails(run(agent("x = 1\nreturn x / 0")), "exception", "ZeroDivisionError: division by zero",
                 "agent line 4")


def test_syntax_error_is_reported() -> None:
    assert_fails(run("def agent(:\n    pass\n"), "exception", "SyntaxError")


def test_missing_entry_function_is_reported() -> None:
    assert_fails(run("def something_else():\n    return 1\n"), "exception", "no function named 'agent'")


def test_return_value_must_be_json() -> None:
    assert_fails(run(agent("return {1, 2}")), "exception", "not JSON-serialisable")


# --- resource attacks --------------------------------------------------------------------------------

def test_infinite_loop_hits_the_cpu_limit() -> None:
    result = run(agent("while True:\n    pass"), limits=dataclasses.replace(FAST, cpu_s=1))
    assert_fails(result, "cpu", "cpu: CPU time 1s exceeded")


def test_sleeping_agent_hits_the_wall_limit() -> None:
    result = run(agent("time.sleep(100)", "import time"), limits=dataclasses.replace(FAST, wall_s=1))
    assert_fails(result, "timeout", "timeout: wall time 1s exceeded")
    assert 1 <= result.wall_s < 5


@pytest.mark.parametrize("body", ["x = []\nwhile True:\n    x.append(' ' * 10**6)", "return len(bytearray(10**10))"])
def test_memory_bomb_hits_the_memory_limit(body: str) -> None:
    assert_fails(run(agent(body)), "memory", "memory limit: 256 MB exceeded")


@pytest.mark.parametrize(("imports", "body", "reason"), [
    ("import os", "while True:\n    os.fork()", "process creation (os.fork)"),
    ("import subprocess", "subprocess.Popen(['sh', '-c', ':(){ :|:& };:'])", "process creation (import _posixsubprocess)"),
    ("import os", "os.system(':(){ :|:& };:')", "process creation (os.system)"),
    ("import os", "os.execv('/bin/sh', ['sh'])", "process creation (os.exec)"),
])
def test_fork_bomb_is_refused(imports: str, body: str, reason: str) -> None:
    assert_fails(run(agent(body, imports)), "blocked", f"blocked: {reason}")


def test_enormous_printed_output_is_cut() -> None:
    result = run(agent("while True:\n    print('x' * 100)"))
    assert_fails(result, "output", "killed: output over 10000 bytes")
    assert set(result.stdout) == {"x", "\n"} and len(result.stdout) <= sandbox.STDOUT_TAIL_CHARS  # the tail


def test_enormous_return_value_is_cut() -> None:
    assert_fails(run(agent("return 'x' * 50_000")), "output", "killed: output over 10000 bytes")


def test_raw_writes_to_the_stdout_descriptor_are_cut_by_the_parent() -> None:
    assert_fails(run(agent("while True:\n    os.write(1, b'x' * 4096)", "import os")), "output",
                 "killed: output over 10000 bytes")


def test_forged_protocol_messages_are_rejected() -> None:
    assert_fails(run(agent("os.write(3, b'not json\\n')", "import os")), "protocol", "malformed message")


# --- secrets -----------------------------------------------------------------------------------------

def test_environment_has_no_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    result = run(agent("return dict(os.environ)", "import os"))
    assert result.ok, result
    assert set(result.value) <= {"PATH", "LANG", "LC_ALL", "HOME", "TMPDIR"}
    assert SECRET not in json.dumps(dataclasses.asdict(result))
    assert_fails(run(agent("return open(f'/proc/{os.getppid()}/environ').read()", "import os")), "blocked",
                 "file read outside the sandbox")


def test_secret_in_a_handler_error_is_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)

    def leaky(request: dict[str, Any]) -> str:
        raise PermissionError(f"Incorrect API key provided: {SECRET}")

    result = run(agent("return call_llm([{'role': 'user', 'content': 'x'}])"), llm=leaky)
    assert_fails(result, "exception", "[redacted]")
    assert SECRET not in json.dumps(dataclasses.asdict(result))


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "secret.txt"
    path.write_text(SECRET)
    return path


@pytest.mark.parametrize("target", ["/root/.bashrc", str(Path.home() / ".bashrc"), "/etc/passwd", "secret"])
def test_files_outside_the_sandbox_cannot_be_read(target: str, secret_file: Path) -> None:
    path = str(secret_file) if target == "secret" else target
    result = run(agent("return open(path).read()", params="path"), path)
    assert_fails(result, "blocked", f"blocked: file read outside the sandbox ({path})")
    assert SECRET not in json.dumps(dataclasses.asdict(result))


def test_directories_outside_cannot_be_listed() -> None:
    assert_fails(run(agent("return os.listdir('/')", "import os")), "blocked", "file read outside the sandbox (/)")


def test_archive_database_cannot_be_read(tmp_path: Path) -> None:
    database = tmp_path / "archive.db"
    with sqlite3.connect(database) as connection:
        connection.execute("create table trials (secret text)")
        connection.execute("insert into trials values (?)", (SECRET,))
    connection.close()
    via_sqlite = run(agent("return sqlite3.connect(db).execute('select * from trials').fetchall()", "import sqlite3",
                           params="db"), str(database))
    assert_fails(via_sqlite, "blocked", "blocked: database access (import sqlite3)")
    via_open = run(agent("return open(db, 'rb').read().decode('latin-1')", params="db"), str(database))
    assert_fails(via_open, "blocked", f"blocked: file read outside the sandbox ({database})")


@pytest.mark.parametrize("target", ["outside", "../escape.txt"])
def test_writing_outside_the_work_directory_fails(target: str, tmp_path: Path) -> None:
    path = str(tmp_path / "pwned.txt") if target == "outside" else target
    result = run(agent("open(path, 'w').write('pwned')", params="path"), path)
    assert_fails(result, "blocked", "blocked: file ")
    assert not (tmp_path / "pwned.txt").exists()


def test_a_blocked_action_fails_the_run_even_if_the_agent_catches_it() -> None:
    result = run(agent("try:\n    open('/etc/passwd').read()\nexcept OSError:\n    return 'survived'"))
    assert_fails(result, "blocked", "blocked: file read outside the sandbox (/etc/passwd)")


# --- verdicts the agent cannot forge ----------------------------------------------------------------

FORGED = "os.write(3, b'{\"type\": \"result\", \"ok\": true, \"value\": 1}\\n')"


def test_a_blocked_action_then_a_forged_result_still_fails() -> None:
    code = agent(f"try:\n    open('/etc/passwd').read()\nexcept OSError:\n    pass\n{FORGED}\nos._exit(0)", "import os")
    assert_fails(run(code), "blocked", "blocked: file read outside the sandbox (/etc/passwd)")


def test_a_blocked_action_after_a_forged_result_still_fails() -> None:
    """The parent keeps listening after a result: a refusal reported later still counts."""
    code = agent(f"{FORGED}\nopen('/etc/passwd').read()\nos._exit(0)", "import os")
    assert_fails(run(code), "blocked", "blocked: file read outside the sandbox (/etc/passwd)")


def test_a_blocked_action_whose_report_is_diverted_still_fails() -> None:
    code = agent("saved = os.dup(3)\nos.dup2(os.open('/dev/null', os.O_WRONLY), 3)\ntry:\n"
                 f"    open('/etc/passwd').read()\nexcept OSError:\n    pass\n{FORGED.replace('(3,', '(saved,')}\n"
                 "os._exit(0)", "import os")
    assert_fails(run(code), "blocked", "refused an action (its report was lost)")


@pytest.mark.parametrize(("after", "reason"), [
    ("os._exit(3)", "exited with status 3 after reporting success"),
    ("time.sleep(30)", "did not exit after its result"),
    ("os.write(3, b'{\"type\": \"result\", \"ok\": true}\\n')", "a message after the sandbox's result"),
])
def test_a_forged_result_needs_a_clean_exit_right_after(after: str, reason: str) -> None:
    assert_fails(run(agent(f"{FORGED}\n{after}", "import os, time")), "protocol", reason)


def test_a_forged_result_is_no_more_than_a_return_value() -> None:
    """What run_sandboxed cannot tell, and why nothing is graded on its value: see SandboxedFunction."""
    result = run(agent(f"{FORGED}\nos._exit(0)", "import os"))
    assert result.ok and result.value == 1, result


def test_a_sandboxed_function_returns_plain_data_of_the_right_types() -> None:
    code = ("def f(*args, **kwargs):\n"
            "    return [args, kwargs, {1: (2.5, 'x'), 'k': {3, 4}}, frozenset({5}), None, True, float('inf')]\n")
    with SandboxedFunction(code, "f", FAST) as f:
        value = f((1, 2), [3], {4: "a"}, key={5})
        assert value == [((1, 2), [3], {4: "a"}), {"key": {5}}, {1: (2.5, "x"), "k": {3, 4}}, frozenset({5}), None,
                         True, float("inf")]
        assert [type(v) for v in value[0]] == [tuple, list, dict] and type(value[2][1]) is tuple
        assert f() == [(), {}, {1: (2.5, "x"), "k": {3, 4}}, frozenset({5}), None, True, float("inf")]
        result = f.close()
    assert result.ok and result.kind is None, result


def test_a_sandboxed_function_keeps_its_state_and_is_charged_only_for_its_calls() -> None:
    code = "calls = []\ndef f(x):\n    calls.append(x)\n    return len(calls)\n"
    with SandboxedFunction(code, "f", dataclasses.replace(FAST, wall_s=1)) as f:
        assert f("a") == 1
        time.sleep(1.2)  # the caller's own time, not the function's
        assert f("b") == 2
        assert f.close().ok


def assert_call_fails(code: str, kind: str, *phrases: str) -> None:
    """The first call raises SandboxCallError, whose verdict is also the run's."""
    with SandboxedFunction(code, "f", FAST) as f:
        with pytest.raises(SandboxCallError) as raised:
            f(1)
        assert f.close() is raised.value.result
    result = raised.value.result
    assert result.ok is False and result.kind == kind, result
    for phrase in phrases:
        assert phrase in (result.error or ""), result.error


@pytest.mark.parametrize("fake", [
    "class Eq:\n    def __eq__(self, other):\n        return True\nfake = Eq()",
    "class Yes(int):\n    def __eq__(self, other):\n        return True\nfake = Yes(1)",
    "class Text(str):\n    def __eq__(self, other):\n        return True\nfake = [Text('x')]",
])
def test_values_that_only_pretend_to_be_data_fail_the_call(fake: str) -> None:
    assert_call_fails(f"{fake}\ndef f(x):\n    return fake\n", "exception", "not plain data")


@pytest.mark.parametrize(("body", "kind", "reason"), [
    (f"{FORGED}\n    os._exit(0)", "protocol", "claimed success before it was told to stop"),
    ("os.write(3, b'{\"type\": \"return\", \"value\": {\"tuple\": 1}}\\n')\n    os._exit(0)", "protocol",
     "not plain data"),
    ("sys.exit(0)", "exception", "SystemExit"),
    ("raise SystemExit(0)", "exception", "SystemExit"),
    ("os._exit(0)", "crash", "exited with status 0 without a result"),
    ("try:\n        open('/etc/passwd')\n    except OSError:\n        return 1", "blocked",
     "blocked: file read outside the sandbox (/etc/passwd)"),
])
def test_a_call_that_forges_exits_or_is_blocked_fails(body: str, kind: str, reason: str) -> None:
    assert_call_fails(f"import os, sys\ndef f(x):\n    {body}\n", kind, reason)


def test_code_that_does_not_load_fails_its_first_call() -> None:
    assert_call_fails("def f(:\n", "exception", "SyntaxError")


def test_sandboxed_call_arguments_must_be_plain_data() -> None:
    with SandboxedFunction("def f(x):\n    return x\n", "f", FAST) as f:
        with pytest.raises(SandboxError, match="plain data"):
            f(object())
        assert f(2) == 2


def test_work_directory_is_usable_private_and_removed() -> None:
    code = agent("with open('notes.txt', 'w') as f:\n    f.write('scratch')\n"
                 "return [os.getcwd(), os.environ['HOME'], open('notes.txt').read()]", "import os")
    result = run(code)
    assert result.ok, result
    cwd, home, notes = result.value
    assert cwd == home and notes == "scratch" and "agentopt-sandbox-" in cwd
    assert not os.path.exists(cwd) and not os.path.exists(os.path.dirname(cwd))


# --- network, native code, the parent ----------------------------------------------------------------

@pytest.fixture
def listener() -> Iterator[socket.socket]:
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    yield server
    server.close()


def test_sockets_are_refused(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    raw = run(agent(f"s = socket.socket()\ns.connect(('127.0.0.1', {port}))", "import socket"))
    assert_fails(raw, "blocked", "blocked: network access (socket.__new__)")
    high_level = run(agent(f"socket.create_connection(('127.0.0.1', {port}))", "import socket"))
    assert_fails(high_level, "blocked", "blocked: network access (socket.getaddrinfo)")
    lookup = run(agent("return socket.getaddrinfo('example.com', 443)", "import socket"))
    assert_fails(lookup, "blocked", "blocked: network access (socket.getaddrinfo)")
    with pytest.raises(TimeoutError):
        listener.accept()


def test_ctypes_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "ctypes-ran"
    result = run(agent(f"return ctypes.CDLL(None).system(b'touch {marker}')", "import ctypes"))
    assert_fails(result, "blocked", "blocked: native code (import ctypes)")
    assert not marker.exists()


@pytest.mark.parametrize(("body", "kind", "reason"), [
    ("os.kill(os.getppid(), signal.SIGKILL)", "blocked", "blocked: signalling a process (os.kill)"),
    ("os.killpg(os.getpgid(os.getppid()), signal.SIGKILL)", "blocked", "blocked: signalling a process (os.killpg)"),
    ("signal.pidfd_send_signal(os.pidfd_open(os.getppid()), signal.SIGKILL)", "exception", "AttributeError"),
])
def test_the_parent_cannot_be_killed(body: str, kind: str, reason: str) -> None:
    pid = os.getpid()
    assert_fails(run(agent(body, "import os, signal")), kind, reason)
    assert os.getpid() == pid  # and this test process is still here to say so


def test_interpreter_internals_are_refused() -> None:
    assert_fails(run(agent("return len(gc.get_objects())", "import gc")), "blocked", "walking the heap")
    assert_fails(run(agent("sys.settrace(lambda *a: None)", "import sys")), "blocked", "tracing the interpreter")
    assert_fails(run(agent("f = lambda: 1\nreturn f.__code__.replace(co_consts=(2,))")), "blocked",
                 "loading bytecode (code.__new__)")


def test_the_audit_hook_looks_nothing_up_at_call_time() -> None:
    """An agent can monkeypatch builtins and modules; a hook that read a global would obey it."""
    hook = _child_module("sandbox_hook")

    def nested(code: types.CodeType) -> Iterator[types.CodeType]:
        for const in code.co_consts:
            if isinstance(const, types.CodeType):
                yield const
                yield from nested(const)

    functions = [f for builder in (hook.install_audit_hook, hook._path_rules) for f in nested(builder.__code__)]
    assert {f.co_name for f in functions} >= {"hook", "check", "check_path", "resolve"}
    for function in functions:
        lookups = [i.argval for i in dis.get_instructions(function) if i.opname in ("LOAD_GLOBAL", "LOAD_NAME")]
        assert lookups == [], (function.co_name, lookups)
    patched = agent("builtins.type = lambda x: str\nos.getcwd = lambda: '/root'\nreturn open('/root/.bashrc').read()",
                    "import builtins, os")
    assert_fails(run(patched), "blocked", "file read outside the sandbox (/root/.bashrc)")


def test_the_child_dies_with_its_parent(tmp_path: Path) -> None:
    start = "from agentopt.agents.runtime.sandbox import run_sandboxed\n" \
            "run_sandboxed('import time\\ndef agent():\\n    time.sleep(60)\\n', 'agent', [])"
    # A killed parent cannot remove its temporary directory: keep it under tmp_path.
    parent = subprocess.Popen([sys.executable, "-c", start], env={**os.environ, "TMPDIR": str(tmp_path)})
    try:
        deadline = time.monotonic() + 20
        while not (children := _children(parent.pid)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert children, "the sandbox child never started"
        parent.kill()
        parent.wait()
        while any(map(_alive, children)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(map(_alive, children))
    finally:
        parent.kill()
        parent.wait()


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


# --- the kernel layers on their own --------------------------------------------------------------------

_KERNEL_PROBE = """
import importlib.util, json, os, sys
spec = importlib.util.spec_from_file_location("child", sys.argv[1])
child = importlib.util.module_from_spec(spec)
spec.loader.exec_module(child)
job = {"workdir": sys.argv[2], "root": sys.argv[3], "parent_pid": os.getppid(), "cpu_s": 5, "memory_mb": 256,
       "max_file_mb": 1, "max_processes": 4}
child._confine(job, child._stdlib_roots())
def errno(call):
    try:
        call()
    except OSError as exc:
        return exc.errno
import socket
print(json.dumps({"fork": errno(os.fork), "socket": errno(socket.socket),
                  "kill_parent": errno(lambda: os.kill(os.getppid(), 0)),
                  "exec": errno(lambda: os.execv("/bin/true", ["true"])),
                  "root": sorted(os.listdir("/")), "etc": os.path.exists("/etc/passwd")}))
"""


@pytest.fixture(scope="module")
def kernel_probe(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The child's kernel layers, without its audit hook: what still holds if an agent defeats it."""
    if os.uname().machine not in ("x86_64", "aarch64"):
        pytest.skip("the seccomp filter has syscall tables for x86_64 and aarch64 only")
    tmp_path = tmp_path_factory.mktemp("kernel")
    (tmp_path / "work").mkdir()
    (tmp_path / "root").mkdir()
    out = subprocess.run([sys.executable, "-I", "-S", "-B", "-c", _KERNEL_PROBE, str(sandbox._CHILD),
                          str(tmp_path / "work"), str(tmp_path / "root")], cwd=tmp_path / "work",
                         capture_output=True, text=True, timeout=30, env={"PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_seccomp_refuses_processes_sockets_and_signals_without_the_hook(kernel_probe: dict[str, Any]) -> None:
    eperm = 1
    assert kernel_probe["fork"] == kernel_probe["socket"] == kernel_probe["kill_parent"] == eperm
    assert kernel_probe["exec"] in (eperm, 2)  # EPERM, or ENOENT inside the minimal root


def test_minimal_root_hides_the_filesystem_without_the_hook(kernel_probe: dict[str, Any]) -> None:
    if kernel_probe["etc"]:
        pytest.skip("mount namespaces are not permitted here; the audit hook alone guards files")
    assert "etc" not in kernel_probe["root"] and "proc" not in kernel_probe["root"]


# --- the API ------------------------------------------------------------------------------------------

def test_arguments_must_be_json() -> None:
    with pytest.raises(SandboxError, match="JSON-serialisable"):
        run_sandboxed("def agent(x):\n    return x\n", "agent", [object()])


def test_limits_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="wall_s"):
        Limits(wall_s=0)


def test_exiting_without_a_result_is_a_crash() -> None:
    assert_fails(run(agent("os._exit(0)", "import os")), "crash", "exited with status 0 without a result")


def _child_module(name: str) -> types.ModuleType:
    """One of the child runner's files, loaded as the child loads it: on its own, not from the package."""
    spec = importlib.util.spec_from_file_location(f"{name}_under_test", sandbox._CHILD.with_name(f"{name}.py"))
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
