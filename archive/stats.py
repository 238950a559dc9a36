"""Confidence intervals for a candidate's mean score."""

from collections.abc import Sequence

import numpy as np


def bootstrap_ci(scores: Sequence[float], confidence: float = 0.95, n_boot: int = 2000,
                 seed: int = 0) -> tuple[float, float, float]:
    """Mean and percentile-bootstrap interval; seeded so the archive's figures are reproducible."""
    if not scores:
        raise ValueError("no scores")
    data = np.asarray(scores, dtype=float)
    if len(data) == 1:
        return float(data[0]), float(data[0]), float(data[0])
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, len(data), size=(n_boot, len(data)))].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(data.mean()), float(low), float(high)
