"""The sweep statistics against figures worked out by hand."""

import json

import numpy as np
import pytest

from agentopt.archive.stats import interval, two_level_means
from agentopt.archive.sweep_stats import Cell, compare_cells, to_markdown, wilcoxon_p

EXAMPLES = ("e1", "e2", "e3", "e4")


def _cell(task: str, arm: str, seed: int, scores: tuple[float, ...], calls: int = 10) -> Cell:
    return Cell(task, arm, seed, f"{task}-{arm}-{seed}", EXAMPLES[: len(scores)], scores, calls, 100 * calls,
                0.01 * calls, 5.0)


def test_wilcoxon_matches_the_exact_distribution_counted_by_hand() -> None:
    # |d| ranks: 0.05 -> 1, 0.1 -> 2, 0.2 -> 3, 0.3 -> 4; W- = 1. Of the 16 equally likely sign
    # patterns, 2 give a rank sum <= 1 ({} and {1}); two-sided p = 2 * 2 / 16 = 0.25.
    assert wilcoxon_p([0.1, 0.2, -0.05, 0.3]) == pytest.approx(0.25)
    # all positive with n = 5: only the empty pattern reaches 0; p = 2 / 32
    assert wilcoxon_p([0.1, 0.2, 0.3, 0.4, 0.5]) == pytest.approx(0.0625)
    assert wilcoxon_p([0.0, 0.0, 0.0]) == 1.0
    assert wilcoxon_p([0.2]) is None


def test_two_level_bootstrap_is_exact_where_there_is_no_spread() -> None:
    same = two_level_means([[0.5, 0.5], [0.5, 0.5, 0.5]])
    assert interval(same) == (0.5, 0.5)
    spread = two_level_means([[0.0, 1.0, 1.0, 0.0], [1.0, 1.0, 1.0, 0.0]], n_boot=3000)
    low, high = interval(spread)
    assert low < 0.625 < high, "the mean of the seed means lies inside"
    assert float(np.mean(spread)) == pytest.approx(0.625, abs=0.03)


def test_compare_cells_hand_computed() -> None:
    # task t1: arm "a" scores 3/4 and 4/4 on seeds 0, 1; arm "b" scores 1/4 and 2/4.
    # per-seed differences of means: 0.5 and 0.5 -> mean difference 0.5, interval [0.5, 0.5].
    cells = [
        _cell("t1", "a", 0, (1, 1, 1, 0)), _cell("t1", "a", 1, (1, 1, 1, 1)),
        _cell("t1", "b", 0, (1, 0, 0, 0)), _cell("t1", "b", 1, (1, 1, 0, 0)),
        # task t2: identical answers -> a tie
        _cell("t2", "a", 0, (1, 0, 1, 0)), _cell("t2", "b", 0, (1, 0, 1, 0)),
    ]
    result = compare_cells("s1", cells, failed=["c9"])
    scores = {(s.task, s.arm): s for s in result.scores}
    assert scores[("t1", "a")].mean == pytest.approx(0.875) and scores[("t1", "a")].seeds == 2
    assert scores[("t1", "b")].mean == pytest.approx(0.375)
    assert scores[("t2", "a")].ci[0] < 0.5 < scores[("t2", "a")].ci[1], "one seed: the test examples' spread alone"
    (pair,) = result.pairs
    assert (pair.a, pair.b, pair.cells) == ("a", "b", 3)
    assert pair.mean_diff == pytest.approx((0.5 + 0.5 + 0.0) / 3)
    assert (pair.wins, pair.ties, pair.losses) == (1, 1, 0)
    # differences 0.5, 0.5, 0.0: the zero is dropped, two equal ranks both positive: p = 2 * 1/4 = 0.5
    assert pair.wilcoxon_p == pytest.approx(0.5)
    costs = {c.arm: c for c in result.costs}
    assert (costs["a"].campaigns, costs["a"].calls, costs["a"].tokens) == (3, 30, 3000)
    assert costs["a"].usd == pytest.approx(0.3) and costs["a"].wall_s == 15.0
    text = to_markdown(result)
    assert "| t1 | a | 2 | 87.5 |" in text and "| a | b | 3 | 33.3 |" in text and "1 / 1 / 0" in text
    assert "Method:" in text and "c9" in text
    assert json.loads(json.dumps(result.as_dict()))["pairs"][0]["wins"] == 1


def test_a_noisy_difference_is_a_tie_not_a_win() -> None:
    cells = [_cell("t", "a", s, (1, 0, 1, 0)) for s in range(3)] + \
            [_cell("t", "b", 0, (0, 1, 0, 1)), _cell("t", "b", 1, (1, 0, 0, 1)), _cell("t", "b", 2, (0, 0, 1, 0))]
    (pair,) = compare_cells("s", cells).pairs
    assert pair.mean_diff > 0 and (pair.wins, pair.ties, pair.losses) == (0, 1, 0)
