"""How well do the sweep statistics keep their promises on the design a sweep runs? A simulation.

Simulated sweeps (:mod:`agentopt.archive.calibration`): 3-5 tasks of 40-80 binary test items whose
difficulty every seed and both arms share, arms that suit some items better than others, three seeds
whose campaigns differ in luck. Three methods compare the two arms of each sweep:

- ``before #32``: ``compare_cells`` as it was at ``--old-rev`` (loaded from git): a two-level bootstrap
  with test items resampled independently within each seed, a percentile bootstrap over the
  (task, seed) cells, and the Wilcoxon signed-rank p over them;
- ``two-way bootstrap``: the resampling the design asks for, items drawn once per replicate for every
  seed and arm, seeds drawn, stratified by task; percentile interval, p from the replicates' tails;
- ``crossed t`` (the code now): :mod:`agentopt.archive.sweep_stats`.

With no true difference, an interval should cover 0 in 95 % of sweeps and the pooled test declare a
win or a loss in 5 %; "task verdicts" is the share of sweeps with any task called a win or a loss (the
family Holm protects). With 10 points of true difference, the win rate is the power.

    .venv/bin/python experiments/calibrate_stats.py [--sweeps 1000] [--out experiments/results/calibrate_stats.md]
"""

import argparse
import subprocess
import sys
import time
import types
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from rich.console import Console

from agentopt.archive.calibration import Calibration, Design, calibrate, difference_for
from agentopt.archive.sweep_stats import Cell, PairResult, SweepComparison, compare_cells
from agentopt.optimizer.engine.ui import markdown, table

Compare = Callable[[str, Sequence[Cell]], SweepComparison]
DESIGNS = {
    "our design": Design(),
    "search luck dominates": Design(campaign_sd=1.0, arm_item_sd=0.3),
    "items dominate": Design(campaign_sd=0.2, arm_item_sd=1.0),
    "3 tasks of 40 items": Design(tasks=(3, 3), items=(40, 40)),
}


def old_compare(rev: str) -> Compare:
    """``compare_cells`` as it was at ``rev``, loaded from git, its pairs in today's record."""
    def source(path: str) -> str:
        return subprocess.run(["git", "show", f"{rev}:{path}"], check=True, capture_output=True, text=True,
                              cwd=Path(__file__).parent.parent).stdout

    stats = types.ModuleType("old_stats")
    exec(compile(source("archive/stats.py"), "old_stats", "exec"), stats.__dict__)
    sys.modules["old_stats"] = stats
    module = types.ModuleType("old_sweep_stats")
    exec(compile(source("archive/sweep_stats.py").replace("agentopt.archive.stats", "old_stats"),
                 "old_sweep_stats", "exec"), module.__dict__)

    def compare(sweep_id: str, cells: Sequence[Cell]) -> SweepComparison:
        result = module.compare_cells(sweep_id, cells)
        pairs = tuple(PairResult(p.a, p.b, p.cells, p.mean_diff, p.ci, 0.0,
                                 1.0 if p.wilcoxon_p is None else p.wilcoxon_p, 1.0, p.wins, p.ties, p.losses)
                      for p in result.pairs)
        return SweepComparison(sweep_id, result.method, (), pairs, ())
    return compare


def two_way_bootstrap(replicates: int = 2000) -> Compare:
    """Items resampled once per replicate and used for every seed and both arms, seeds resampled,
    each task on its own draws (stratified); the pooled difference is the tasks' equal-weight mean."""
    rng = np.random.default_rng(0)

    def compare(sweep_id: str, cells: Sequence[Cell]) -> SweepComparison:
        tasks = sorted({c.task for c in cells})
        pooled, verdicts = np.zeros(replicates), []
        for task in tasks:
            table = np.array([[c.scores for c in sorted(cells, key=lambda c: c.seed)
                               if c.task == task and c.arm == arm] for arm in "ab"])
            difference = table[0] - table[1]  # seeds x items
            seeds, items = difference.shape
            picked_seeds = rng.integers(0, seeds, (replicates, seeds))
            picked_items = rng.integers(0, items, (replicates, items))
            means = difference[picked_seeds[:, :, None], picked_items[:, None, :]].mean(axis=(1, 2))
            pooled += means / len(tasks)
            verdicts.append(_tail_p(means) < 0.05 / len(tasks))  # Holm's first step, enough for "any"
        low, high = np.percentile(pooled, [2.5, 97.5])
        mean = float(np.mean([c.mean for c in cells if c.arm == "a"]) - np.mean([c.mean for c in cells if c.arm == "b"]))
        pair = PairResult("a", "b", len(cells) // 2, mean, (float(low), float(high)), 0.0, _tail_p(pooled), 1.0,
                          int(any(verdicts)), 0, 0)
        return SweepComparison(sweep_id, "two-way bootstrap", (), (pair,), ())
    return compare


def _tail_p(replicates: np.ndarray) -> float:
    return float(min(1.0, 2 * min(np.mean(replicates <= 0), np.mean(replicates >= 0))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sweeps", type=int, default=1000, help="simulated sweeps per design and method")
    parser.add_argument("--old-rev", default="87026fe", help="the git revision of the statistics before issue 32")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "calibrate_stats.md")
    args = parser.parse_args()
    console = Console()
    methods = {"before #32": old_compare(args.old_rev), "two-way bootstrap": two_way_bootstrap(),
               "crossed t (now)": compare_cells}
    columns = ["design", "true difference", "method", "sweeps", "coverage of the 95 % interval", "pooled wins",
               "pooled losses", "sweeps with a task verdict", "seconds"]
    rows = []
    runs = [(name, design) for name, design in DESIGNS.items()] + \
        [("our design, 10 points apart", difference_for(10, DESIGNS["our design"]))]
    for name, design in runs:
        for method, compare in methods.items():
            started = time.perf_counter()
            found: Calibration = calibrate(design, args.sweeps, seed=1, compare=compare)
            rows.append([name, f"{100 * found.true_difference:.1f}", method, found.sweeps,
                         f"{100 * found.coverage:.1f} %", f"{100 * found.wins:.1f} %", f"{100 * found.losses:.1f} %",
                         f"{100 * found.task_verdicts:.1f} %", f"{time.perf_counter() - started:.0f}"])
            console.print(rows[-1])
    console.print(table("calibration of the sweep statistics", columns, rows))
    se = 100 * np.sqrt(0.05 * 0.95 / args.sweeps)
    text = ["# Calibration of the sweep statistics (simulated sweeps)", "",
            f"Command: `.venv/bin/python experiments/calibrate_stats.py {' '.join(sys.argv[1:])}`".rstrip(), "",
            __doc__.split("\n\n", 1)[1].split("\n    .venv")[0].strip(), "",
            f"Monte Carlo standard error of a 5 % rate over {args.sweeps} sweeps: {se:.1f} points; of a 95 % "
            f"coverage, the same.", "", *markdown(columns, rows)]
    args.out.write_text("\n".join(text) + "\n")
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
