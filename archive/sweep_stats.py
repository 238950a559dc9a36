"""Statistics over a sweep's campaigns: is one strategy better than another beyond the noise?

Each finished campaign of a sweep is a :class:`Cell`: one task, one *arm* (a strategy with its
parameters and model settings), one seed, and its winner's score on every test example. Two sources
of noise hide a real difference: the search itself (another seed finds another winner) and the
finite test split (20 examples make one example worth 5 points). Every seed and every arm of a task
is scored on the same test items, so the design is crossed, arm × seed × item, not nested: the
items' share of the noise is common to all seeds and does not shrink with more seeds.

The method, stated in every output (:data:`METHOD`):

- an arm on a task: the mean of its seeds × items table, with a t interval from the crossed
  variance of :func:`agentopt.archive.stats.crossed` (seeds' and items' mean squares, Satterthwaite's
  degrees of freedom);
- two arms on a task: the same on the table of per-example differences, paired by seed (the same
  seed number) and by item;
- two arms over all tasks: the equal-weight mean of the tasks' differences (stratified by task: the
  tasks share neither items nor campaigns), Welch–Satterthwaite degrees of freedom;
- two arms on one task alone (its interval and its win, tie or loss): the task's difference on the
  containment degrees of freedom, seeds − 1, because with three seeds Satterthwaite's degrees of
  freedom come out too high exactly when the seeds' mean square is low by chance;
- p-values: two-sided, Student's t; Holm's correction over the pairs of the comparison, and over
  every (pair, task) for the per-task wins, ties and losses: a win or a loss only when its Holm p is
  below 0.05.

Why not a bootstrap: a sweep has three seeds per cell, and ``experiments/calibrate_stats.py`` shows
what the resampling methods cover in a simulation of this design; its table is in the README.
"""

import itertools
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from agentopt.archive.records import Record
from agentopt.archive.stats import Estimate, crossed, holm, pooled

