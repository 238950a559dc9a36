"""The sweep statistics against figures worked out by hand."""

import json

import numpy as np
import pytest
from scipy.stats import t

from agentopt.archive.stats import Estimate, crossed, holm, pooled
from agentopt.archive.sweep_stats import Cell, compare_cells, task_difference, to_markdown

EXAMPLES = tuple(f"e{i}" for i in range(40))


def _cell(task: str, arm: str, seed: int, scores: tuple[float, ...], calls: int = 10) -> Cell:
    return Cell(task, arm, seed, f"{task}-{arm}-{seed}", EXAMPLES[: len(scores)], scores, calls, 100 * calls,
                0.01 * calls, 5.0)


def test_crossed_variance_by_hand() -> None:
    # rows 3/4, 1/4, 1, columns 2/3, 2/3, 1, 1/3, grand 2/3: MS_seed = 4 * 42/144 / 2 = 7/12,
    # MS_item = 3 * 2/9 / 3 = 2/9, MS_residual = (24/9 - 7/6 - 2/3) / 6 = 5/36;
    # se² = (7/12 + 2/9 - 5/36) / 12 = 1/18, Satterthwaite over the three pieces.
    found = crossed(np.array([[1, 1, 1, 0], [0, 0, 1, 0], [1, 1, 1, 1]]))
    assert found.mean == pytest.approx(2 / 3) and found.se == pytest.approx(np.sqrt(1 / 18))
    pieces = [(7 / 12 / 12, 2), (2 / 9 / 12, 3), (-5 / 36 / 12, 6)]
    assert found.df == pytest.approx((1 / 18) ** 2 / sum(v * v / df for v, df in pieces))
    # here MS_seed + MS_item - MS_residual (1/12 + 2/9 - 11/36 = 0) is below MS_item: MS_item alone
    found = crossed(np.array([[1, 0, 1, 1], [1, 1, 1, 0], [0, 0, 1, 1]]))
    assert found.se == pytest.approx(np.sqrt(2 / 9 / 12)) and found.df == 3


def test_seeds_that_share_their_items_do_not_narrow_the_items_share() -> None:
    """Three seeds with the same answers are one seed's worth of items, not three: the interval of
    the item resampling within each seed was √3 narrower."""
    row = np.array([1, 0, 1, 1, 0, 1, 0, 0, 1, 1], dtype=float)
    one, three = crossed(row[None, :]), crossed(np.tile(row, (3, 1)))
    assert three.se == pytest.approx(one.se) == pytest.approx(row.std(ddof=1) / np.sqrt(len(row)))


def test_pooled_tasks_and_the_t_interval() -> None:
    found = pooled([Estimate(0.2, 0.1, 10), Estimate(0.4, 0.2, 5)])
    assert found.mean == pytest.approx(0.3) and found.se == pytest.approx(np.sqrt(0.0125))
    assert found.df == pytest.approx(0.0125 ** 2 / (0.0025 ** 2 / 10 + 0.01 ** 2 / 5))
    low, high = found.interval()
    assert high - 0.3 == pytest.approx(t.ppf(0.975, found.df) * found.se)
    assert found.p == pytest.approx(2 * t.sf(0.3 / found.se, found.df))
    assert Estimate(0.0, 0.0, 0.0).interval() == (0.0, 0.0) and Estimate(0.0, 0.0, 0.0).p == 1.0


def test_holm_by_hand() -> None:
    # sorted 0.01, 0.03, 0.04, 0.5 times 4, 3, 2, 1: 0.04, 0.09, 0.08 -> 0.09 (kept monotone), 0.5
    assert holm([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])


