"""agentopt against DSPy's MIPROv2 and GEPA: the same model, tasks, splits and task-model budget.

Every system optimises the same seed instruction ("Answer the following.") for the bundled
SmolLM2-135M-Instruct, which is the task model and the proposer for all of them. All requests go to
one llama.cpp server on loopback, so no system gets more compute than another. Each system gets the
same train / validation / test examples and the same hard cap on task-model calls for its search.
The final test scoring is counted apart, and every answer is scored by the same metric after the
same answer clean-up.

DSPy runs in its own virtualenv (``--venv``, created on first use from the pinned
``bench_vs_dspy.requirements.txt``) through ``dspy_runner.py``. agentopt runs in-process with its
best strategy from ``bench_strategies`` (APE).

    .venv/bin/python experiments/bench_vs_dspy.py [--tasks ...] [--budget 120] [--val 10] [--test 20]

Prints one table and writes ``results/bench_vs_dspy.md``. Not part of the test suite: about an hour
on 2 cores.
"""

import argparse
import json
import subprocess
import sys
import time
from datetime import date
from importlib.metadata import version
from pathlib import Path
from typing import Any

from rich.console import Console
from sqlalchemy import func, select

from agentopt.agents.local_model import LOCAL_MODEL_NAME, LocalModelServers
from agentopt.archive.models import Candidate, Result
from agentopt.archive.store import Archive, EvalSummary, database_url
from agentopt.optimizer.config import parse_config
from agentopt.optimizer.runner import run_campaigns
from agentopt.optimizer.tasks import load_task
from agentopt.optimizer.ui import SilentReporter, markdown, table

