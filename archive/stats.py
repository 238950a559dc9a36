"""Confidence intervals: for a candidate's mean score, and for means over a crossed design.

A sweep scores every seed of a task on the **same** test items, so its scores are crossed
(seed × item, and arm × seed × item for a comparison): an item that is hard is hard for every seed
and every arm. Two sources of noise then add up in a task's mean, and neither may be divided by the
other's count (the mistake of resampling items independently within each seed):

    Var(mean) = σ²_seed / S + σ²_item / n + σ²_residual / (S n)

:func:`crossed` estimates that sum with the two-way ANOVA's mean squares (Cornfield–Tukey: the
expected mean squares of a seeds × items table, without replication) and gives it Satterthwaite's
degrees of freedom; :func:`pooled` adds tasks, which share nothing, with equal weights. The interval
is Student's t on those degrees of freedom, not a bootstrap, because a sweep has three seeds: a
percentile bootstrap over three seeds has ten distinct resamples, and its interval, close to the
range of the three, under-covers when the search's own noise dominates (``experiments/calibrate_stats.py``
simulates our design and prints the coverage of each method).
When the seeds' spread dominates, the degrees of freedom fall to S − 1 and the interval widens as it
must.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np



def bootstrap_ci(scores: Sequence[float], confidence: float = 0.95, n_boot: int = 2000,
                 seed: int = 0) -> tuple[float, float, float]:
    """Mean and percentile-bootstrap interval of one candidate's scores (independent items);
    seeded so the archive's figures are reproducible."""
    return float(np.mean(scores)), *interval(_bootstrap_means(scores, n_boot, seed), confidence)


def bootstrap_median(scores: Sequence[float], n_boot: int = 2000, seed: int = 0) -> float:
    """The median of the bootstrap means: ADAS's fitness, less swayed by a lucky few examples."""
    return float(np.median(_bootstrap_means(scores, n_boot, seed)))


def _bootstrap_means(scores: Sequence[float], n_boot: int, seed: int) -> np.ndarray:
    if not scores:
        raise ValueError("no scores")
    data = np.asarray(scores, dtype=float)
    if len(data) == 1:
        return data
    rng = np.random.default_rng(seed)
    # numpy types a reduction as Any (scalar or array); along an axis of this 2-D draw it is an array.
    means: np.ndarray = data[rng.integers(0, len(data), size=(n_boot, len(data)))].mean(axis=1)
    return means


def interval(replicates: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(replicates, [tail, 100 - tail])
    return float(low), float(high)


@dataclass(frozen=True)
class Estimate:
    """A mean, its standard error and the degrees of freedom of that error: a t interval and a p.

    ``df`` is 0 when the data carry no spread at all (every score the same, or one value): the
    interval is then the mean alone and ``p`` is 1 for a zero mean, 0 otherwise."""

    mean: float
    se: float
    df: float

    def interval(self, confidence: float = 0.95) -> tuple[float, float]:
        if self.df == 0 or self.se == 0:
            return self.mean, self.mean
        from scipy.stats import t

        half = float(t.ppf(0.5 + confidence / 2, self.df)) * self.se
        return self.mean - half, self.mean + half

    @property
    def p(self) -> float:
        """Two-sided p of "the true mean is 0", from Student's t (``scipy.stats.t``) on ``df``."""
        if self.df == 0 or self.se == 0:
            return 1.0 if self.mean == 0 else 0.0
        from scipy.stats import t

        return float(min(1.0, 2 * t.sf(abs(self.mean) / self.se, self.df)))


def crossed(table: np.ndarray) -> Estimate:
    """The grand mean of a seeds × items table whose items are the same in every row.

    Mean squares of the two-way layout: E[MS_seed] = σ²_e + n σ²_seed, E[MS_item] = σ²_e + S σ²_item,
    E[MS_residual] = σ²_e, so (MS_seed + MS_item − MS_residual) / (S n) is unbiased for the variance
    in the module docstring. When that difference falls below one of the two mean squares (sampling
    noise in a small component), the larger mean square alone is used: never narrower than either
    source on its own. One seed leaves the items' spread only; one item, the seeds' only."""
    data = np.asarray(table, dtype=float)
    if data.ndim != 2 or not data.size:
        raise ValueError("no scores")
    seeds, items = data.shape
    grand = float(data.mean())
    row, column = data.mean(axis=1), data.mean(axis=0)
    terms: list[tuple[float, int]] = []  # (mean square, its degrees of freedom), summed with signs
    if seeds > 1:
        terms.append((items * float(((row - grand) ** 2).sum()) / (seeds - 1), seeds - 1))
    if items > 1:
        terms.append((seeds * float(((column - grand) ** 2).sum()) / (items - 1), items - 1))
    if len(terms) == 2:
        residual = data - row[:, None] - column[None, :] + grand
        df_residual = (seeds - 1) * (items - 1)
        ms_residual = float((residual ** 2).sum()) / df_residual
        if terms[0][0] + terms[1][0] - ms_residual >= max(terms[0][0], terms[1][0]):
            terms.append((-ms_residual, df_residual))
        else:
            terms = [max(terms)]
    return _satterthwaite(grand, [(ms / (seeds * items), df) for ms, df in terms])


def pooled(estimates: Sequence[Estimate]) -> Estimate:
    """The equal-weight mean of independent estimates (tasks: their own items, their own campaigns),
    with Welch–Satterthwaite degrees of freedom."""
    if not estimates:
        raise ValueError("no estimates")
    k = len(estimates)
    return _satterthwaite(sum(e.mean for e in estimates) / k,
                          [(e.se ** 2 / k ** 2, e.df) for e in estimates if e.df > 0])


def _satterthwaite(mean: float, variances: Sequence[tuple[float, float]]) -> Estimate:
    """A variance summed from independent pieces, each ``(signed variance, its df)``; its df from
    Satterthwaite's formula (the sum's squared over the sum of each piece's square over its df)."""
    total = sum(v for v, _ in variances)
    spread = sum(v * v / df for v, df in variances if df > 0)
    if total <= 0 or spread <= 0:
        return Estimate(mean, 0.0, 0.0)
    return Estimate(mean, math.sqrt(total), total * total / spread)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment: the family of tests keeps its error rate at α when each adjusted
    p is compared with α. Adjusted p's keep their order and never exceed 1."""
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    adjusted = [0.0] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(pvalues) - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted
