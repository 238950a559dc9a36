"""How much of APE's gain is just "add some demonstrations"? A baseline for the quickstart table.

For each task, scores on the same test examples as the quickstart (first ``--test-size`` of the
sealed split): the seed instruction zero-shot, and the seed instruction with k demonstrations drawn
at random from train (``--draws`` draws, mean and range reported). Calls go through the same
archive cache as campaigns, so re-running is free.

    .venv/bin/python experiments/baseline_demos.py --db agentopt.db
"""

import argparse
import random
import statistics
from concurrent.futures import ThreadPoolExecutor

from rich.console import Console

from agentopt.agents.llm import LLMClient, Sampling
from agentopt.agents.local_model import LocalModelServers
from agentopt.agents.prompt import Demo, PromptAgent
from agentopt.archive.cache import SqlCallCache
from agentopt.archive.store import Archive, database_url
from agentopt.optimizer.tasks import Task, load_task
from agentopt.optimizer.ui import table


def accuracy(agent: PromptAgent, task: Task, llm: LLMClient, test_size: int) -> float:
    examples = task.test[:test_size]
    with ThreadPoolExecutor(max_workers=4) as pool:
        outputs = list(pool.map(lambda e: agent.run(e.input, llm), examples))
    return sum(task.score(o, e.target) for o, e in zip(outputs, examples, strict=True)) / len(examples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["larger_animal", "singular_to_plural", "antonyms"])
    parser.add_argument("--seed-instruction", default="Answer the following.")
    parser.add_argument("--demos", type=int, default=3)
    parser.add_argument("--draws", type=int, default=5)
    parser.add_argument("--test-size", type=int, default=80)
    parser.add_argument("--db", default=None)
    args = parser.parse_args()
    archive = Archive(database_url(args.db))
    rows = []
    with LocalModelServers() as servers:
        llm = LLMClient(servers.endpoints, SqlCallCache(archive), Sampling(max_tokens=24))
        for name in args.tasks:
            task = load_task(name)
            seed = PromptAgent(instruction=args.seed_instruction)
            rng = random.Random(0)
            draws = [accuracy(seed.model_copy(update={"demos": tuple(Demo(input=e.input, output=e.target)
                                                                     for e in rng.sample(task.train, args.demos))}),
                              task, llm, args.test_size) for _ in range(args.draws)]
            rows.append([name, f"{100 * accuracy(seed, task, llm, args.test_size):.1f}",
                         f"{100 * statistics.mean(draws):.1f}", f"{100 * min(draws):.1f}–{100 * max(draws):.1f}"])
    Console(width=120).print(table(
        f"Seed instruction alone vs. with {args.demos} random train demonstrations ({args.draws} draws), test accuracy %",
        ["task", "seed zero-shot", "seed + random demos (mean)", "range over draws"], rows))
    print(f"LLM calls made: {llm.usage.calls}, served from cache: {llm.usage.cache_hits}")


if __name__ == "__main__":
    main()
