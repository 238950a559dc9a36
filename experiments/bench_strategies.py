"""Strategies head to head at an equal task-model query budget, on the bundled local model, over seeds.

Random search, APE, OPRO, INSTINCT and the Optuna (MIPRO-like) search each run one campaign per
task and seed (by default larger_animal, number_to_words and first_letter, the tasks its settings were
chosen on, with 57-80 test items; seeds 0, 1 and 2) with the same seed agent, the same validation and
test items and the same hard budget of task-model calls (search plus the final test scoring). Held-out
tasks are run apart, with ``--tasks``, ``--work``, ``--out`` and a ``--note`` saying so. Each strategy
is one sweep with its own archive, so no strategy is served answers another one paid for; the
campaigns of one seed see the same splits, so strategies are compared paired, by the statistics of
``agentopt archive compare --sweep``. Functional dedup is off, so every query is an example evaluation
the strategy asked for.

Printed and saved: the comparison (per task and strategy, mean test score over seeds with a t
interval on the crossed seeds × items variance; paired differences over all tasks and per task with
Holm-corrected p; significant wins; cost), one row per campaign, the queries INSTINCT and random
search needed to reach APE's final validation score, and a PNG of best-so-far validation score (mean
over seeds) against task-model queries. The JSON also keeps every campaign's per-example test scores
(``cells``), so the comparison can be recomputed without running anything:
``compare_cells(name, [Cell(**c) for c in json.load(f)["cells"]])``.

    .venv/bin/python experiments/bench_strategies.py [--tasks ...] [--seeds 0 1 2] [--budget 120] [--test 80]
"""

import argparse
import json
import shlex
import sys
import time
from collections import defaultdict
from dataclasses import replace
from datetime import date
from pathlib import Path
from statistics import mean
from typing import Any

from rich.console import Console

from agentopt.archive.queries import campaign_results
from agentopt.archive.store import Archive, database_url
from agentopt.archive.sweep_stats import Cell, compare_cells, plot as plot_comparison, to_markdown
from agentopt.optimizer.frontends.status import sweep_cells
from agentopt.optimizer.engine.sweep import run_sweep
from agentopt.optimizer.engine.sweep_config import parse_sweep
from agentopt.optimizer.engine.ui import RichReporter, markdown, table

TASKS = ["larger_animal", "number_to_words", "first_letter"]  # its settings were chosen on these
STRATEGY_ORDER = ["random", "ape", "opro", "instinct", "optuna", "reflective"]
HEADERS = ["task", "strategy", "seed", "seed test", "best test", "best val", "queries", "task calls", "proposer calls",
           "wall s", "stopped by"]
RATIO_HEADERS = ["task", "seeds", "APE final val (mean)", "APE queries (mean)", "INSTINCT / APE", "random / APE",
                 "INSTINCT never", "random never"]


