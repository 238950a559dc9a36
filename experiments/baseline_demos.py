"""How much of APE's gain is just "add some demonstrations"? A baseline for the quickstart table.

For each task of a campaign config, on the same test examples the campaign scores (first
``evaluation.test_size`` of the sealed split, same task seed and task-model sampling): the seed agent
as configured, and the seed agent with k demonstrations drawn at random from train (``--draws``
draws, mean and range reported). Examples run through the campaign's own evaluator, so failed calls
are counted as errors, not as wrong answers, and every call goes through the archive's cache:
after the quickstart, re-running this is nearly free.

With ``--compare BENCH.json`` (a benchmark's stored cells: bench_strategies, bench_vs_dspy) each draw
becomes a cell of the arm "seed + random demos" (draw ``i`` paired with search seed ``i``, on the same
test items), and every arm of the benchmark is compared with it by the sweep statistics; ``--out``
writes that comparison as markdown. This is the number that says whether search helps.

    .venv/bin/python experiments/baseline_demos.py [--config experiments/quickstart.yaml] [--db agentopt.db]
        [--compare experiments/results/bench_strategies.json --out baseline.md]
"""

import argparse
import json
import random
import shlex
import statistics
import sys
from pathlib import Path

from rich.console import Console

from bench_strategies import task_refs

from agentopt.agents.runtime.errors import AgentoptError
from agentopt.agents.models.llm import LLMClient
from agentopt.agents.models.local_model import LocalModelServers
from agentopt.agents.prompt import Demo, PromptAgent
from agentopt.archive.cache import SqlCallCache
from agentopt.archive.records import ExampleOutcome
from agentopt.archive.store import Archive, database_url
from agentopt.archive.sweep_stats import Cell, compare_cells, to_markdown
from agentopt.optimizer.engine.config import CampaignConfig, load_config
from agentopt.optimizer.engine.evaluation import Job, ThreadEvaluator
from agentopt.optimizer.tasks import Task, load_task
from agentopt.optimizer.engine.ui import markdown, table


def run_test(agent: PromptAgent, task: Task, evaluator: ThreadEvaluator, test_size: int | None) -> list[ExampleOutcome]:
    outcomes: list[ExampleOutcome] = []
    evaluator.evaluate([Job(0, "test", e.id, e.input, agent.payload()) for e in task.test[:test_size]],
                       lambda _job, outcome: outcomes.append(outcome))
    return outcomes


def accuracy(task: Task, outcomes: list[ExampleOutcome]) -> float:
    """Mean score over the examples that ran; failed ones are errors, not wrong answers."""
    scored = [task.score(task.example(o.example_id), o.output).value for o in outcomes
              if o.error is None and o.output is not None]
    return sum(scored) / len(scored) if scored else float("nan")


ARM = "seed + random demos"


def cell(task: Task, draw: int, outcomes: list[ExampleOutcome], arm: str = ARM) -> Cell:
    """One draw's per-example test scores, as a sweep cell (examples that failed are left out)."""
    scored = [(o.example_id, task.score(task.example(o.example_id), o.output).value) for o in outcomes
              if o.error is None and o.output is not None]
    return Cell(task.name, arm, draw, f"{arm}-{draw}" if arm != ARM else f"draw-{draw}",
                tuple(e for e, _ in scored), tuple(s for _, s in scored))


def measure(config: CampaignConfig, archive: Archive, demos: int,
            draws: int) -> tuple[list[list[str]], dict[str, int], list[Cell]]:
    role = config.models.task
    totals = {"calls": 0, "cache hits": 0, "errors": 0}
    rows, cells = [], []
    with LocalModelServers(config.local_model.servers, config.local_model.threads) as servers:
        llm = LLMClient(role.pool(servers.endpoints), SqlCallCache(archive), role.sampling, role.timeout_s,
                        role.max_attempts)
        evaluator = ThreadEvaluator(llm, workers=2 * len(llm.endpoints))
        try:
            for name in config.tasks:
                task = load_task(name, seed=config.task_seed)
                seed = config.seed_agent.agent()
                rng = random.Random(0)
                agents = [seed] + [seed.model_copy(update={"demos": tuple(
                    Demo(input=e.input, output=e.target) for e in rng.sample(task.train, demos))}) for _ in range(draws)]
                runs = [run_test(agent, task, evaluator, config.evaluation.test_size) for agent in agents]
                for outcome in (o for run in runs for o in run):
                    totals["calls"] += int(outcome.usage["llm_calls"])
                    totals["cache hits"] += int(outcome.usage["cache_hits"])
                    totals["errors"] += outcome.error is not None
                cells += [cell(task, draw, run) for draw, run in enumerate(runs[1:])]
                zero_shot, *scores = (accuracy(task, run) for run in runs)
                rows.append([task.name, f"{100 * zero_shot:.1f}", f"{100 * statistics.mean(scores):.1f}",
                             f"{100 * min(scores):.1f}–{100 * max(scores):.1f}"])
        finally:
            evaluator.close()
    return rows, totals, cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="experiments/quickstart.yaml")
    parser.add_argument("--demos", type=int, default=3)
    parser.add_argument("--draws", type=int, default=5)
    parser.add_argument("--db", default=None)
    parser.add_argument("--tasks", nargs="+", help="these tasks instead of the config's (names, paths, or task "
                                                   "entries written as NAME.task.json files)")
    parser.add_argument("--compare", type=Path, help="a benchmark's JSON with its cells: compare its arms with this one")
    parser.add_argument("--out", type=Path, help="write the comparison (with --compare) as markdown")
    args = parser.parse_args()
    try:
        config = load_config(args.config)
        if args.tasks:
            config = config.model_copy(update={"tasks": tuple(task_refs(args.tasks))})
        if config.models.task.model != "local":
            raise AgentoptError("this baseline runs the bundled local model; the config's task model is remote")
        rows, totals, cells = measure(config, Archive(database_url(args.db or config.db)), args.demos, args.draws)
        stored = json.loads(args.compare.read_text())["cells"] if args.compare else []
    except (AgentoptError, OSError, KeyError, ValueError) as exc:
        sys.exit(f"error: {exc}")
    title = f"Seed agent alone vs. with {args.demos} random train demonstrations ({args.draws} draws), test accuracy %"
    headers = ["task", "seed zero-shot", "seed + random demos (mean)", "range over draws"]
    Console(width=120).print(table(title, headers, rows))
    print(f"LLM calls made: {totals['calls']}, served from cache: {totals['cache hits']}, "
          f"examples failed with an error (not scored): {totals['errors']}")
    if args.compare:
        benchmark = [Cell(**{**c, "examples": tuple(c["examples"]), "scores": tuple(c["scores"])}) for c in stored]
        compared = to_markdown(compare_cells("baseline_demos", [*benchmark, *cells])).split("\n", 1)[1].strip()
        print(compared)
        if args.out:
            args.out.write_text("\n".join([
                f"# {args.compare.name} against {ARM}", "",
                f"Command: `.venv/bin/python experiments/baseline_demos.py {shlex.join(sys.argv[1:])}`", "",
                f"{title}:", "", *markdown(headers, rows), "", compared]) + "\n")


if __name__ == "__main__":
    main()