def test_compare_cells_hand_computed() -> None:
    # task t1: a - b per example, seed 0: 0 1 1 0, seed 1: 0 0 1 1. Seed means equal (MS_seed 0),
    # columns 0, 1/2, 1, 1/2: MS_item = MS_residual = 1/3, so MS_item alone: se² = (1/3) / 8.
    cells = [
        _cell("t1", "a", 0, (1, 1, 1, 0)), _cell("t1", "a", 1, (1, 1, 1, 1)),
        _cell("t1", "b", 0, (1, 0, 0, 0)), _cell("t1", "b", 1, (1, 1, 0, 0)),
        _cell("t2", "a", 0, (1, 0, 1, 0)), _cell("t2", "b", 0, (1, 0, 1, 0)),  # identical answers
    ]
    result = compare_cells("s1", cells, failed=["c9"])
    scores = {(s.task, s.arm): s for s in result.scores}
    assert scores[("t1", "a")].mean == pytest.approx(0.875) and scores[("t1", "a")].seeds == 2
    assert scores[("t1", "b")].mean == pytest.approx(0.375) and scores[("t1", "b")].items == 4
    assert scores[("t2", "a")].ci[0] < 0.5 < scores[("t2", "a")].ci[1], "one seed: the test examples' spread alone"
    (pair,) = result.pairs
    se = np.sqrt(1 / 3 / 8)
    by_task = {d.task: d for d in pair.tasks}
    assert by_task["t1"].mean_diff == pytest.approx(0.5) and by_task["t1"].df == 1, "two seeds alone: 1 df"
    assert by_task["t1"].p == pytest.approx(2 * t.sf(0.5 / se, 1))
    assert by_task["t1"].p_holm == pytest.approx(2 * by_task["t1"].p), "Holm over the two tasks"
    assert by_task["t2"].p == 1.0 and by_task["t2"].ci == (0.0, 0.0)
    # pooled: equal weights; t2 has no spread, so the variance is t1's / 4 on t1's 3 df (Satterthwaite)
    assert (pair.a, pair.b, pair.cells) == ("a", "b", 3)
    assert pair.mean_diff == pytest.approx(0.25) and pair.df == 3
    assert pair.p == pytest.approx(2 * t.sf(0.25 / (se / 2), 3)) and pair.p_holm == pair.p
    assert (pair.wins, pair.ties, pair.losses) == (0, 2, 0)
    costs = {c.arm: c for c in result.costs}
    assert (costs["a"].campaigns, costs["a"].calls, costs["a"].tokens) == (3, 30, 3000)
    assert costs["a"].usd == pytest.approx(0.3) and costs["a"].wall_s == 15.0
    text = to_markdown(result)
    assert "| t1 | a | 2 | 4 | 87.5 |" in text and "| a | b | 3 | 25.0 |" in text and "0 / 2 / 0" in text
    assert "Method:" in text and "Holm" in text and "crossed" in text and "c9" in text
    assert json.loads(json.dumps(result.as_dict()))["pairs"][0]["tasks"][0]["verdict"] == "tie"


def test_a_large_consistent_difference_is_a_win_and_a_noisy_one_a_tie() -> None:
    strong = [_cell("t", "a", s, tuple(float(i % 10 != s) for i in range(40))) for s in range(3)] + \
             [_cell("t", "b", s, tuple(float(i % 10 == s) for i in range(40))) for s in range(3)]
    (pair,) = compare_cells("s", strong).pairs
    assert pair.mean_diff == pytest.approx(0.8) and (pair.wins, pair.ties, pair.losses) == (1, 0, 0)
    assert pair.tasks[0].verdict == "win" and pair.p_holm < 0.05
    noisy = [_cell("t", "a", s, (1, 0, 1, 0)) for s in range(3)] + \
            [_cell("t", "b", 0, (0, 1, 0, 1)), _cell("t", "b", 1, (1, 0, 0, 1)), _cell("t", "b", 2, (0, 0, 1, 0))]
    (pair,) = compare_cells("s", noisy).pairs
    assert pair.mean_diff > 0 and (pair.wins, pair.ties, pair.losses) == (0, 1, 0)


def test_items_an_arm_did_not_score_on_every_seed_are_left_out_of_its_table() -> None:
    cells = [Cell("t", "a", 0, "c0", ("e1", "e2", "e3"), (1.0, 0.0, 1.0)),
             Cell("t", "a", 1, "c1", ("e1", "e3"), (1.0, 1.0)),  # e2 errored on seed 1
             Cell("t", "b", 0, "c2", ("e1", "e2", "e3"), (0.0, 0.0, 0.0)),
             Cell("t", "b", 1, "c3", ("e1", "e2", "e3"), (0.0, 0.0, 1.0))]
    result = compare_cells("s", cells)
    assert {(s.arm, s.items) for s in result.scores} == {("a", 2), ("b", 3)}
    assert result.pairs[0].tasks[0].items == 2 and result.pairs[0].mean_diff == pytest.approx(0.75)
    assert task_difference(np.array([[1.0, 1.0], [1.0, 0.0]])).df == 1
