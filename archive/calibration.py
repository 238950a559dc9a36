"""Does a comparison method hold its promises on the design a sweep runs? Simulated sweeps tell.

A simulated sweep has the structure of a real one (see :mod:`agentopt.archive.sweep_stats`): tasks,
each with its own test items of varied difficulty that every seed and every arm scores; arms that
find winners of varied quality from seed to seed; winners that suit some items better than others;
binary scores. With no true difference between the arms, a method's 95 % interval must cover zero
about 95 % of the time and it must declare a win at most 5 % of the time; with a true difference,
how often it declares the win is its power. :func:`calibrate` counts those over many sweeps, so a
change to the statistics, or a design with other counts, can be checked before its intervals are
trusted (``experiments/calibrate_stats.py`` prints the table, ``tests/test_stats_calibration.py``
holds the line).
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from agentopt.archive.records import Record
from agentopt.archive.sweep_stats import ALPHA, Cell, SweepComparison, compare_cells


@dataclass(frozen=True)
class Design:
    """A simulated sweep: two arms, ``a`` and ``b``; the spreads are standard deviations on the logit
    scale. ``difference`` is added to arm ``a``'s logit (0: no true difference)."""

    tasks: tuple[int, int] = (3, 5)  # drawn uniformly, both ends included
    items: tuple[int, int] = (40, 80)
    seeds: int = 3
    task_sd: float = 0.7  # the tasks' base accuracies, around logit -0.3 (43 %)
    item_sd: float = 2.0  # item difficulty, shared by every seed and arm of the task
    arm_item_sd: float = 0.7  # an arm suits some items better than others, on every seed
    seed_sd: float = 0.3  # a seed that helps both arms (same seed number)
    campaign_sd: float = 0.5  # the search's own luck: one winner better than another
    campaign_item_sd: float = 0.5  # and suiting its own items
    difference: float = 0.0


def simulate(design: Design, rng: np.random.Generator) -> list[Cell]:
    cells = []
    for t in range(int(rng.integers(design.tasks[0], design.tasks[1] + 1))):
        n = int(rng.integers(design.items[0], design.items[1] + 1))
        logit = (rng.normal(-0.3, design.task_sd) + rng.normal(0, design.item_sd, n)[None, None, :]
                 + rng.normal(0, design.arm_item_sd, (2, 1, n)) + rng.normal(0, design.seed_sd, (1, design.seeds, 1))
                 + rng.normal(0, design.campaign_sd, (2, design.seeds, 1))
                 + rng.normal(0, design.campaign_item_sd, (2, design.seeds, n)))
        logit[0] += design.difference
        scores = (rng.random(logit.shape) < 1 / (1 + np.exp(-logit))).astype(float)
        examples = tuple(f"e{i}" for i in range(n))
        cells += [Cell(f"t{t}", arm, seed, f"t{t}-{arm}-{seed}", examples, tuple(scores[k, seed]))
                  for k, arm in enumerate("ab") for seed in range(design.seeds)]
    return cells


def true_difference(design: Design, draws: int = 400_000, seed: int = 0) -> float:
    """The expected difference of accuracy between the arms, over tasks, items and campaigns."""
    rng = np.random.default_rng(seed)
    spread = np.sqrt(design.item_sd ** 2 + design.arm_item_sd ** 2 + design.seed_sd ** 2 + design.campaign_sd ** 2
                     + design.campaign_item_sd ** 2)
    logit = rng.normal(-0.3, design.task_sd, draws) + rng.normal(0, spread, draws)
    return float(np.mean(1 / (1 + np.exp(-(logit + design.difference))) - 1 / (1 + np.exp(-logit))))


def difference_for(points: float, design: Design) -> Design:
    """The design whose arm ``a`` is better by ``points`` of accuracy (bisection on the logit shift)."""
    low, high = 0.0, 5.0
    for _ in range(40):
        middle = (low + high) / 2
        low, high = (middle, high) if true_difference(replace(design, difference=middle)) < points / 100 else \
            (low, middle)
    return replace(design, difference=(low + high) / 2)


@dataclass(frozen=True)
class Calibration(Record):
    """Over ``sweeps`` simulated sweeps: how often the pair's 95 % interval covered the true
    difference (exact with no difference; with one, the population's, which a sweep's few tasks only
    approximate), how often the pooled p was below 0.05 with ``a`` ahead (``wins``) or behind
    (``losses``), and how often at least one task was called a win or a loss."""

    sweeps: int
    true_difference: float
    coverage: float
    wins: float
    losses: float
    task_verdicts: float

    @property
    def monte_carlo_se(self) -> float:
        """The standard error of a rate near 5 % over these sweeps."""
        return float(np.sqrt(ALPHA * (1 - ALPHA) / self.sweeps))


def calibrate(design: Design, sweeps: int = 1000, seed: int = 0,
              compare: Callable[[str, Sequence[Cell]], SweepComparison] = compare_cells) -> Calibration:
    rng = np.random.default_rng(seed)
    truth = true_difference(design) if design.difference else 0.0
    covered = wins = losses = verdicts = 0
    for _ in range(sweeps):
        (pair,) = compare("simulated", simulate(design, rng)).pairs
        covered += pair.ci[0] <= truth <= pair.ci[1]
        significant = pair.p < ALPHA
        wins += significant and pair.mean_diff > 0
        losses += significant and pair.mean_diff < 0
        verdicts += pair.wins + pair.losses > 0
    return Calibration(sweeps, truth, covered / sweeps, wins / sweeps, losses / sweeps, verdicts / sweeps)

