"""Generated multi-field tasks for the library experiments: answer a question from a short context.

``pets`` ("Ann has a cat. Bob has a dog. ...", "What pet does Bob have?") is the task the README's
example uses and that settings were tried on; ``colors`` ("Ann's car is red. ...", "What color is
Bob's car?") has the same shape with other words and was run only once settings were fixed, so
its figures are reported apart. Every row lists three acceptable answers ("dog", "a dog", "the dog").
The metric reads the first word from the task's vocabulary that the answer names, because a tiny
model often answers in a sentence ("Bob has a dog.") and that is right in substance.

For the sweeps of ``bench_strategies`` and ``bench_vs_dspy``, ``write`` saves both tasks as JSONL files
plus task entries whose metric is ``fields_tasks:pets_metric`` / ``fields_tasks:colors_metric``
(importable when ``experiments/`` is the script's folder or on ``PYTHONPATH``):

    .venv/bin/python experiments/fields_tasks.py --out /tmp/agentopt-fields-tasks
"""

import itertools
import random
from collections.abc import Callable
from pathlib import Path

from frozen_tasks import main, write_entry

import agentopt

PEOPLE = ["Ann", "Bob", "Cid", "Dee", "Eve", "Fay"]
PETS = ["cat", "dog", "fish", "bird", "horse", "goat"]
COLORS = ["red", "blue", "green", "black", "white", "yellow"]
INSTRUCTION = "Answer the question."
TEMPLATE = "{context}\n{question}"


def rows(things: list[str], fact: str, question: str, seed: int = 0) -> list[dict[str, object]]:
    """One row per ordered triple of people (120), each with three things and a question about one."""
    rng, out = random.Random(seed), []
    for people in itertools.permutations(PEOPLE, 3):
        chosen, asked = rng.sample(things, 3), rng.randrange(3)
        answer = chosen[asked]
        out.append({"context": " ".join(fact.format(person=p, thing=t) for p, t in zip(people, chosen, strict=True)),
                    "question": question.format(person=people[asked]),
                    "answers": [answer, f"a {answer}", f"the {answer}"]})
    return out


def first_named(vocabulary: list[str]) -> Callable[[agentopt.Example, str], float | tuple[float, str]]:
    """1 when the first vocabulary word in the answer is acceptable; otherwise 0 and why."""
    def metric(example: agentopt.Example, prediction: str) -> float | tuple[float, str]:
        named = [w for w in prediction.lower().replace(".", " ").replace(",", " ").split() if w in vocabulary]
        if named and named[0] in example.targets:
            return 1.0
        return 0.0, f"expected {example.target!r}, got {prediction!r}"

    metric.__name__ = metric.__qualname__ = "first_named"
    return metric


pets_metric, colors_metric = first_named(PETS), first_named(COLORS)
SHAPES = {  # name: (vocabulary, fact, question, description)
    "pets": (PETS, "{person} has a {thing}.", "What pet does {person} have?",
             "Answer a question about pets from the context."),
    "colors": (COLORS, "{person}'s car is {thing}.", "What color is {person}'s car?",
               "Answer a question about car colors from the context."),
}


def task(name: str) -> agentopt.Task:
    things, fact, question, description = SHAPES[name]
    return agentopt.Task.from_records(rows(things, fact, question), inputs=["context", "question"], target="answers",
                                      metric=first_named(things), name=name, description=description)


def pets() -> agentopt.Task:
    return task("pets")


def colors() -> agentopt.Task:
    return task("colors")


def seed_candidate(archive: agentopt.Archive, result: agentopt.Result) -> int:
    """The seed prompt as scored on test (the unchanged instruction and template, no demonstrations)."""
    seed = agentopt.PromptAgent(instruction=INSTRUCTION, template=TEMPLATE).payload()
    return next(c.candidate_id for c in archive.top(1000, "test", campaign=result.campaign_id)
                if c.strategy == "seed" and c.payload == seed)


TASKS = {"pets": pets, "colors": colors}
HELD_OUT = ("colors",)
VOCABULARY = {"fields_tasks:pets_metric": PETS, "fields_tasks:colors_metric": COLORS}  # by task entry metric


def write(out: Path) -> list[Path]:
    """Each task's rows and its task entry under ``out``: the same rows, splits and metric as ``TASKS``."""
    out.mkdir(parents=True, exist_ok=True)
    return [write_entry(out, name, rows(things, fact, question), inputs=["context", "question"], target="answers",
                        metric=f"fields_tasks:{name}_metric", description=description)
            for name, (things, fact, question, description) in SHAPES.items()]


if __name__ == "__main__":
    main(write, "/tmp/agentopt-fields-tasks")
