"""The sandbox's two former residuals: ctypes left reachable in the agent's interpreter, and parent
secrets masked by variable name only."""

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from fakes import FakeEndpoint

from agentopt.agents.code_agent import CodeAgent
from agentopt.agents.models.gate import Endpoint
from agentopt.agents.models.llm import LLMClient, MemoryCache, Sampling
from agentopt.agents.runtime import sandbox
from agentopt.agents.runtime.sandbox import Limits, SandboxResult, register_secret, run_sandboxed

FAST = Limits(cpu_s=5, wall_s=20, memory_mb=256, max_output_bytes=100_000, max_llm_calls=3)

# Looks for ctypes everywhere an agent can look without walking the heap: every class
# object.__subclasses__() leads to (with the functions, closures and globals their dicts lead to),
# every module, and every frame up the stack. Types from _ctypes without a dotted name report
# 'builtins' as their module, hence the names.
_FIND_CTYPES = '''
import sys, types

def agent():
    names = {"_Pointer", "_SimpleCData", "_CData", "CFuncPtr", "StgDict", "CArgObject", "CThunkObject",
             "PyCSimpleType", "PyCPointerType", "CField", "CDLL", "LibraryLoader"}
    found, seen = set(), set()

    def ctypes_like(obj):
        module = getattr(obj, "__module__", None) if isinstance(obj, type) else getattr(type(obj), "__module__", "")
        name = obj.__name__ if isinstance(obj, type) else type(obj).__name__
        return (isinstance(module, str) and module.split(".")[0] in ("ctypes", "_ctypes")) or name in names

    def look(obj, depth=0):
        if id(obj) in seen or depth > 6:
            return
        seen.add(id(obj))
        if ctypes_like(obj):
            found.add(repr(obj)[:80])
        if isinstance(obj, type):
            for sub in type.__subclasses__(obj):
                look(sub, depth)
            for value in list(vars(obj).values()):
                look(value, depth + 1)
        elif isinstance(obj, types.FunctionType):
            look(obj.__globals__, depth + 1)
            for cell in obj.__closure__ or ():
                try:
                    look(cell.cell_contents, depth + 1)
                except ValueError:
                    pass
        elif isinstance(obj, types.ModuleType):
            look(vars(obj), depth + 1)
        elif isinstance(obj, dict):
            for value in list(obj.values()):
                look(value, depth + 1)
        elif isinstance(obj, (list, tuple, set, frozenset)):
            for value in list(obj):
                look(value, depth + 1)

    look(object)
    for name, module in list(sys.modules.items()):
        if name.split(".")[0] in ("ctypes", "_ctypes"):
            found.add("module " + name)
        look(module)
    frame = sys._getframe()
    while frame is not None:
        look(frame.f_locals)
        look(frame.f_globals)
        frame = frame.f_back
    return sorted(found) + [len(seen)]
'''


def test_no_ctypes_class_is_reachable_by_the_agent() -> None:
    result = run_sandboxed(_FIND_CTYPES, "agent", [], limits=FAST)
    assert result.ok, result
    *found, looked_at = result.value
    assert found == [] and looked_at > 1000, result.value


def test_walking_the_heap_for_ctypes_is_refused() -> None:
    code = "import gc\ndef agent():\n    return [repr(o) for o in gc.get_objects() if type(o).__module__ == '_ctypes']\n"
    result = run_sandboxed(code, "agent", [], limits=FAST)
    assert not result.ok and result.kind == "blocked" and "walking the heap" in (result.error or ""), result


def test_the_set_up_still_confines_the_child_after_dropping_ctypes() -> None:
    """The layers set up through ctypes hold after it is gone: no sockets, no processes."""
    for code, reason in (("import socket\ndef agent():\n    return socket.socket()\n", "network access"),
                         ("import os\ndef agent():\n    return os.fork()\n", "process creation")):
        result = run_sandboxed(code, "agent", [], limits=FAST)
        assert result.kind == "blocked" and reason in (result.error or ""), result


_UNHIDDEN = """
import importlib.util, sys, types
spec = importlib.util.spec_from_file_location("child", sys.argv[1])
child = importlib.util.module_from_spec(spec)
spec.loader.exec_module(child)
known = child._classes()
import ctypes
child.gc = types.SimpleNamespace(get_referrers=lambda *refs: [])  # as if the registries could not be found
try:
    child._forget_ctypes(known)
except RuntimeError as exc:
    print(exc)
"""


def test_a_set_up_that_leaves_ctypes_reachable_stops_the_child() -> None:
    """Where an interpreter keeps its subclass registries elsewhere, no agent code runs."""
    out = subprocess.run([sys.executable, "-I", "-S", "-B", "-c", _UNHIDDEN, str(sandbox._CHILD)],
                         capture_output=True, text=True, timeout=30)
    assert out.stdout.startswith("classes added by the set-up are still reachable: ") and "_Pointer" in out.stdout, out


# --- secrets masked by value -----------------------------------------------------------------------

DB_PASSWORD = "Pg@ss-w0rd-42"  # percent-encoded in the URL, as SQLAlchemy wants it
DB_URL = "postgresql://agentopt:Pg%40ss-w0rd-42@db.internal:5432/agentopt"


def _leaks(result: SandboxResult, requests: list[dict[str, Any]], *secrets: str) -> list[str]:
    """Every place a secret reached: the value, prints, error, and the requests the parent received
    (which the LLM cache would store)."""
    stored = {"value": repr(result.value), "stdout": result.stdout, "error": result.error or "",
              "requests": repr(requests)}
    return [f"{place}: {secret}" for place, text in stored.items() for secret in secrets if secret in text]


def test_the_database_password_is_masked_wherever_the_agent_puts_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """AGENTOPT_DB is not named like a secret; the password in it is one. The agent learns it from
    an LLM reply (masked on the way in) and from a guess (masked on the way out)."""
    monkeypatch.setenv("AGENTOPT_DB", DB_URL)
    requests: list[dict[str, Any]] = []

    def llm(request: dict[str, Any]) -> str:
        requests.append(request)
        return f"the archive password is {DB_PASSWORD}"

    code = ("def agent(guess):\n"
            "    heard = call_llm([{'role': 'user', 'content': 'password?'}])\n"
            "    call_llm([{'role': 'user', 'content': 'it is ' + guess}])\n"
            "    print('guessed', guess, 'encoded', 'Pg%40ss-w0rd-42')\n"
            "    return {'heard': heard, 'guess': guess}\n")
    result = run_sandboxed(code, "agent", [DB_PASSWORD], llm, FAST)
    assert result.ok, result
    assert _leaks(result, requests, DB_PASSWORD, "Pg%40ss-w0rd-42") == []
    assert result.value == {"heard": "the archive password is [redacted]", "guess": "[redacted]"}
    assert "guessed [redacted] encoded [redacted]" in result.stdout

    failing = run_sandboxed("def agent(guess):\n    raise ValueError('no entry for ' + guess)\n", "agent",
                            [DB_PASSWORD], None, FAST)
    assert failing.kind == "exception" and _leaks(failing, [], DB_PASSWORD) == [], failing
    assert "[redacted]" in (failing.error or "")


def test_variables_named_like_secrets_are_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_PASS", "redis-pass-9931")
    monkeypatch.setenv("HF_AUTH", "hf-auth-77215")
    result = run_sandboxed("def agent(a, b):\n    return [a, b]\n", "agent", ["redis-pass-9931", "hf-auth-77215"],
                           limits=FAST)
    assert result.ok and result.value == ["[redacted]", "[redacted]"], result


def test_a_url_given_in_python_registers_its_password_only() -> None:
    """An archive URL passed to the library never reaches the environment."""
    register_secret("postgresql://owner:Archive-pw-5521@archive.internal/agentopt")
    result = run_sandboxed("def agent(x):\n    return x\n", "agent",
                           ["postgresql://owner:Archive-pw-5521@archive.internal/agentopt"], limits=FAST)
    assert result.ok and result.value == "postgresql://owner:[redacted]@archive.internal/agentopt", result


@pytest.fixture
def keyed_model(monkeypatch: pytest.MonkeyPatch) -> Iterator[LLMClient]:
    """A task model whose API key sits in a variable not named like a secret."""
    monkeypatch.setenv("LLM_ACCESS", "lk-5f0e9c2a7b41")
    endpoint = FakeEndpoint(lambda body: (200, "answer: 4"))
    try:
        yield LLMClient([Endpoint(base_url=endpoint.url, model="fake", api_key_env="LLM_ACCESS")], MemoryCache(),
                        Sampling(max_tokens=16))
    finally:
        endpoint.close()


def test_a_code_agent_cannot_give_back_its_models_key(keyed_model: LLMClient) -> None:
    agent = CodeAgent(name="leaky", code="def forward(task):\n    return ask(task)['answer'] + ' lk-5f0e9c2a7b41'\n")
    assert agent.run("2+2?", keyed_model, FAST) == "4 [redacted]"


def test_short_values_are_not_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    """Masking 'admin' would rewrite ordinary answers; the threshold is what keeps them intact."""
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:admin@h/db")
    result = run_sandboxed("def agent():\n    return 'admin'\n", "agent", [], limits=FAST)
    assert result.ok and result.value == "admin", result