def strategy_params(budget: int, n_val: int, subsamples: int) -> dict[str, dict[str, Any]]:
    """Each strategy's parameters, sized so its own plan spends about ``budget`` example evaluations.
    ``subsamples`` sets the proposal pool's size (two proposals per subsample, plus the seed with
    each subsample's demonstrations), which should exceed what the budget can score."""
    pool = {"n_subsamples": subsamples, "demos_per_subsample": 4, "samples_per_subsample": 2, "candidate_demos": 2}
    queries = budget // n_val
    top_k = 3
    return {
        "random": {**pool, "queries": queries, "batch": 2},
        "ape": {**pool, "batch_size": 4, "pulls_per_round": 4, "racing_budget": budget - top_k * n_val,
                "mc_rounds": 0, "top_k": top_k},
        "opro": {"steps": queries, "per_step": 4},
        "instinct": {**pool, "queries": queries, "n_init": max(2, queries // 3), "batch": 2, "paraphrase_top": 2,
                     "paraphrase_samples": 2},
        "optuna": {**pool, "n_trials": (budget - 8 - 4 * n_val) // 4, "batch": 2, "minibatch": 4,
                   "promote_every": 6, "demo_sets": 3, "demos_per_set": 2, "bootstrap_examples": 8},
        "reflective": {"minibatch": 4},  # iterations until the budget stops it
    }


def curve(archive: Archive, campaign_id: str, n_val: int) -> list[tuple[int, float]]:
    """(queries so far, best full-validation score so far), one point each time the best improves
    or a candidate completes the validation split."""
    val: dict[int, dict[str, float | None]] = defaultdict(dict)
    best, points = None, []
    for queries, r in enumerate(campaign_results(archive, campaign_id, ("train", "val")), start=1):
        if r.split != "val":
            continue
        val[r.candidate_id][r.example_id] = None if r.error else r.score
        scores = val[r.candidate_id]
        if len(scores) == n_val and all(v is not None for v in scores.values()):
            mean = sum(v for v in scores.values() if v is not None) / n_val
            best = mean if best is None else max(best, mean)
            points.append((queries, best))
    return points


def queries_used(archive: Archive, campaign_id: str) -> int:
    return len(campaign_results(archive, campaign_id, ("train", "val")))


def first_reaching(points: list[tuple[int, float]], target: float) -> int | None:
    return next((q for q, best in points if best >= target - 1e-9), None)


def sweep_data(name: str, params: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    return {
        "name": f"bench-{name}", "tasks": args.task_refs, "local_model": {"servers": 2},
        "models": {"task": {"model": "local", "max_tokens": 16},
                   "proposer": {"model": "local", "temperature": 0.9, "max_tokens": 48}},
        "evaluation": {"backend": "threads", "workers": 2, "concurrency": 2, "val_size": args.val,
                       "test_size": args.test},
        "dedup": {"functional": "off"},
        "budget": {"task": {"calls": args.budget + 2 * args.test}},
        "matrix": {"strategies": [{"name": name, "params": params}], "seeds": args.seeds},
        "sweep": {"concurrency": 2},
    }


def run_arm(name: str, params: dict[str, Any], args: argparse.Namespace, console: Console) -> tuple[Archive, str]:
    """The strategy's finished sweep: taken from its archive with ``--reuse`` when it is there and
    has the same plan, otherwise run (resumed if a run of the same plan was cut short)."""
    db = args.work / f"{name}.db"
    plan = parse_sweep(sweep_data(name, params, args), f"bench {name}")
    if not args.reuse:  # afresh: an old archive's cache would answer the same requests again for free
        for path in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
            path.unlink(missing_ok=True)
    archive = Archive(database_url(str(db)))
    same = [row for row in archive.sweeps() if row.config.get("source") == plan.source]  # newest first
    if same and args.reuse and same[0].status == "finished":
        return archive, same[0].id
    started = time.perf_counter()
    result = run_sweep(plan, archive, RichReporter(console), sweep_id=same[0].id if same else "")
    console.print(f"{name}: sweep {result.sweep_id} {result.status} in {time.perf_counter() - started:.0f} s")
    return archive, result.sweep_id


def mean_curve(points: list[list[tuple[int, float]]], budget: int) -> tuple[list[int], list[float]]:
    """Best-so-far validation score averaged over seeds at every query count (0 before a seed's first point)."""
    xs = list(range(budget + 1))
    ys = [mean(max((best for q, best in p if q <= x), default=0.0) for p in points) for x in xs]
    return xs, ys


def reach_ratios(curves: dict[tuple[str, str, int], list[tuple[int, float]]], used: dict[tuple[str, str, int], int],
                 task: str, seeds: list[int]) -> list[str]:
    """Per task, over seeds: queries INSTINCT and random search needed to reach APE's final
    validation score of the same seed, over APE's queries (mean of the seeds where they reached it)."""
    finals, ratios, never = [], defaultdict(list), defaultdict(int)
    for seed in seeds:
        ape = curves.get(("ape", task, seed))
        if not ape:
            continue
        finals.append(ape[-1][1])
        for name in ("instinct", "random"):
            reached = first_reaching(curves.get((name, task, seed), []), ape[-1][1])
            if reached is None:
                never[name] += 1
            else:
                ratios[name].append(reached / used["ape", task, seed])
    if not finals:
        return [task, "0", "-", "-", "-", "-", "-", "-"]
    return [task, str(len(finals)), f"{mean(finals):.2f}",
            f"{mean(used['ape', task, s] for s in seeds if ('ape', task, s) in used):.0f}",
            *(f"{mean(ratios[n]):.2f}" if ratios[n] else "-" for n in ("instinct", "random")),
            *(str(never[n]) for n in ("instinct", "random"))]


def plot(curves: dict[tuple[str, str, int], list[tuple[int, float]]], tasks: list[str], seeds: list[int],
         budget: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    limit = max([budget, *(q for points in curves.values() for q, _ in points)])  # a few campaigns ran past it
    fig, grid = plt.subplots(1, len(tasks), figsize=(4 * len(tasks), 3.4), sharey=True, squeeze=False)
    axes = list(grid[0])
    for ax, task in zip(axes, tasks, strict=True):
        for name in STRATEGY_ORDER:
            points = [curves[name, task, seed] for seed in seeds if curves.get((name, task, seed))]
            if points:
                ax.step(*mean_curve(points, limit), where="post", label=name)
        ax.axvline(budget, color="grey", linestyle=":", linewidth=1)
        ax.set_title(task)
        ax.set_xlabel("task-model queries")
        ax.set_xlim(0, limit)
    axes[0].set_ylabel(f"best validation score so far\n(mean of {len(seeds)} seeds)")
    axes[-1].legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def task_refs(refs: list[str]) -> list[str | dict[str, Any]]:
    """``--tasks`` as a config lists them: names and paths as given, a NAME.task.json file read as its entry
    (a task kept aside is frozen as such a file before any run)."""
    return [json.loads(Path(ref).read_text()) if ref.endswith(".task.json") else ref for ref in refs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=TASKS,
                        help="built-in task names, .jsonl paths, or task entries written as NAME.task.json files")
    parser.add_argument("--strategies", nargs="+", default=STRATEGY_ORDER, choices=STRATEGY_ORDER)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="search seeds, one campaign each")
    parser.add_argument("--budget", type=int, default=120, help="task-model queries for the search, per campaign")
    parser.add_argument("--val", type=int, default=10, help="validation examples")
    parser.add_argument("--test", type=int, default=80, help="test examples (fewer where a task has fewer)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/agentopt-bench-strategies"),
                        help="where the per-strategy archives go")
    parser.add_argument("--subsamples", type=int, default=6, help="demonstration subsamples for the proposal pool")
    parser.add_argument("--reuse", action="store_true",
                        help="take a strategy's finished sweep of the same plan from its archive in --work "
                             "(and resume an unfinished one) instead of running it afresh")
    parser.add_argument("--note", default="", help="a paragraph under the title, e.g. which tasks are held out")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    try:
        args.task_refs = task_refs(args.tasks)
    except (OSError, ValueError) as exc:
        parser.error(f"cannot read a task entry: {exc}")
    args.tasks = [ref["name"] if isinstance(ref, dict) else ref for ref in args.task_refs]
    console = Console()
    args.work.mkdir(parents=True, exist_ok=True)
    params = strategy_params(args.budget, args.val, args.subsamples)
    rows: list[list[str]] = []
    cells: list[Cell] = []
    left_out: list[str] = []
    curves: dict[tuple[str, str, int], list[tuple[int, float]]] = {}
    used: dict[tuple[str, str, int], int] = {}
    for name in args.strategies:
        archive, sweep_id = run_arm(name, params[name], args, console)
        mine, missing = sweep_cells(archive, sweep_id)
        left_out += missing
        for cell in mine:
            cell = replace(cell, arm=name)  # the strategy's name, not its parameters
            cells.append(cell)
            key = (name, cell.task, cell.seed)
            curves[key] = curve(archive, cell.campaign_id, args.val)
            used[key] = queries_used(archive, cell.campaign_id)
            report = archive.campaign(cell.campaign_id).summary
            stats = report["stats"]
            final = curves[key][-1][1] if curves[key] else float("nan")
            rows.append([cell.task, name, str(cell.seed), f"{report['seed_test']['mean'] or 0:.2f}",
                         f"{report['best_test']['mean'] or 0:.2f}", f"{final:.2f}", str(used[key]),
                         str(stats["task_llm_calls"]), str(stats["proposer_llm_calls"]), f"{report['wall_s']:.0f}",
                         report["stopped_by"] or ""])
    rows.sort(key=lambda r: (args.tasks.index(r[0]), STRATEGY_ORDER.index(r[1]), int(r[2])))
    comparison = compare_cells("bench_strategies", cells, left_out)
    compared = to_markdown(comparison).split("\n", 1)[1].strip()
    console.print(compared)
    console.print(table("Campaigns at an equal task-model budget", HEADERS, rows))
    ratios = [reach_ratios(curves, used, task, args.seeds) for task in args.tasks] \
        if {"ape", "instinct", "random"} <= set(args.strategies) else []
    if ratios:
        console.print(table("Queries to reach APE's final validation score (random search as the control)",
                            RATIO_HEADERS, ratios))
    args.out.mkdir(parents=True, exist_ok=True)
    plot(curves, args.tasks, args.seeds, args.budget, args.out / "bench_strategies.png")
    plot_comparison(comparison, args.out / "bench_strategies_scores.png")
    stored = {**comparison.as_dict(), "cells": [cell.as_dict() for cell in cells]}  # to recompute from
    (args.out / "bench_strategies.json").write_text(json.dumps(stored, indent=2) + "\n")
    lines = [f"# bench_strategies ({date.today().isoformat()}, 2-core machine, SmolLM2-135M-Instruct)", "",
             *([args.note, ""] if args.note else []),
             f"Command: `.venv/bin/python experiments/bench_strategies.py {shlex.join(sys.argv[1:])}`", "",
             "Each strategy ran as one sweep (2 campaigns at once, so a campaign's wall time is shared) in its own "
             "archive. Test scores are the winner's mean over the test items, errors left out.", "",
             compared, "", "## Campaigns", "", *markdown(HEADERS, rows)]
    if ratios:
        lines += ["", "## Queries to reach APE's final validation score (random search as the control)", "",
                  "Per seed: the queries a strategy needed until its best validation score reached APE's final one, "
                  "over APE's queries; the mean over the seeds that reached it, and how many never did.", "",
                  *markdown(RATIO_HEADERS, ratios)]
    (args.out / "bench_strategies.md").write_text("\n".join(lines) + "\n")
    console.print(f"wrote {args.out / 'bench_strategies.md'}, .json, .png and _scores.png")


if __name__ == "__main__":
    main()
