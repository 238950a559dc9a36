"""How much of APE's gain is just "add some demonstrations"? A baseline for the quickstart table.

For each task of a campaign config, on the same test examples the campaign scores (first
``evaluation.test_size`` of the sealed split, same task seed and task-model sampling): the seed agent
as configured, and the seed agent with k demonstrations drawn at random from train (``--draws``
draws, mean and range reported). Examples run through the campaign's own evaluator, so failed calls
are counted as errors, not as wrong answers, and every call goes through the archive's cache:
after the quickstart, re-running this is nearly free.

    .venv/bin/python experiments/baseline_demos.py [--config experiments/quickstart.yaml] [--db agentopt.db]
"""

import argparse
import random
import statistics
import sys

from rich.console import Console

from agentopt.agents.errors import AgentoptError
from agentopt.agents.llm import LLMClient
from agentopt.agents.local_model import LocalModelServers
from agentopt.agents.prompt import Demo, PromptAgent
from agentopt.archive.cache import SqlCallCache
from agentopt.archive.store import Archive, ExampleOutcome, database_url
from agentopt.optimizer.config import CampaignConfig, load_config
from agentopt.optimizer.evaluation import Job, ThreadEvaluator
from agentopt.optimizer.tasks import Task, load_task
from agentopt.optimizer.ui import table


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


def measure(config: CampaignConfig, archive: Archive, demos: int, draws: int) -> tuple[list[list[str]], dict[str, int]]:
    role = config.models.task
    totals = {"calls": 0, "cache hits": 0, "errors": 0}
    rows = []
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
                zero_shot, *scores = (accuracy(task, run) for run in runs)
                rows.append([name, f"{100 * zero_shot:.1f}", f"{100 * statistics.mean(scores):.1f}",
                             f"{100 * min(scores):.1f}–{100 * max(scores):.1f}"])
        finally:
            evaluator.close()
    return rows, totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="experiments/quickstart.yaml")
    parser.add_argument("--demos", type=int, default=3)
    parser.add_argument("--draws", type=int, default=5)
    parser.add_argument("--db", default=None)
    args = parser.parse_args()
    try:
        config = load_config(args.config)
        if config.models.task.model != "local":
            raise AgentoptError("this baseline runs the bundled local model; the config's task model is remote")
        rows, totals = measure(config, Archive(database_url(args.db or config.db)), args.demos, args.draws)
    except AgentoptError as exc:
        sys.exit(f"error: {exc}")
    Console(width=120).print(table(
        f"Seed agent alone vs. with {args.demos} random train demonstrations ({args.draws} draws), test accuracy %",
        ["task", "seed zero-shot", "seed + random demos (mean)", "range over draws"], rows))
    print(f"LLM calls made: {totals['calls']}, served from cache: {totals['cache hits']}, "
          f"examples failed with an error (not scored): {totals['errors']}")


if __name__ == "__main__":
    main()
