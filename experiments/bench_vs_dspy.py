"""agentopt against DSPy's MIPROv2 and GEPA: the same model, tasks, splits, seeds and task-model budget.

Every system optimises the same seed instruction ("Answer the following.") for the bundled
SmolLM2-135M-Instruct, which is the task model and the proposer for all of them. Each system gets the
same train / validation / test examples (by default bench_strategies' three tasks, all of their
test items up to 80), the same search seeds (0, 1, 2) and the same hard cap on task-model
calls for its search. The final test scoring is counted apart, and every answer is scored by the same
metric after the same answer clean-up; an error scores 0 for every system.

agentopt's runs are bench_strategies' sweeps of the strategies in ``--agentopt-strategies`` (APE by
default; the same plan: budget, splits, seeds), taken from their archives when it is there (``--agentopt-work``) and run otherwise. DSPy runs in its own virtualenv
(``--venv``, created on first use from the pinned ``bench_vs_dspy.requirements.txt``) through
``dspy_runner.py``, one run per (optimizer, task, seed), two at a time against two llama.cpp servers on
loopback (agentopt's sweep also runs two campaigns at once on two servers);
a finished run's output is kept in ``--work`` and taken again with ``--reuse``, so an interrupted
benchmark continues where it stopped. The systems are compared paired (same seed, same test
examples) with the statistics of ``agentopt archive compare --sweep``; the JSON keeps every run's
per-example test scores (``cells``) to recompute them from.

    .venv/bin/python experiments/bench_vs_dspy.py [--tasks ...] [--seeds 0 1 2] [--budget 120] [--test 80] [--reuse]

Prints the comparison and one row per run and writes ``results/bench_vs_dspy.md`` (and ``.json``).
Not part of the test suite: about five minutes per DSPy run on 2 cores.
"""

import argparse
import json
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import date
from importlib.metadata import version
from pathlib import Path
from typing import Any

from rich.console import Console

import bench_strategies
import fields_tasks
from agentopt.agents.runtime.errors import AgentoptError
from agentopt.agents.models.local_model import LOCAL_MODEL_NAME, LocalModelServers
from agentopt.agents.runtime.prompt_runtime import input_text
from agentopt.archive.queries import campaign_results
from agentopt.archive.sweep_stats import Cell, compare_cells, to_markdown
from agentopt.optimizer.frontends.status import sweep_cells
from agentopt.optimizer.tasks import Task, load_task
from agentopt.optimizer.engine.ui import markdown, table

HERE = Path(__file__).parent
TASKS = bench_strategies.TASKS
DSPY_SYSTEMS = ["miprov2", "gepa"]
SYSTEMS = ["agentopt", *DSPY_SYSTEMS]
NAMES = {"ape": "APE"}  # how a strategy is named in the tables: agentopt (APE), agentopt (reflective)


def agentopt_arm(strategy: str) -> str:
    return f"agentopt ({NAMES.get(strategy, strategy)})"
SEED_INSTRUCTION = "Answer the following."
TASK_MAX_TOKENS, PROPOSER_TEMPERATURE = 16, 0.9
PROPOSER_MAX_TOKENS = 256  # DSPy's proposer prompts want field markers and, for MIPROv2, a dataset summary
# first: capping them at APE's 48 would truncate most replies
HEADERS = ["task", "system", "seed", "test", "task calls (search)", "task calls (test)", "proposer calls",
           "tokens", "wall s", "demos", "format fallbacks", "evaluated on test"]


def ensure_venv(venv: Path, console: Console) -> Path:
    """The DSPy virtualenv's interpreter, created and filled from the pinned requirements if missing."""
    python = venv / "bin" / "python"
    marker = venv / ".installed"
    requirements = HERE / "bench_vs_dspy.requirements.txt"
    if not marker.exists() or marker.read_text() != requirements.read_text():
        console.print(f"installing DSPy into {venv} (pinned in {requirements.name}) ...")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r",
                        str(requirements)], check=True)
        marker.write_text(requirements.read_text())
    return python


def dspy_metric(task: Task) -> dict[str, Any]:
    """The task's metric as ``dspy_runner`` names it: a built-in by name, ``fields_tasks``' by its vocabulary."""
    if task.metric_name in fields_tasks.VOCABULARY:
        return {"metric": "first_named", "vocabulary": fields_tasks.VOCABULARY[task.metric_name]}
    return {"metric": task.metric_name}


