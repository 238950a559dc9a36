"""Statistics over a sweep's campaigns: is one strategy better than another beyond the noise?

Each finished campaign of a sweep is a :class:`Cell`: one task, one *arm* (a strategy with its
parameters and model settings), one seed, and its winner's score on every test example. Two sources
of noise hide a real difference: the search itself (another seed finds another winner) and the
finite test split (20 examples make one example worth 5 points). The method, stated in every output
(:data:`METHOD`), accounts for both:

- an arm on a task: the mean over seeds of the winner's test mean, with a 95 % interval from a
  two-level bootstrap: seeds resampled, then the test examples within each;
- two arms: for every (task, seed) both ran, the difference of their test means, which is paired
  (the same test examples, the same seed); the mean difference with a paired bootstrap 95 %
  interval over those cells and the Wilcoxon signed-rank test (two-sided, zero differences dropped);
- wins, ties and losses per task: the same two-level bootstrap on the per-example differences of
  that task; a win or a loss only when its 95 % interval excludes 0, a tie otherwise.
"""

import itertools
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agentopt.archive.records import Record
from agentopt.archive.stats import N_BOOT, interval, two_level_means

METHOD = (
    "Per task and arm: mean over seeds of the winner's test mean, 95 % interval from a two-level bootstrap "
    f"({N_BOOT} resamples: seeds, then test examples within each seed). Per pair of arms: the difference of "
    "test means in every (task, seed) cell both ran (paired: same seed, same test examples), its mean with a "
    "paired bootstrap 95 % interval over cells and the two-sided Wilcoxon signed-rank p (zero differences "
    "dropped). Wins / ties / losses per task count only when the two-level bootstrap 95 % interval of the "
    "per-example differences on that task excludes 0."
)


@dataclass(frozen=True)
class Cell(Record):
    """One finished campaign of a sweep: its winner's score on each test example, and what it cost."""

    task: str
    arm: str
    seed: int
    campaign_id: str
    examples: tuple[str, ...]
    scores: tuple[float, ...]
    calls: int = 0
    tokens: int = 0
    usd: float = 0.0
    wall_s: float = 0.0

    @property
    def mean(self) -> float:
        return float(np.mean(self.scores)) if self.scores else float("nan")


@dataclass(frozen=True)
class ArmScore(Record):
    task: str
    arm: str
    seeds: int
    mean: float
    ci: tuple[float, float]


@dataclass(frozen=True)
class PairResult(Record):
    """``a`` minus ``b``; ``wins`` are tasks where ``a`` is significantly better."""

    a: str
    b: str
    cells: int
    mean_diff: float
    ci: tuple[float, float]
    wilcoxon_p: float | None
    wins: int
    ties: int
    losses: int


@dataclass(frozen=True)
class ArmCost(Record):
    arm: str
    campaigns: int
    calls: int
    tokens: int
    usd: float
    wall_s: float


@dataclass(frozen=True)
class SweepComparison(Record):
    sweep_id: str
    method: str
    scores: tuple[ArmScore, ...]
    pairs: tuple[PairResult, ...]
    costs: tuple[ArmCost, ...]
    failed: tuple[str, ...] = ()  # campaigns left out: failed, or not finished


def wilcoxon_p(differences: Sequence[float]) -> float | None:
    """Two-sided Wilcoxon signed-rank p, zero differences dropped (1.0 when all are zero);
    ``None`` with fewer than 2 cells."""
    from scipy.stats import wilcoxon

    if len(differences) < 2:
        return None
    if not any(differences):
        return 1.0
    return float(wilcoxon(differences, zero_method="wilcox", alternative="two-sided").pvalue)


def _paired(a: Cell, b: Cell) -> list[float]:
    """Per-example differences a - b on the test examples both were scored on."""
    scores = dict(zip(b.examples, b.scores, strict=True))
    return [x - scores[e] for e, x in zip(a.examples, a.scores, strict=True) if e in scores]


