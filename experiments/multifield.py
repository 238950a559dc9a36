"""A multi-field task with a custom metric, driven from Python: APE on ``pets`` and, held out,
``colors`` (see ``fields_tasks``), three seeds each, on the bundled model.

Each campaign's winner and its seed prompt are scored on the same sealed test examples, so the
gain is a paired difference: its 95% CI is a bootstrap over those examples, and the p-value is an
exact two-sided sign test on the examples where the two disagree. The rows "all seeds" pool a task's
three campaigns, which share their test examples: the crossed seeds × examples estimate of
``agentopt.archive.sweep_stats.task_difference`` (t interval and p on seeds − 1 degrees of freedom),
not the examples of all seeds taken as independent.

With ``--strategy reflective`` the same campaigns run reflective evolution instead, capped at APE's
mean paid task calls (``REFLECTIVE_CALLS``), and the table adds each task's pooled difference from
APE's winners (the APE campaigns replay from the archive's cache when ``--db`` holds them).

    .venv/bin/python experiments/multifield.py [--db /tmp/multifield.db] [--out experiments/results/multifield.md]
        [--strategy ape|reflective]
"""

import argparse
import time
from datetime import date
from math import comb
from pathlib import Path

import numpy as np
from fields_tasks import HELD_OUT, INSTRUCTION, TASKS, TEMPLATE, seed_candidate
from rich.console import Console

import agentopt
from agentopt.archive.sweep_stats import task_difference
from agentopt.optimizer.engine.ui import markdown, table

Paired = dict[str, tuple[float, float]]  # test example -> (seed prompt's score, winner's score)

SEEDS = (0, 1, 2)
STRATEGY = agentopt.strategies.APE(n_subsamples=4, demos_per_subsample=4, samples_per_subsample=2, candidate_demos=2,
                                   batch_size=4, pulls_per_round=4, racing_budget=64, mc_rounds=1, mc_top=2,
                                   mc_samples=2, mc_budget=16, top_k=3)
REFLECTIVE_CALLS = 256  # APE's mean paid task calls over its six campaigns here (test scoring included)
STRATEGIES = {"ape": (STRATEGY, None),
              "reflective": (agentopt.strategies.Reflective(minibatch=4), agentopt.Budget(task_calls=REFLECTIVE_CALLS))}
MODELS = agentopt.Models(task=agentopt.Role(max_tokens=16), proposer=agentopt.Role(temperature=0.9, max_tokens=48))
EVALUATION = agentopt.Evaluation(val_size=24, test_size=48)
HEADERS = ["task", "seed", "seed prompt test", "best test", "gain [95% CI]",
           "p (sign test; all seeds: crossed t)", "best instruction", "task calls", "wall s"]


def paired(archive: agentopt.Archive, a: int, b: int) -> Paired:
    """(a, b) scores on the test examples both were scored on without error."""
    first = {r.example_id: r.score for r in archive.results(a, "test") if r.score is not None}
    return {r.example_id: (first[r.example_id], r.score) for r in archive.results(b, "test")
            if r.score is not None and r.example_id in first}


def gain(paired_scores: Paired) -> str:
    """One campaign's gain: a bootstrap over its test examples."""
    diffs = np.array([b - a for a, b in paired_scores.values()])
    rng = np.random.default_rng(0)
    boots = diffs[rng.integers(0, len(diffs), (2000, len(diffs)))].mean(axis=1)
    low, high = np.percentile(boots, [2.5, 97.5])
    return f"{100 * diffs.mean():+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]"


def sign_test(paired_scores: Paired) -> str:
    """Exact two-sided sign test on the examples where the two prompts scored differently."""
    pairs = paired_scores.values()
    wins, losses = sum(b > a for a, b in pairs), sum(b < a for a, b in pairs)
    n = wins + losses
    if n == 0:
        return "1.00 (no disagreements)"
    tail = sum(comb(n, k) for k in range(min(wins, losses) + 1)) / 2 ** n
    return f"{min(1.0, 2 * tail):.2f} ({wins} won, {losses} lost)"


def label(name: str) -> str:
    return name + (" (held out)" if name in HELD_OUT else "")