HERE = Path(__file__).parent
TASKS = ["larger_animal", "singular_to_plural", "antonyms", "first_letter", "number_to_words"]
SYSTEMS = ["agentopt", "miprov2", "gepa"]
SEED_INSTRUCTION = "Answer the following."
TASK_MAX_TOKENS, PROPOSER_TEMPERATURE = 16, 0.9
PROPOSER_MAX_TOKENS = {"agentopt": 48, "dspy": 256}  # APE asks for a bare instruction; DSPy's proposer prompts
# want field markers and, for MIPROv2, a dataset summary first: capping them at 48 would truncate most replies
HEADERS = ["task", "system", "seed test", "test", "task calls (search)", "task calls (test)", "proposer calls",
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


def split_rows(examples: tuple[Any, ...]) -> list[dict[str, str]]:
    return [{"input": e.input, "target": e.target} for e in examples]


def run_dspy(python: Path, system: str, task_name: str, args: argparse.Namespace, base_url: str) -> dict[str, Any]:
    task = load_task(task_name, seed=0)
    spec = {"optimizer": system, "base_url": base_url, "model": LOCAL_MODEL_NAME,
            "task": {"name": task.name, "description": task.description, "instruction": SEED_INSTRUCTION,
                     "metric": task.metric_name, "train": split_rows(task.train), "val": split_rows(task.val[:args.val]),
                     "test": split_rows(task.test[:args.test])},
            "task_budget": args.budget, "task_max_tokens": TASK_MAX_TOKENS, "proposer_max_tokens": PROPOSER_MAX_TOKENS["dspy"],
            "proposer_temperature": PROPOSER_TEMPERATURE, "seed": 0, "threads": 2,
            "cache_dir": str(args.work / "dspy-cache" / f"{system}-{task_name}")}
    spec_path, out_path = args.work / f"{system}-{task_name}.spec.json", args.work / f"{system}-{task_name}.out.json"
    spec_path.write_text(json.dumps(spec))
    out_path.unlink(missing_ok=True)
    done = subprocess.run([str(python), str(HERE / "dspy_runner.py"), str(spec_path), str(out_path)],
                          capture_output=True, text=True, timeout=4 * 3600)
    (args.work / f"{system}-{task_name}.log").write_text(done.stdout + done.stderr)
    if not out_path.exists():
        return {"notes": f"runner failed (exit {done.returncode}): {(done.stderr.strip().splitlines() or [''])[-1]}"}
    return json.loads(out_path.read_text())


def accuracy(summary: EvalSummary) -> float:
    """Mean score with errors counted as wrong, as the DSPy runner counts them (agentopt's own mean leaves
    errors out, since they say nothing about the agent)."""
    total = summary.n + summary.n_errors
    return (summary.mean or 0.0) * summary.n / total if total else 0.0


def run_agentopt(task_name: str, args: argparse.Namespace, base_url: str) -> dict[str, Any]:
    """APE with bench_strategies' parameters, its search capped at the same task-model budget."""
    db = args.work / f"agentopt-{task_name}.db"
    db.unlink(missing_ok=True)
    top_k = 3
    role = {"model": LOCAL_MODEL_NAME, "base_url": base_url}
    config = parse_config({
        "name": f"vs-dspy-{task_name}", "tasks": [task_name], "seed": 0,
        "seed_agent": {"instruction": SEED_INSTRUCTION},
        "models": {"task": {**role, "max_tokens": TASK_MAX_TOKENS},
                   "proposer": {**role, "temperature": PROPOSER_TEMPERATURE, "max_tokens": PROPOSER_MAX_TOKENS["agentopt"]}},
        "strategy": {"name": "ape", "params": {
            "n_subsamples": 6, "demos_per_subsample": 4, "samples_per_subsample": 2, "candidate_demos": 2,
            "batch_size": 4, "pulls_per_round": 4, "racing_budget": args.budget - top_k * args.val, "mc_rounds": 0,
            "top_k": top_k}},
        "evaluation": {"backend": "threads", "workers": 2, "concurrency": 2, "val_size": args.val,
                       "test_size": args.test},
        "dedup": {"functional": "off"},
        "budget": {"task": {"calls": args.budget + 2 * args.test}},
    })
    started = time.perf_counter()
    archive = Archive(database_url(str(db)))
    [report] = run_campaigns(config, archive, SilentReporter())
    stats = report.stats
    with archive.session() as s:
        test_calls = s.scalar(select(func.coalesce(func.sum(Result.llm_calls), 0))
                              .join(Candidate, Candidate.id == Result.candidate_id)
                              .where(Candidate.campaign_id == report.campaign_id, Result.split == "test"))
    return {"seed_test_accuracy": accuracy(report.seed_test), "test_accuracy": accuracy(report.best_test),
            "task_calls": stats["task_llm_calls"] - test_calls, "test_calls": test_calls,
            "proposer_calls": stats["proposer_llm_calls"], "tokens": stats["task_tokens"] + stats["proposer_tokens"],
            "wall_s": time.perf_counter() - started, "n_demos": len(report.best_agent.get("demos", [])),
            "final_instruction": report.best_agent.get("instruction", ""),
            "notes": f"evaluated on test: APE's best (stopped by {report.stopped_by or 'its plan'})"}


def row(task: str, system: str, seed: float | None, result: dict[str, Any]) -> list[str]:
    def num(key: str, fmt: str = "{:.0f}") -> str:
        return fmt.format(result[key]) if result.get(key) is not None else "-"

    tokens = result.get("tokens", (result.get("prompt_tokens") or 0) + (result.get("completion_tokens") or 0))
    how = result.get("notes", "").rsplit("evaluated on test: ", 1)[-1].split("|")[0].strip()
    fallbacks = f"{result['parse_failures']}" if "parse_failures" in result else "n/a"
    return [task, system, f"{seed:.2f}" if seed is not None else "-", num("test_accuracy", "{:.2f}"), num("task_calls"),
            num("test_calls"), num("proposer_calls"), str(tokens), num("wall_s"), num("n_demos"), fallbacks, how[:80]]


def prompts(found: dict[tuple[str, str], dict[str, Any]]) -> list[str]:
    """What each system ended with, clipped: the table's numbers are about these prompts."""
    lines = []
    for (task, system), result in found.items():
        instruction = " ".join(str(result.get("final_instruction", "")).split())
        clipped = instruction if len(instruction) <= 160 else instruction[:157] + "..."
        lines.append(f"- {task} / {system} ({result.get('n_demos', 0)} demos): `{clipped}`")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=TASKS)
    parser.add_argument("--systems", nargs="+", default=SYSTEMS, choices=SYSTEMS)
    parser.add_argument("--budget", type=int, default=120, help="task-model calls for each system's search")
    parser.add_argument("--val", type=int, default=10, help="validation examples")
    parser.add_argument("--test", type=int, default=20, help="test examples")
    parser.add_argument("--venv", type=Path, default=HERE.parent / ".venv-bench", help="DSPy's own virtualenv")
    parser.add_argument("--work", type=Path, default=Path("/tmp/agentopt-bench-vs-dspy"),
                        help="archives, DSPy specs, outputs and logs")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    console = Console()
    args.work.mkdir(parents=True, exist_ok=True)
    python = ensure_venv(args.venv, console)
    rows: list[list[str]] = []
    found: dict[tuple[str, str], dict[str, Any]] = {}
    wins = {s: 0 for s in args.systems if s != "agentopt"}
    with LocalModelServers(n_servers=1) as servers:
        base_url = servers.endpoints[0].base_url
        for task in args.tasks:
            results: dict[str, dict[str, Any]] = {}
            dspy_seed = run_dspy(python, "seed", task, args, base_url) if set(args.systems) - {"agentopt"} else {}
            for system in args.systems:
                started = time.perf_counter()
                if system == "agentopt":
                    results[system] = run_agentopt(task, args, base_url)
                else:
                    results[system] = run_dspy(python, system, task, args, base_url)
                console.print(f"{task} / {system}: test {results[system].get('test_accuracy')} "
                              f"in {time.perf_counter() - started:.0f} s")
                seed = results[system].get("seed_test_accuracy", dspy_seed.get("test_accuracy"))
                rows.append(row(task, system, seed, results[system]))
                found[task, system] = results[system]
            if "agentopt" in results:
                mine = results["agentopt"].get("test_accuracy") or 0.0
                for other in wins:
                    wins[other] += mine >= (results[other].get("test_accuracy") or 0.0)
    console.print(table("agentopt vs DSPy at an equal task-model budget", HEADERS, rows))
    summary = [f"agentopt ≥ {name} on {count} of {len(args.tasks)} tasks" for name, count in wins.items()]
    for line in summary:
        console.print(line)
    args.out.mkdir(parents=True, exist_ok=True)
    versions = {p: version(p) for p in ("agentopt", "llama_cpp_python")}
    dspy_versions = subprocess.run([str(python), "-c", "import dspy, litellm, importlib.metadata as m; "
                                    "print(f'dspy {dspy.__version__}, litellm {m.version(\"litellm\")}, "
                                    "gepa {m.version(\"gepa\")}')"], capture_output=True, text=True).stdout.strip()
    lines = [f"# bench_vs_dspy ({date.today().isoformat()}, 2-core machine, {LOCAL_MODEL_NAME})", "",
             f"Versions: agentopt {versions['agentopt']}, llama-cpp-python {versions['llama_cpp_python']}, "
             f"{dspy_versions}.", "",
             f"Command: `.venv/bin/python experiments/bench_vs_dspy.py --budget {args.budget} --val {args.val} "
             f"--test {args.test} --tasks {' '.join(args.tasks)} --systems {' '.join(args.systems)}`", "",
             *markdown(HEADERS, rows), "", *[f"- {line}" for line in summary], "",
             "Final instructions (DSPy's full outputs, call breakdowns and logs are in the --work folder):", "",
             *prompts(found)]
    (args.out / "bench_vs_dspy.md").write_text("\n".join(lines) + "\n")
    console.print(f"wrote {args.out / 'bench_vs_dspy.md'}")


if __name__ == "__main__":
    main()