def split_rows(examples: tuple[Any, ...]) -> list[dict[str, str]]:
    """DSPy's program has one input field: several fields are written as agentopt's prompt agent writes them."""
    return [{"input": input_text(e.input), "target": e.target} for e in examples]


def run_dspy(python: Path, system: str, task: Task, seed: int, args: argparse.Namespace,
             base_urls: list[str]) -> dict[str, Any]:
    """One DSPy run's output. With ``--reuse``, a run that finished before with the same spec (the
    servers' ports aside) is taken from ``--work``; a failed one runs again."""
    name = f"{system}-{task.name}-seed{seed}"
    spec_path, out_path = args.work / f"{name}.spec.json", args.work / f"{name}.out.json"
    spec = {"optimizer": system, "base_urls": base_urls, "model": LOCAL_MODEL_NAME,
            "task": {"name": task.name, "description": task.description, "instruction": SEED_INSTRUCTION,
                     **dspy_metric(task), "train": split_rows(task.train), "val": split_rows(task.val[:args.val]),
                     "test": split_rows(task.test[:args.test])},
            "task_budget": args.budget, "task_max_tokens": TASK_MAX_TOKENS, "proposer_max_tokens": PROPOSER_MAX_TOKENS,
            "proposer_temperature": PROPOSER_TEMPERATURE, "seed": seed, "threads": 2,
            "cache_dir": str(args.work / "dspy-cache" / name)}
    if args.reuse and out_path.exists() and spec_path.exists():
        before, done = json.loads(spec_path.read_text()), json.loads(out_path.read_text())
        if {**before, "base_urls": base_urls} == spec and done.get("test_scores"):
            return dict(done)
    spec_path.write_text(json.dumps(spec))
    out_path.unlink(missing_ok=True)
    try:
        done = subprocess.run([str(python), str(HERE / "dspy_runner.py"), str(spec_path), str(out_path)],
                              capture_output=True, text=True, timeout=4 * 3600)
    except (OSError, subprocess.SubprocessError) as exc:
        return {"notes": f"runner did not finish: {type(exc).__name__}: {exc}"}
    (args.work / f"{name}.log").write_text(done.stdout + done.stderr)
    if not out_path.exists():
        return {"notes": f"runner failed (exit {done.returncode}): {(done.stderr.strip().splitlines() or [''])[-1]}"}
    return dict(json.loads(out_path.read_text()))


def dspy_cell(system: str, task: Task, seed: int, result: dict[str, Any], n_test: int) -> Cell | None:
    """A DSPy run as a comparison cell; ``None`` when its runner failed (no per-example scores)."""
    scores = result.get("test_scores")
    if not scores:
        return None
    ids = tuple(e.id for e in task.test[:n_test])
    return Cell(task.name, system, seed, f"dspy:{system}:{task.name}:{seed}", ids, tuple(float(x) for x in scores),
                int(result.get("task_calls", 0) + result.get("test_calls", 0) + result.get("proposer_calls", 0)),
                int(result.get("prompt_tokens", 0) + result.get("completion_tokens", 0)), 0.0,
                float(result.get("wall_s", 0.0)))


def agentopt_cells(args: argparse.Namespace, tasks: dict[str, Task], console: Console,
                   strategy: str) -> tuple[list[tuple[Cell, dict[str, Any], tuple[int, int]]], list[str]]:
    """bench_strategies' sweep of ``strategy`` for this plan: each finished campaign as a cell (an example it
    answered with an error scores 0, as in DSPy's runs), its stored report, and the task-model
    queries it made in its search and on test; and the campaigns left out. A cell's calls count
    every query and proposal, answered by the server or by the archive's cache (DSPy's is off)."""
    plan = argparse.Namespace(task_refs=args.task_refs, seeds=args.seeds, budget=args.budget, val=args.val, test=args.test,
                              subsamples=6, work=args.agentopt_work, reuse=True)
    plan.work.mkdir(parents=True, exist_ok=True)
    params = bench_strategies.strategy_params(args.budget, args.val, plan.subsamples)[strategy]
    archive, sweep_id = bench_strategies.run_arm(strategy, params, plan, console)
    found, left_out = sweep_cells(archive, sweep_id)
    runs = []
    for cell in found:
        scored = dict(zip(cell.examples, cell.scores, strict=True))
        ids = tuple(e.id for e in tasks[cell.task].test[:args.test])
        tested = len(campaign_results(archive, cell.campaign_id, ("test",)))
        report = archive.campaign(cell.campaign_id).summary
        queries = (bench_strategies.queries_used(archive, cell.campaign_id), tested)
        proposals = report["stats"]["proposer_llm_calls"] + report["stats"]["proposer_cache_hits"]
        runs.append((replace(cell, arm=agentopt_arm(strategy), examples=ids, scores=tuple(scored.get(i, 0.0) for i in ids),
                             calls=sum(queries) + proposals), report, queries))
    return runs, [f"{agentopt_arm(strategy)} {item}" for item in left_out]


