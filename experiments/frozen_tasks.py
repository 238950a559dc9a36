"""Three tasks of our own for issue 33's benchmark, chosen and frozen on 2026-12-07 before any run
on them: no strategy and no parameter is tuned on them, and their figures are reported apart.

- ``last_word``: a short sentence -> its last word (single input);
- ``older``: two people's ages and a question, "Who is older?" or "Who is younger?" -> a name
  (multi-field: ``context``, ``question``);
- ``capital``: a country -> its capital, from the list below (single input; knowledge the 135M
  model partly has).

Each is written as a JSONL file plus a task entry (``<name>.task.json``: path, inputs, target,
metric) that campaign configs and ``experiments/bench_strategies.py --tasks`` take. The rows are
generated from a fixed seed, so every machine writes the same files.

    .venv/bin/python experiments/frozen_tasks.py --out /tmp/frozen-tasks
"""

import argparse
import itertools
import json
import random
import sys
from collections.abc import Callable
from pathlib import Path

WORDS = ["apple", "river", "stone", "cloud", "maple", "otter", "piano", "lemon", "tiger", "ocean", "amber", "cedar",
         "garden", "window", "candle", "forest", "bridge", "pencil", "rocket", "silver", "button", "mirror", "jacket",
         "basket", "dragon", "planet", "castle", "pepper", "violin", "tunnel", "wallet", "ladder", "helmet", "carpet"]
VERBS = ["saw", "found", "liked", "painted", "moved", "bought", "kept", "lost", "cleaned", "opened"]
PEOPLE = ["Ann", "Bob", "Cid", "Dee", "Eve", "Fay", "Gus", "Hal"]
CAPITALS = {
    "France": "Paris", "Germany": "Berlin", "Italy": "Rome", "Spain": "Madrid", "Portugal": "Lisbon",
    "Japan": "Tokyo", "China": "Beijing", "Russia": "Moscow", "Egypt": "Cairo", "Greece": "Athens",
    "Austria": "Vienna", "Ireland": "Dublin", "Norway": "Oslo", "Sweden": "Stockholm", "Finland": "Helsinki",
    "Denmark": "Copenhagen", "Poland": "Warsaw", "Hungary": "Budapest", "Belgium": "Brussels",
    "Netherlands": "Amsterdam", "Canada": "Ottawa", "Mexico": "Mexico City", "Peru": "Lima", "Chile": "Santiago",
    "Argentina": "Buenos Aires", "Kenya": "Nairobi", "Thailand": "Bangkok", "Vietnam": "Hanoi",
    "Indonesia": "Jakarta", "Philippines": "Manila", "Turkey": "Ankara", "Iran": "Tehran", "Iraq": "Baghdad",
    "Cuba": "Havana", "Colombia": "Bogota", "Venezuela": "Caracas", "Australia": "Canberra",
    "New Zealand": "Wellington", "India": "New Delhi", "Pakistan": "Islamabad", "South Korea": "Seoul",
    "Ukraine": "Kyiv", "Romania": "Bucharest", "Bulgaria": "Sofia", "Serbia": "Belgrade", "Croatia": "Zagreb",
    "Czech Republic": "Prague", "Switzerland": "Bern", "Morocco": "Rabat", "Nigeria": "Abuja",
    "Ethiopia": "Addis Ababa", "Saudi Arabia": "Riyadh", "Syria": "Damascus", "Lebanon": "Beirut",
    "Jordan": "Amman", "Iceland": "Reykjavik", "Estonia": "Tallinn", "Latvia": "Riga", "Lithuania": "Vilnius",
    "Nepal": "Kathmandu", "Malaysia": "Kuala Lumpur", "Singapore": "Singapore", "Qatar": "Doha",
    "Ghana": "Accra", "Uganda": "Kampala", "Zimbabwe": "Harare", "Bolivia": "La Paz", "Ecuador": "Quito",
    "Uruguay": "Montevideo", "Paraguay": "Asuncion", "Scotland": "Edinburgh", "Wales": "Cardiff",
}


def last_word(rng: random.Random) -> list[dict[str, str]]:
    rows = []
    for _ in range(200):
        person, verb = rng.choice(PEOPLE), rng.choice(VERBS)
        first, last = rng.sample(WORDS, 2)
        rows.append({"input": f"{person} {verb} the {first} and the {last}", "target": last})
    return rows


def older(rng: random.Random) -> list[dict[str, str]]:
    rows = []
    for a, b in itertools.permutations(PEOPLE, 2):
        age_a, age_b = rng.sample(range(5, 90), 2)
        for asks_older in (True, False):
            answer = (a if age_a > age_b else b) if asks_older else (a if age_a < age_b else b)
            rows.append({"context": f"{a} is {age_a} years old. {b} is {age_b} years old.",
                         "question": f"Who is {'older' if asks_older else 'younger'}?", "target": answer})
    return rng.sample(rows, len(rows))


def capital(rng: random.Random) -> list[dict[str, str]]:
    rows = [{"input": country, "target": city} for country, city in CAPITALS.items()]
    return rng.sample(rows, len(rows))


TASKS = {"last_word": (last_word, ["input"]), "older": (older, ["context", "question"]), "capital": (capital, ["input"])}


def write_entry(out: Path, name: str, rows: list[dict[str, object]], **entry: object) -> Path:
    """``rows`` as ``out/NAME.jsonl`` and its task entry ``out/NAME.task.json`` (path, name and ``entry``)."""
    data, path = out / f"{name}.jsonl", out / f"{name}.task.json"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    path.write_text(json.dumps({"path": str(data), "name": name, **entry}, indent=1))
    return path


def write(out: Path) -> list[Path]:
    """Each task's rows and its task entry under ``out``; the entries' paths, in a fixed order."""
    out.mkdir(parents=True, exist_ok=True)
    return [write_entry(out, name, make(random.Random(f"frozen-{name}")), inputs=inputs, target="target",
                        metric="exact_match") for name, (make, inputs) in TASKS.items()]


def main(write: Callable[[Path], list[Path]], default_out: str) -> None:
    """``--out DIR``: write the tasks there and print their entries' paths."""
    parser = argparse.ArgumentParser(description=(sys.modules["__main__"].__doc__ or "").split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(default_out))
    for path in write(parser.parse_args().out):
        print(path)


if __name__ == "__main__":
    main(write, "/tmp/agentopt-frozen-tasks")
