"""Procedurally generated instruction-induction tasks.

Every task's data comes from a seeded generator, so the same name and seed give byte-identical
splits on any machine, with no download.
"""

import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass

from agentopt.optimizer.tasks.example import Splits, split_examples
from agentopt.optimizer.tasks.vocab import ANIMAL_MASS_KG, ANTONYMS, PLURALS, WORDS

Pairs = list[tuple[str, str]]

_ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_words(n: int) -> str:
    """English words for 0..999, hyphenating compound tens ("forty-two")."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + (f"-{_ONES[ones]}" if ones else "")
    hundreds, rest = divmod(n, 100)
    return f"{_ONES[hundreds]} hundred" + (f" {number_words(rest)}" if rest else "")


def _first_letter(rng: random.Random) -> Pairs:
    return [(w, w[0]) for w in WORDS]


def _list_letters(rng: random.Random) -> Pairs:
    return [(w, " ".join(w)) for w in WORDS]


def _sum(rng: random.Random) -> Pairs:
    pairs = [(rng.randint(1, 49), rng.randint(1, 49)) for _ in range(200)]
    return [(f"{a} {b}", str(a + b)) for a, b in pairs]


def _difference(rng: random.Random) -> Pairs:
    pairs = [sorted((rng.randint(1, 99), rng.randint(1, 99)), reverse=True) for _ in range(200)]
    return [(f"{a} {b}", str(a - b)) for a, b in pairs]


def _number_to_words(rng: random.Random) -> Pairs:
    return [(str(n), number_words(n)) for n in rng.sample(range(1, 1000), 200)]


def _singular_to_plural(rng: random.Random) -> Pairs:
    return list(PLURALS)


def _larger_animal(rng: random.Random) -> Pairs:
    clear_pairs = [
        (a, b)
        for a, b in itertools.permutations(ANIMAL_MASS_KG, 2)
        if max(ANIMAL_MASS_KG[a], ANIMAL_MASS_KG[b]) >= 3 * min(ANIMAL_MASS_KG[a], ANIMAL_MASS_KG[b])
    ]
    chosen = rng.sample(clear_pairs, 200)
    return [(f"{a}, {b}", max((a, b), key=ANIMAL_MASS_KG.__getitem__)) for a, b in chosen]


def _word_sorting(rng: random.Random) -> Pairs:
    lists = [rng.sample(WORDS, rng.randint(3, 5)) for _ in range(200)]
    return [(" ".join(words), " ".join(sorted(words))) for words in lists]


def _antonyms(rng: random.Random) -> Pairs:
    return list(ANTONYMS)


@dataclass(frozen=True)
class TaskSpec:
    description: str
    metric: str
    generate: Callable[[random.Random], Pairs]


BUILTIN: dict[str, TaskSpec] = {
    "first_letter": TaskSpec("Give the first letter of the word.", "exact_match", _first_letter),
    "list_letters": TaskSpec("Spell the word as its letters separated by spaces.", "exact_match", _list_letters),
    "sum": TaskSpec("Add the two numbers.", "exact_match", _sum),
    "difference": TaskSpec("Subtract the second number from the first.", "exact_match", _difference),
    "number_to_words": TaskSpec("Write the number in English words.", "exact_match", _number_to_words),
    "singular_to_plural": TaskSpec("Give the plural form of the noun.", "exact_match", _singular_to_plural),
    "larger_animal": TaskSpec("Name the larger of the two animals.", "exact_match", _larger_animal),
    "word_sorting": TaskSpec("Sort the words alphabetically.", "exact_match", _word_sorting),
    "antonyms": TaskSpec("Give the opposite of the word.", "exact_match", _antonyms),
}


def builtin_splits(name: str, seed: int = 0) -> Splits:
    """Built-in task ``name``'s examples, split; its Task is built by :func:`.base.load_task`, so
    this module stays below the Task that is made of them."""
    return split_examples(BUILTIN[name].generate(random.Random(f"{name}:{seed}")), seed)
