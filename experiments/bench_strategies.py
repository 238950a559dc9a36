"""Strategies head to head at an equal task-model query budget, on the bundled local model.

Random search, APE, OPRO, INSTINCT and the Optuna (MIPRO-like) search each run one campaign per
task with the same seed agent, the same validation and test items and the same hard budget of
task-model calls (search plus the final test scoring). Each strategy gets its own archive, so no
strategy is served answers another one paid for. Functional dedup is off, so every query is an
example evaluation the strategy asked for.

Printed: best test accuracy, the seed's, queries used, wall time. Saved: a markdown table and a PNG
of best-so-far validation score (mean over the whole validation split, counted when a candidate has
all of it) against task-model queries. The headline ratio: queries INSTINCT needed to reach APE's
final validation score, over APE's queries.

    .venv/bin/python experiments/bench_strategies.py [--tasks ...] [--budget 180] [--out DIR]
"""

import argparse
import time
from collections import defaultdict
from datetime import date
from pathlib import Path
from typing import Any

from rich.console import Console
from sqlalchemy import select

from agentopt.archive.models import Campaign, Candidate, Result
from agentopt.archive.store import Archive, database_url
from agentopt.optimizer.config import parse_config
from agentopt.optimizer.runner import run_campaigns
from agentopt.optimizer.ui import SilentReporter, markdown, table

TASKS = ["larger_animal", "singular_to_plural", "antonyms", "first_letter", "number_to_words"]
STRATEGY_ORDER = ["random", "ape", "opro", "instinct", "optuna"]
RATIO_HEADERS = ["task", "APE final val", "APE queries", "INSTINCT queries", "INSTINCT / APE", "random queries",
                 "random / APE"]


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
    }


def curve(archive: Archive, campaign_id: str, n_val: int) -> list[tuple[int, float]]:
    """(queries so far, best full-validation score so far), one point each time the best improves
    or a candidate completes the validation split."""
    with archive.session() as s:
        rows = s.execute(select(Result.candidate_id, Result.split, Result.example_id, Result.score, Result.error)
                         .join(Candidate, Candidate.id == Result.candidate_id)
                         .where(Candidate.campaign_id == campaign_id, Result.split.in_(("train", "val")))
                         .order_by(Result.id)).all()
    val: dict[int, dict[str, float | None]] = defaultdict(dict)
    best, points = None, []
    for queries, (candidate_id, split, example_id, score, error) in enumerate(rows, start=1):
        if split != "val":
            continue
        val[candidate_id][example_id] = None if error else score
        scores = val[candidate_id]
        if len(scores) == n_val and all(v is not None for v in scores.values()):
            mean = sum(v for v in scores.values() if v is not None) / n_val
            best = mean if best is None else max(best, mean)
            points.append((queries, best))
    return points


def queries_used(archive: Archive, campaign_id: str) -> int:
    with archive.session() as s:
        return len(s.execute(select(Result.id).join(Candidate, Candidate.id == Result.candidate_id)
                             .where(Candidate.campaign_id == campaign_id, Result.split.in_(("train", "val")))).all())


def first_reaching(points: list[tuple[int, float]], target: float) -> int | None:
    return next((q for q, best in points if best >= target - 1e-9), None)


def finished(db: Path, tasks: list[str]) -> dict[str, tuple[str, dict[str, Any]]]:
    """The newest finished campaign per task in ``db``, with its stored report."""
    if not db.exists():
        return {}
    archive = Archive(database_url(str(db)))
    with archive.session() as s:
        rows = s.execute(select(Campaign.task, Campaign.id, Campaign.summary).where(Campaign.status == "finished")
                         .order_by(Campaign.created_at)).all()
    return {task: (campaign_id, summary) for task, campaign_id, summary in rows if task in tasks}


def run_strategy(name: str, params: dict[str, Any], args: argparse.Namespace, db: Path) -> None:
    config = parse_config({
        "name": f"bench-{name}", "tasks": args.tasks, "seed": 0, "local_model": {"servers": 2},
        "models": {"task": {"model": "local", "max_tokens": 16},
                   "proposer": {"model": "local", "temperature": 0.9, "max_tokens": 48}},
        "strategy": {"name": name, "params": params},
        "evaluation": {"backend": "threads", "workers": 2, "concurrency": 2, "val_size": args.val,
                       "test_size": args.test},
        "dedup": {"functional": "off"},
        "budget": {"task": {"calls": args.budget + 2 * args.test}},
    })
    run_campaigns(config, Archive(database_url(str(db))), SilentReporter())