def agentopt_row(cell: Cell, report: dict[str, Any], queries: tuple[int, int]) -> list[str]:
    stats = report["stats"]
    demos = len((report.get("best_agent") or {}).get("demos", []))
    return [cell.task, cell.arm, str(cell.seed), f"{cell.mean:.2f}", str(queries[0]), str(queries[1]),
            str(stats["proposer_llm_calls"] + stats["proposer_cache_hits"]),
            str(stats["task_tokens"] + stats["proposer_tokens"]), f"{report['wall_s']:.0f}", str(demos), "n/a",
            f"{cell.arm.removeprefix('agentopt (').rstrip(')')}'s best (stopped by {report.get('stopped_by') or 'its plan'})"]


def errors_as_wrong(summary: dict[str, Any]) -> float:
    """A stored test summary's mean with errors counted as wrong, as DSPy's runs count them."""
    total = summary["n"] + summary["n_errors"]
    return (summary["mean"] or 0.0) * summary["n"] / total if total else 0.0


def dspy_row(task: str, system: str, seed: int | str, result: dict[str, Any]) -> list[str]:
    def num(key: str, fmt: str = "{:.0f}") -> str:
        return fmt.format(result[key]) if result.get(key) is not None else "-"

    tokens = (result.get("prompt_tokens") or 0) + (result.get("completion_tokens") or 0)
    how = result.get("notes", "").rsplit("evaluated on test: ", 1)[-1].split("|")[0].strip()
    return [task, system, str(seed), num("test_accuracy", "{:.2f}"), num("task_calls"), num("test_calls"),
            num("proposer_calls"), str(tokens), num("wall_s"), num("n_demos"), str(result.get("parse_failures", "-")),
            how[:80]]