ALPHA = 0.05
METHOD = (
    "Scores are crossed (every seed and arm of a task scores the same test items). Per task and arm: the "
    "mean of the seeds x items table, 95 % t interval on its crossed variance (seeds' and items' two-way "
    "ANOVA mean squares, Satterthwaite df), clipped to [0, 1]. Per pair: per-example differences paired by "
    "seed and item; over all tasks the equal-weight mean of the tasks' crossed estimates (stratified by "
    "task, Welch-Satterthwaite df); per task alone the same estimate on seeds - 1 df (containment: "
    "conservative with few seeds). p: two-sided Student's t (scipy.stats.t). Holm's correction over the "
    "pairs (pooled) and over every pair x task (wins / ties / losses: a win or loss only at Holm p < 0.05); "
    "intervals are not adjusted. Items an arm's seeds did not all score (errors) are left out of its table."
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
    items: int
    mean: float
    ci: tuple[float, float]
    df: float


@dataclass(frozen=True)
class TaskDiff(Record):
    """``a`` minus ``b`` on one task; ``verdict`` is win, tie or loss for ``a`` at Holm p < 0.05."""

    task: str
    seeds: int
    items: int
    mean_diff: float
    ci: tuple[float, float]
    df: float
    p: float
    p_holm: float
    verdict: str


@dataclass(frozen=True)
class PairResult(Record):
    """``a`` minus ``b`` over the tasks both ran; ``wins`` are tasks where ``a`` is significantly better."""

    a: str
    b: str
    cells: int
    mean_diff: float
    ci: tuple[float, float]
    df: float
    p: float
    p_holm: float
    wins: int
    ties: int
    losses: int
    tasks: tuple[TaskDiff, ...] = ()


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

    def __str__(self) -> str:
        """The tables and the method, as ``agentopt archive compare --sweep`` prints them."""
        return to_markdown(self)


def _tables(cells: Sequence[Cell]) -> tuple[list[int], list[str], dict[tuple[int, str], float]]:
    """The seeds and the items every one of ``cells`` scored, and each (seed, item)'s score: the
    complete crossed table that :func:`agentopt.archive.stats.crossed` needs."""
    scored = [dict(zip(c.examples, c.scores, strict=True)) for c in cells]
    items = [e for e in cells[0].examples if all(e in s for s in scored)]
    return [c.seed for c in cells], items, {(c.seed, e): s[e] for c, s in zip(cells, scored) for e in items}


def _arm_table(cells: Sequence[Cell]) -> np.ndarray:
    seeds, items, score = _tables(cells)
    return np.array([[score[s, e] for e in items] for s in seeds]).reshape(len(seeds), len(items))


def _difference_table(mine: Sequence[Cell], theirs: Sequence[Cell]) -> np.ndarray:
    """Per-example differences, paired by seed and item: rows are the seeds both ran."""
    seeds, items, a = _tables(mine)
    _, their_items, b = _tables(theirs)
    common = [e for e in items if e in set(their_items)]
    return np.array([[a[s, e] - b[s, e] for e in common] for s in seeds]).reshape(len(seeds), len(common))


def task_difference(table: np.ndarray, estimate: Estimate | None = None) -> Estimate:
    """A task's seeds × items table of paired differences judged on its own (``estimate``: its
    :func:`agentopt.archive.stats.crossed` estimate when already at hand), on the containment degrees
    of freedom, one less than its seeds. Satterthwaite's, fine once tasks are pooled, are anti-conservative for one task with three
    seeds (a small seed mean square raises them and lowers the variance at once): see
    ``experiments/calibrate_stats.py``."""
    seeds, estimate = table.shape[0], estimate or crossed(table)
    return replace(estimate, df=seeds - 1) if seeds > 1 and estimate.df > 0 else estimate


def _clipped(low_high: tuple[float, float]) -> tuple[float, float]:
    return max(0.0, low_high[0]), min(1.0, low_high[1])


def compare_cells(sweep_id: str, cells: Sequence[Cell], failed: Sequence[str] = ()) -> SweepComparison:
    by_task_arm: dict[tuple[str, str], dict[int, Cell]] = defaultdict(dict)
    for cell in sorted(cells, key=lambda c: c.seed):
        if cell.scores:
            by_task_arm[(cell.task, cell.arm)][cell.seed] = cell
    arms = sorted({c.arm for c in cells})
    tasks = sorted({c.task for c in cells})
    scores = []
    for (task, arm), group in sorted(by_task_arm.items()):
        table = _arm_table(list(group.values()))
        if not table.size:
            continue
        estimate = crossed(table)
        scores.append(ArmScore(task, arm, table.shape[0], table.shape[1], estimate.mean,
                               _clipped(estimate.interval()), round(estimate.df, 1)))
    per_pair: dict[tuple[str, str], list[tuple[str, np.ndarray, Estimate]]] = {}
    for a, b in itertools.combinations(arms, 2):
        found = []
        for task in tasks:
            mine, theirs = by_task_arm.get((task, a), {}), by_task_arm.get((task, b), {})
            seeds = sorted(mine.keys() & theirs.keys())
            paired = _difference_table([mine[s] for s in seeds], [theirs[s] for s in seeds]) if seeds else None
            if paired is not None and paired.size:
                found.append((task, paired, crossed(paired)))
        if found:
            per_pair[(a, b)] = found
    task_holm = iter(holm([task_difference(table, e).p for found in per_pair.values() for _, table, e in found]))
    overall = {key: pooled([e for _, _, e in found]) for key, found in per_pair.items()}
    pair_holm = dict(zip(overall, holm([e.p for e in overall.values()]), strict=True))
    pairs = []
    for (a, b), found in per_pair.items():
        by_task = []
        for task, table, pooled_part in found:
            estimate, adjusted = task_difference(table, pooled_part), next(task_holm)
            verdict = "tie" if adjusted >= ALPHA else "win" if estimate.mean > 0 else "loss"
            by_task.append(TaskDiff(task, table.shape[0], table.shape[1], estimate.mean, estimate.interval(),
                                    round(estimate.df, 1), estimate.p, adjusted, verdict))
        total = overall[(a, b)]
        verdicts = [t.verdict for t in by_task]
        pairs.append(PairResult(a, b, sum(t.seeds for t in by_task), total.mean, total.interval(),
                                round(total.df, 1), total.p, pair_holm[(a, b)], verdicts.count("win"),
                                verdicts.count("tie"), verdicts.count("loss"), tuple(by_task)))
    costs = []
    for arm in arms:
        spent = [c for c in cells if c.arm == arm]
        costs.append(ArmCost(arm, len(spent), sum(c.calls for c in spent), sum(c.tokens for c in spent),
                             round(sum(c.usd for c in spent), 6), round(sum(c.wall_s for c in spent), 1)))
    return SweepComparison(sweep_id, METHOD, tuple(scores), tuple(pairs), tuple(costs), tuple(failed))


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _p(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def to_markdown(result: SweepComparison) -> str:
    lines = [f"# Sweep {result.sweep_id}: comparison", "", f"Method: {result.method}", "",
             "## Test score per task and arm (%)", "", "| task | arm | seeds | items | mean | 95 % interval | df |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {s.task} | {s.arm} | {s.seeds} | {s.items} | {_pct(s.mean)} | [{_pct(s.ci[0])}, {_pct(s.ci[1])}] "
              f"| {s.df:g} |" for s in result.scores]
    lines += ["", "## Pairs over all tasks: A minus B (points)", "",
              "| A | B | cells | mean difference | 95 % interval | df | p | Holm p | wins / ties / losses (tasks) |",
              "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {p.a} | {p.b} | {p.cells} | {_pct(p.mean_diff)} | [{_pct(p.ci[0])}, {_pct(p.ci[1])}] | {p.df:g} | "
              f"{_p(p.p)} | {_p(p.p_holm)} | {p.wins} / {p.ties} / {p.losses} |" for p in result.pairs]
    lines += ["", "## Pairs per task: A minus B (points)", "",
              "| A | B | task | seeds | items | difference | 95 % interval | df | p | Holm p | verdict |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {p.a} | {p.b} | {t.task} | {t.seeds} | {t.items} | {_pct(t.mean_diff)} | "
              f"[{_pct(t.ci[0])}, {_pct(t.ci[1])}] | {t.df:g} | {_p(t.p)} | {_p(t.p_holm)} | {t.verdict} |"
              for p in result.pairs for t in p.tasks]
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