def compare_cells(sweep_id: str, cells: Sequence[Cell], failed: Sequence[str] = ()) -> SweepComparison:
    by_task_arm: dict[tuple[str, str], list[Cell]] = defaultdict(list)
    for cell in cells:
        by_task_arm[(cell.task, cell.arm)].append(cell)
    arms = sorted({c.arm for c in cells})
    tasks = sorted({c.task for c in cells})
    scores = []
    for (task, arm), group in sorted(by_task_arm.items()):
        groups = [c.scores for c in group if c.scores]
        if not groups:
            continue
        scores.append(ArmScore(task, arm, len(groups), float(np.mean([np.mean(g) for g in groups])),
                               interval(two_level_means(groups))))
    pairs = []
    for a, b in itertools.combinations(arms, 2):
        diffs, outcome = [], {"win": 0, "tie": 0, "loss": 0}
        for task in tasks:
            mine = {c.seed: c for c in by_task_arm.get((task, a), []) if c.scores}
            theirs = {c.seed: c for c in by_task_arm.get((task, b), []) if c.scores}
            seeds = sorted(mine.keys() & theirs.keys())
            if not seeds:
                continue
            per_example = [_paired(mine[s], theirs[s]) for s in seeds]
            diffs += [float(np.mean(d)) for d in per_example if d]
            if any(per_example):
                low, high = interval(two_level_means(per_example))
                outcome["win" if low > 0 else "loss" if high < 0 else "tie"] += 1
        if not diffs:
            continue
        ci = interval(two_level_means([diffs])) if len(diffs) > 1 else (diffs[0], diffs[0])
        pairs.append(PairResult(a, b, len(diffs), float(np.mean(diffs)), ci, wilcoxon_p(diffs),
                                outcome["win"], outcome["tie"], outcome["loss"]))
    costs = []
    for arm in arms:
        mine = [c for c in cells if c.arm == arm]
        costs.append(ArmCost(arm, len(mine), sum(c.calls for c in mine), sum(c.tokens for c in mine),
                             round(sum(c.usd for c in mine), 6), round(sum(c.wall_s for c in mine), 1)))
    return SweepComparison(sweep_id, METHOD, tuple(scores), tuple(pairs), tuple(costs), tuple(failed))


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def to_markdown(result: SweepComparison) -> str:
    lines = [f"# Sweep {result.sweep_id}: comparison", "", f"Method: {result.method}", "",
             "## Test score per task and arm (%)", "", "| task | arm | seeds | mean | 95 % interval |",
             "|---|---|---|---|---|"]
    lines += [f"| {s.task} | {s.arm} | {s.seeds} | {_pct(s.mean)} | [{_pct(s.ci[0])}, {_pct(s.ci[1])}] |"
              for s in result.scores]
    lines += ["", "## Pairs: A minus B (points)", "",
              "| A | B | cells | mean difference | 95 % interval | Wilcoxon p | significant wins / ties / losses (tasks) |",
              "|---|---|---|---|---|---|---|"]
    for p in result.pairs:
        pval = "n/a" if p.wilcoxon_p is None else f"{p.wilcoxon_p:.3g}"
        lines.append(f"| {p.a} | {p.b} | {p.cells} | {_pct(p.mean_diff)} | [{_pct(p.ci[0])}, {_pct(p.ci[1])}] | "
                     f"{pval} | {p.wins} / {p.ties} / {p.losses} |")
    lines += ["", "## Cost per arm (all its campaigns)", "", "| arm | campaigns | calls | tokens | USD | wall s |",
              "|---|---|---|---|---|---|"]
    lines += [f"| {c.arm} | {c.campaigns} | {c.calls} | {c.tokens} | {c.usd:.4f} | {c.wall_s:.0f} |"
              for c in result.costs]
    if result.failed:
        lines += ["", "Left out (failed or unfinished): " + ", ".join(result.failed)]
    return "\n".join(lines) + "\n"


def plot(result: SweepComparison, path: Path) -> Path | None:
    """Each arm's mean and interval per task; ``None`` when matplotlib (the ``plots`` extra) is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    tasks = sorted({s.task for s in result.scores})
    arms = sorted({s.arm for s in result.scores})
    fig, ax = plt.subplots(figsize=(max(4.0, 1.6 * len(tasks) * max(len(arms), 1) / 2), 3.5))
    width = 0.8 / max(len(arms), 1)
    for i, arm in enumerate(arms):
        mine = {s.task: s for s in result.scores if s.arm == arm}
        xs = [t + (i - (len(arms) - 1) / 2) * width for t, task in enumerate(tasks) if task in mine]
        shown = [mine[task] for task in tasks if task in mine]
        means = [100 * s.mean for s in shown]
        errors = [[100 * (s.mean - s.ci[0]) for s in shown], [100 * (s.ci[1] - s.mean) for s in shown]]
        ax.errorbar(xs, means, yerr=errors, fmt="o", capsize=3, label=arm)
    ax.set_xticks(range(len(tasks)), tasks)
    ax.set_ylabel("test score (%)")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
