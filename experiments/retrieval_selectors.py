"""Which demonstrations should a prompt agent retrieve per input: lexically similar ones, or those
nearest by the embedder role's embeddings? Measured without any search, so nothing but the selector
differs between arms.

For each task and draw ``i`` (the draws play the part of search seeds, so the sweep statistics model
draws x test items as crossed): a pool of half of train drawn at random, and the seed instruction with
``k`` demonstrations per input picked from that pool lexically, by the bundled model's embeddings
(its own llama.cpp server in embedding mode), or at random from the pool once for all inputs (the
baseline: same pool, no selection). Each arm runs on the same test items with the task model as
``bench_strategies`` runs it (greedy, 16 tokens); every call goes through the archive's cache, so a
re-run is nearly free.

    .venv/bin/python experiments/retrieval_selectors.py --tasks larger_animal number_to_words first_letter \
        [--draws 3] [--k 2] [--test 80] [--db /tmp/selectors.db] [--out experiments/results/retrieval_selectors.md]
"""

import argparse
import random
import shlex
import sys
from pathlib import Path

from rich.console import Console

from agentopt.agents.runtime.errors import AgentoptError
from agentopt.agents.models.llm import LLMClient, Sampling
from agentopt.agents.models.local_model import LocalModelServers
from agentopt.agents.prompt import Demo, PromptAgent, Selector
from agentopt.archive.cache import SqlCallCache
from agentopt.archive.store import Archive, database_url
from agentopt.archive.sweep_stats import Cell, compare_cells, to_markdown
from agentopt.optimizer.engine.evaluation import ThreadEvaluator
from agentopt.optimizer.tasks import Task, load_task
from baseline_demos import cell, run_test
from bench_strategies import task_refs

SAMPLING = Sampling(temperature=0.0, max_tokens=16)
RANDOM = "random from the pool"


def arms(seed: PromptAgent, pool: tuple[Demo, ...], k: int, rng: random.Random) -> dict[str, PromptAgent]:
    selectors: tuple[Selector, ...] = ("lexical", "embedding")
    return {RANDOM: seed.with_demos(tuple(rng.sample(pool, k))),
            **{f"retrieved, {s}": seed.with_retrieval(pool, k, s) for s in selectors}}


def measure(task: Task, draws: int, k: int, test: int, evaluator: ThreadEvaluator) -> list[Cell]:
    cells = []
    seed = PromptAgent()
    for draw in range(draws):
        rng = random.Random(draw)
        pool = tuple(Demo(input=e.input, output=e.target) for e in rng.sample(task.train, len(task.train) // 2))
        cells += [cell(task, draw, run_test(agent, task, evaluator, test), arm)
                  for arm, agent in arms(seed, pool, k, rng).items()]
    return cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", required=True,
                        help="built-in task names, .jsonl paths, or task entries written as NAME.task.json files")
    parser.add_argument("--draws", type=int, default=3, help="pools drawn per task (the comparison's seeds)")
    parser.add_argument("--k", type=int, default=2, help="demonstrations shown per input")
    parser.add_argument("--test", type=int, default=80, help="test examples (fewer where a task has fewer)")
    parser.add_argument("--db", default="/tmp/agentopt-retrieval-selectors.db", help="archive holding the call cache")
    parser.add_argument("--note", default="", help="a paragraph under the title, e.g. which tasks are held out")
    parser.add_argument("--out", type=Path, help="write the comparison as markdown")
    args = parser.parse_args()
    try:
        tasks = [load_task(ref, seed=0) for ref in task_refs(args.tasks)]
        archive = Archive(database_url(args.db))
    except (AgentoptError, OSError, ValueError) as exc:
        sys.exit(f"error: {exc}")
    cells: list[Cell] = []
    with LocalModelServers(n_servers=2) as chat, LocalModelServers(1, 1, embedding=True) as embedding:
        cache = SqlCallCache(archive)
        embedder = LLMClient(embedding.endpoints, cache, role="embedder")
        llm = LLMClient(chat.endpoints, cache, SAMPLING).with_embedder(embedder)
        evaluator = ThreadEvaluator(llm, workers=4)
        try:
            for task in tasks:
                cells += measure(task, args.draws, args.k, args.test, evaluator)
                Console().print(f"{task.name}: done")
        finally:
            evaluator.close()
    # no campaigns here, so the comparison's cost table (per campaign) has nothing to say
    compared = to_markdown(compare_cells("retrieval_selectors", cells)).split("\n", 1)[1]
    compared = compared.split("## Cost per arm")[0].strip()
    print(compared)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join([
            f"# Retrieved demonstrations: lexical vs embeddings, {args.k} per input", "",
            *([args.note, ""] if args.note else []),
            f"Command: `.venv/bin/python experiments/retrieval_selectors.py {shlex.join(sys.argv[1:])}`", "",
            "Seed instruction (\"Answer the following.\"), no search; draw i = a random half of train as the pool "
            "(and, for the baseline arm, k demonstrations drawn from it once for every input).", "", compared]) + "\n")


if __name__ == "__main__":
    main()
