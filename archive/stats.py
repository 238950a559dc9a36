"""Confidence intervals for a candidate's mean score."""

from collections.abc import Sequence

import numpy as np


def bootstrap_ci(scores: Sequence[float], confidence: float = 0.95, n_boot: int = 2000,
                 seed: int = 0) -> tuple[float, float, float]:
    """Mean and percentile-bootstrap interval; seeded so the archive's figures are reproducible."""
    means = _bootstrap_means(scores, n_boot, seed)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(np.mean(scores)), float(low), float(high)


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