def prompts(found: dict[tuple[str, str, int], dict[str, Any]]) -> list[str]:
    """What each run ended with, clipped: the table's numbers are about these prompts."""
    lines = []
    for (task, system, seed), result in found.items():
        instruction = " ".join(str(result.get("final_instruction", result.get("instruction", ""))).split())
        clipped = instruction if len(instruction) <= 160 else instruction[:157] + "..."
        demos = result.get("n_demos", len(result.get("demos", [])))
        lines.append(f"- {task} / {system} / seed {seed} ({demos} demos): `{clipped}`")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=TASKS,
                        help="built-in task names, .jsonl paths, or task entries written as NAME.task.json files")
    parser.add_argument("--systems", nargs="+", default=SYSTEMS, choices=SYSTEMS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="search seeds, one run each")
    parser.add_argument("--budget", type=int, default=120, help="task-model calls for each system's search")
    parser.add_argument("--val", type=int, default=10, help="validation examples")
    parser.add_argument("--test", type=int, default=80, help="test examples (fewer where a task has fewer)")
    parser.add_argument("--venv", type=Path, default=HERE.parent / ".venv-bench", help="DSPy's own virtualenv")
    parser.add_argument("--work", type=Path, default=Path("/tmp/agentopt-bench-vs-dspy"),
                        help="DSPy specs, outputs and logs")
    parser.add_argument("--agentopt-work", type=Path, default=Path("/tmp/agentopt-bench-strategies"),
                        help="bench_strategies' archives, where agentopt's sweeps are taken from (or run)")
    parser.add_argument("--agentopt-strategies", nargs="+", default=["ape"],
                        choices=bench_strategies.STRATEGY_ORDER, help="agentopt's arms: bench_strategies' sweeps")
    parser.add_argument("--reuse", action="store_true", help="take DSPy runs that finished before from --work")
    parser.add_argument("--concurrency", type=int, default=2,
                        help="DSPy runs at once (agentopt's sweep runs 2 campaigns at once on the same 2 servers)")
    parser.add_argument("--note", default="", help="a paragraph under the title, e.g. which tasks are held out")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    try:
        args.task_refs = bench_strategies.task_refs(args.tasks)
        tasks = {task.name: task for task in (load_task(ref, seed=0) for ref in args.task_refs)}
    except (AgentoptError, OSError, ValueError) as exc:
        parser.error(f"cannot read a task: {exc}")
    args.tasks = list(tasks)
    console = Console()
    args.work.mkdir(parents=True, exist_ok=True)
    cells: list[Cell] = []
    rows: list[list[str]] = []
    found: dict[tuple[str, str, int], dict[str, Any]] = {}
    seed_scores: dict[str, dict[str, float]] = {name: {} for name in args.tasks}
    left_out: list[str] = []
    for strategy in args.agentopt_strategies if "agentopt" in args.systems else []:
        runs, missing = agentopt_cells(args, tasks, console, strategy)
        left_out += missing
        for cell, report, queries in runs:
            cells.append(cell)
            rows.append(agentopt_row(cell, report, queries))
            found[cell.task, cell.arm, cell.seed] = report.get("best_agent") or {}
            seed_scores[cell.task][cell.arm] = errors_as_wrong(report["seed_test"])
    systems = [s for s in args.systems if s in DSPY_SYSTEMS]
    python = ensure_venv(args.venv, console) if systems else None
    if python is not None:
        with LocalModelServers(n_servers=2) as servers, ThreadPoolExecutor(args.concurrency) as pool:
            base_urls = [endpoint.base_url for endpoint in servers.endpoints]
            for name, task in tasks.items():  # the seed program answers greedily: once per task
                seed_run = run_dspy(python, "seed", task, 0, args, base_urls)
                seed_scores[name]["DSPy"] = seed_run.get("test_accuracy") or 0.0
                rows.append(dspy_row(name, "DSPy seed program", "-", seed_run))
            # seed by seed, so an interrupted benchmark leaves whole seeds behind
            jobs = [(seed, name, system) for seed in args.seeds for name in tasks for system in systems]
            futures = {job: pool.submit(run_dspy, python, job[2], tasks[job[1]], job[0], args, base_urls)
                       for job in jobs}
            for (seed, name, system), future in futures.items():
                result = future.result()
                console.print(f"{name} / {system} / seed {seed}: test {result.get('test_accuracy')} "
                              f"in {result.get('wall_s', 0):.0f} s")
                rows.append(dspy_row(name, system, seed, result))
                found[name, system, seed] = result
                cell = dspy_cell(system, tasks[name], seed, result, args.test)
                if cell is None:
                    left_out.append(f"{system} / {name} / seed {seed} ({result.get('notes', 'no test scores')[:120]})")
                else:
                    cells.append(cell)
    comparison = compare_cells("bench_vs_dspy", cells, left_out)
    compared = to_markdown(comparison).split("\n", 1)[1].strip()
    console.print(compared)
    console.print(table("agentopt vs DSPy at an equal task-model budget", HEADERS, rows))
    args.out.mkdir(parents=True, exist_ok=True)
    versions = [f"agentopt {version('agentopt')}", f"llama-cpp-python {version('llama_cpp_python')}"]
    if python is not None:
        versions.append(subprocess.run([str(python), "-c", "import dspy, importlib.metadata as m; "
                                        "print(f'dspy {dspy.__version__}, litellm {m.version(\"litellm\")}, "
                                        "gepa {m.version(\"gepa\")}')"], capture_output=True, text=True).stdout.strip())
    seeds_line = "; ".join(f"{name}: " + ", ".join(f"{who} {score:.2f}" for who, score in scores.items())
                           for name, scores in seed_scores.items())
    stored = {**comparison.as_dict(), "cells": [cell.as_dict() for cell in cells]}  # to recompute from
    (args.out / "bench_vs_dspy.json").write_text(json.dumps(stored, indent=2) + "\n")
    lines = [f"# bench_vs_dspy ({date.today().isoformat()}, 2-core machine, {LOCAL_MODEL_NAME})", "",
             f"Versions: {', '.join(versions)}.", "",
             *([args.note, ""] if args.note else []),
             f"Command: `.venv/bin/python experiments/bench_vs_dspy.py {shlex.join(sys.argv[1:])}`", "",
             f"Seed prompt's test score (the same instruction, each system's own prompt format): {seeds_line}.", "",
             compared, "", "## Runs", "", *markdown(HEADERS, rows), "",
             "Final instructions (DSPy's full outputs, call breakdowns and logs are in the --work folder):", "",
             *prompts(found)]
    (args.out / "bench_vs_dspy.md").write_text("\n".join(lines) + "\n")
    console.print(f"wrote {args.out / 'bench_vs_dspy.md'} and .json")


if __name__ == "__main__":
    main()
