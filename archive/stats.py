"""Confidence intervals: for a candidate's mean score, and for a mean over seeds of per-seed means."""

from collections.abc import Sequence

import numpy as np

N_BOOT = 4000  # two-level replicates: seeds x examples need more than one level's 2000


def bootstrap_ci(scores: Sequence[float], confidence: float = 0.95, n_boot: int = 2000,
                 seed: int = 0) -> tuple[float, float, float]:
    """Mean and percentile-bootstrap interval; seeded so the archive's figures are reproducible."""
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
    return data[rng.integers(0, len(data), size=(n_boot, len(data)))].mean(axis=1)


def two_level_means(groups: Sequence[Sequence[float]], n_boot: int = N_BOOT, seed: int = 0) -> np.ndarray:
    """Bootstrap replicates of the mean of group means: the groups (seeds) resampled, then the
    values (test examples) within each picked group, independently for every pick."""
    arrays = [np.asarray(g, dtype=float) for g in groups if len(g)]
    if not arrays:
        raise ValueError("no scores")
    rng = np.random.default_rng(seed)
    k = len(arrays)
    inner = np.stack([a[rng.integers(0, len(a), size=(n_boot * k, len(a)))].mean(axis=1) for a in arrays])
    picks = rng.integers(0, k, size=(n_boot, k))
    return inner[picks, np.arange(n_boot * k).reshape(n_boot, k)].mean(axis=1)  # type: ignore[no-any-return]


def interval(replicates: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(replicates, [tail, 100 - tail])
    return float(low), float(high)