def pooled_rows(pooled: dict[str, list[Paired]], against: str = "") -> list[list[object]]:
    """One row per task with its seeds together (the table's last rows): the crossed estimate on the
    examples every seed was scored on; ``against`` names what the first score of each pair is, when
    it is not the seed prompt."""
    rows = []
    for name, seeds in pooled.items():
        examples = [e for e in seeds[0] if all(e in s for s in seeds)]
        before = np.array([[s[e][0] for e in examples] for s in seeds])
        after = np.array([[s[e][1] for e in examples] for s in seeds])
        estimate = task_difference(after - before)
        low, high = estimate.interval()
        rows.append([label(name) + ", all seeds" + (f", vs {against}" if against else ""), "all", f"{before.mean():.2f}", f"{after.mean():.2f}",
                     f"{100 * estimate.mean:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]",
                     f"{estimate.p:.2f} (t, {estimate.df:g} df, {len(examples)} examples)", "", "", ""])
    return rows


def campaign_row(name: str, seed: int, result: agentopt.Result, pairs: list[tuple[float, float]], winner: str,
                 started: float) -> list[object]:
    return [label(name), seed, f"{result.seed_test.mean:.2f}", f"{result.best.test.mean:.2f}", gain(pairs),
            sign_test(pairs), winner, result.stats["task_llm_calls"], f"{time.perf_counter() - started:.0f}"]


def publish(title: str, heading: str, intro: str, headers: list[str], rows: list[list[object]],
            out: Path | None) -> None:
    """The table on the terminal and, with ``out``, as a markdown results file."""
    Console().print(table(title, headers, rows))
    if out:
        out.write_text("\n".join([f"# {heading} ({date.today().isoformat()})", "", intro, "",
                                  *markdown(headers, rows), ""]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="/tmp/agentopt-multifield.db")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--strategy", choices=sorted(STRATEGIES), default="ape")
    args = parser.parse_args()
    archive = agentopt.Archive(args.db, create=True)
    rows, pooled, vs_ape = [], {}, {}
    seed_agent = agentopt.PromptAgent(instruction=INSTRUCTION, template=TEMPLATE)
    for name, make in TASKS.items():
        task = make()
        for seed in SEEDS:
            runs = {}
            for strategy in dict.fromkeys(["ape", args.strategy]):
                started = time.perf_counter()
                search, budget = STRATEGIES[strategy]
                runs[strategy] = agentopt.optimize(
                    task, seed=seed_agent, strategy=search, models=MODELS, archive=archive, evaluation=EVALUATION,
                    budget=budget, random_seed=seed, progress=False,
                    name=f"multifield-{name}-{seed}" if strategy == "ape" else f"multifield-{strategy}-{name}-{seed}")
            result = runs[args.strategy]
            pairs = paired(archive, seed_candidate(archive, result), result.best.candidate_id)
            pooled.setdefault(name, []).append(pairs)
            if args.strategy != "ape":
                vs_ape.setdefault(name, []).append(paired(archive, runs["ape"].best.candidate_id,
                                                          result.best.candidate_id))
            winner = result.best.agent
            shown = repr(getattr(winner, "instruction", "?"))[:48] + (
                f" +{winner.retrieve} retrieved" if getattr(winner, "retrieve", 0) else "")
            rows.append(campaign_row(name, seed, result, pairs, shown, started))
            Console(stderr=True).print(rows[-1])
    rows += pooled_rows(pooled) + pooled_rows(vs_ape, "APE's winners")
    searched = "APE" if args.strategy == "ape" else f"{args.strategy} (capped at {REFLECTIVE_CALLS} task calls)"
    publish(f"Multi-field task, custom metric: seed prompt vs {searched}'s best on the sealed test split",
            "Multi-field tasks with a custom metric",
            f"`.venv/bin/python experiments/multifield.py{'' if args.strategy == 'ape' else ' --strategy ' + args.strategy}`:"
            f" {searched} from Python (`agentopt.optimize`) on the bundled SmolLM2-135M-Instruct, 48 test examples "
            "per campaign, gains paired on the same examples.", HEADERS, rows, args.out)


if __name__ == "__main__":
    main()