def plot(curves: dict[str, dict[str, list[tuple[int, float]]]], tasks: list[str], budget: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, grid = plt.subplots(1, len(tasks), figsize=(4 * len(tasks), 3.4), sharey=True, squeeze=False)
    axes = list(grid[0])
    for ax, task in zip(axes, tasks, strict=True):
        for name in STRATEGY_ORDER:
            points = curves.get(name, {}).get(task, [])
            if points:
                xs, ys = zip(*points, strict=True)
                ax.step([0, *xs, budget], [ys[0] * 0, *ys, ys[-1]], where="post", label=name)
        ax.set_title(task)
        ax.set_xlabel("task-model queries")
        ax.set_xlim(0, budget)
    axes[0].set_ylabel("best validation score so far")
    axes[-1].legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=TASKS)
    parser.add_argument("--strategies", nargs="+", default=STRATEGY_ORDER, choices=STRATEGY_ORDER)
    parser.add_argument("--budget", type=int, default=120, help="task-model queries for the search, per campaign")
    parser.add_argument("--val", type=int, default=10, help="validation examples")
    parser.add_argument("--test", type=int, default=20, help="test examples")
    parser.add_argument("--work", type=Path, default=Path("/tmp/agentopt-bench-strategies"),
                        help="where the per-strategy archives go")
    parser.add_argument("--subsamples", type=int, default=6, help="demonstration subsamples for the proposal pool")
    parser.add_argument("--reuse", action="store_true",
                        help="take a strategy's finished campaigns from its archive in --work instead of re-running it")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    console = Console()
    args.work.mkdir(parents=True, exist_ok=True)
    params = strategy_params(args.budget, args.val, args.subsamples)
    rows: list[list[str]] = []
    curves: dict[str, dict[str, list[tuple[int, float]]]] = defaultdict(dict)
    used: dict[tuple[str, str], int] = {}
    for name in args.strategies:
        db = args.work / f"{name}.db"
        if not (args.reuse and len(finished(db, args.tasks)) == len(args.tasks)):
            db.unlink(missing_ok=True)
            started = time.perf_counter()
            run_strategy(name, params[name], args, db)
            console.print(f"{name}: done in {time.perf_counter() - started:.0f} s")
        archive = Archive(database_url(str(db)))
        for task, (campaign_id, report) in finished(db, args.tasks).items():
            curves[name][task] = curve(archive, campaign_id, args.val)
            used[name, task] = queries_used(archive, campaign_id)
            final = curves[name][task][-1][1] if curves[name][task] else float("nan")
            stats = report["stats"]
            rows.append([task, name, f"{report['seed_test']['mean'] or 0:.2f}", f"{report['best_test']['mean'] or 0:.2f}",
                         f"{final:.2f}", str(used[name, task]), str(stats["task_llm_calls"]),
                         str(stats["proposer_llm_calls"]), f"{report['wall_s']:.0f}", report["stopped_by"] or ""])
    rows.sort(key=lambda r: (args.tasks.index(r[0]), STRATEGY_ORDER.index(r[1])))
    headers = ["task", "strategy", "seed test", "best test", "best val", "queries", "task calls", "proposer calls",
               "wall s", "stopped by"]
    console.print(table("Strategies at an equal task-model budget", headers, rows))
    ratios = []
    if {"ape", "instinct"} <= set(args.strategies):
        for task in args.tasks:
            ape_final = curves["ape"][task][-1][1] if curves["ape"].get(task) else None
            row = [task, f"{ape_final:.2f}" if ape_final is not None else "-", str(used["ape", task])]
            for name in ("instinct", "random"):
                reached = first_reaching(curves[name].get(task, []), ape_final) if ape_final is not None else None
                row += [str(reached) if reached is not None else "never",
                        f"{reached / used['ape', task]:.2f}" if reached is not None else "-"]
            ratios.append(row)
        console.print(table("Queries to reach APE's final validation score (random search as the control)",
                            RATIO_HEADERS, ratios))
    args.out.mkdir(parents=True, exist_ok=True)
    plot(curves, args.tasks, args.budget, args.out / "bench_strategies.png")
    lines = [f"# bench_strategies ({date.today().isoformat()}, 2-core machine, SmolLM2-135M-Instruct)", "",
             f"Command: `.venv/bin/python experiments/bench_strategies.py --budget {args.budget} --val {args.val} "
             f"--test {args.test} --subsamples {args.subsamples} --tasks {' '.join(args.tasks)} "
             f"--strategies {' '.join(args.strategies)}`", "", *markdown(headers, rows)]
    if ratios:
        lines += ["", "Queries to reach APE's final validation score (random search as the control):", "",
                  *markdown(RATIO_HEADERS, ratios)]
    (args.out / "bench_strategies.md").write_text("\n".join(lines) + "\n")
    console.print(f"wrote {args.out / 'bench_strategies.md'} and {args.out / 'bench_strategies.png'}")


if __name__ == "__main__":
    main()
