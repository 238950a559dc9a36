"""Throughput through agentopt vs a plain asyncio ``openai`` load generator, on 1 and 2 local servers.

Both drive the same bundled-model servers with the same prompts and the same number of requests
in flight (2 per server). agentopt goes the whole way a campaign does: Ray actors, the cluster-wide
gate (endpoint choice, limits, budget ledger), the SQLite call cache (a fresh archive, so every call
is paid) and per-example result rows. Targets: agentopt >= 0.9 x raw; 2 servers >= 1.6 x 1 server.

    .venv/bin/python experiments/bench_throughput.py [--requests 80]
"""

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import openai
from rich.console import Console

from agentopt.agents.llm import LLMClient, Sampling
from agentopt.agents.local_model import LocalModelServers
from agentopt.agents.prompt import PromptAgent
from agentopt.archive.cache import SqlCallCache
from agentopt.archive.store import Archive, ExampleOutcome, database_url
from agentopt.optimizer.cluster import RemoteGate, ensure_ray
from agentopt.optimizer.evaluation import Job, LLMSpec, RayEvaluator
from agentopt.optimizer.tasks import load_task
from agentopt.optimizer.ui import table

PER_SERVER = 2
SAMPLING = Sampling(max_tokens=16)


def workload(n: int) -> list[tuple[PromptAgent, str]]:
    task = load_task("larger_animal")
    examples = (task.train + task.val + task.test)
    agents = [PromptAgent(instruction=i) for i in ("Answer the following.", "Which animal is larger?",
                                                    "Name the larger of the two animals.", "Reply with one word.")]
    return [(agents[i % len(agents)], examples[i // len(agents) % len(examples)].input) for i in range(n)]


async def raw(urls: list[str], model: str, work: list[tuple[PromptAgent, str]]) -> tuple[float, int]:
    clients = [openai.AsyncOpenAI(base_url=u, api_key="x", max_retries=0) for u in urls]
    queue: asyncio.Queue[tuple[int, tuple[PromptAgent, str]]] = asyncio.Queue()
    for item in enumerate(work):
        queue.put_nowait(item)
    tokens = 0

    async def worker(client: openai.AsyncOpenAI) -> None:
        nonlocal tokens
        while not queue.empty():
            _, (agent, text) = queue.get_nowait()
            reply = await client.chat.completions.create(model=model, messages=agent.messages(text),  # type: ignore[arg-type]
                                                         max_tokens=SAMPLING.max_tokens, temperature=0.0)
            tokens += reply.usage.completion_tokens if reply.usage else 0

    started = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in clients for _ in range(PER_SERVER)))
    return time.perf_counter() - started, tokens


def through_agentopt(servers: LocalModelServers, work: list[tuple[PromptAgent, str]], db: Path) -> tuple[float, int]:
    archive = Archive(database_url(str(db)))
    gate = RemoteGate(servers.endpoints)
    spec = LLMSpec(tuple(servers.endpoints), SAMPLING, 60.0, 2, gate)
    evaluator = RayEvaluator(spec, archive.url, workers=len(servers.endpoints), concurrency=PER_SERVER)
    tokens = 0

    def done(job: Job, outcome: ExampleOutcome) -> None:
        nonlocal tokens
        if outcome.error:
            raise RuntimeError(outcome.error)
        tokens += int(outcome.usage["completion_tokens"])
        archive.add_result(job.candidate_id, job.split, outcome)

    campaign = archive.create_campaign("bench", "larger_animal", "bench", {})
    ids = {a.instruction: archive.add_candidate(campaign, a, "bench")[0] for a, _ in work}
    jobs = [Job(ids[a.instruction], "train", f"e{i}", text, a.payload(), campaign) for i, (a, text) in enumerate(work)]
    warm = LLMClient(servers.endpoints, SqlCallCache(archive), SAMPLING, gate=gate)
    warm.chat([{"role": "user", "content": "warm up"}])
    try:
        evaluator.evaluate(jobs[:len(servers.endpoints)], done)  # actors up before the clock starts
        tokens = 0
        started = time.perf_counter()
        evaluator.evaluate(jobs[len(servers.endpoints):], done)
        return time.perf_counter() - started, tokens
    finally:
        evaluator.close()
        gate.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=80)
    args = parser.parse_args()
    ensure_ray()
    console = Console()
    rows, rates = [], {}
    for n in (1, 2):
        with LocalModelServers(n_servers=n, threads=1, max_concurrency=PER_SERVER) as servers, \
                tempfile.TemporaryDirectory() as tmp:
            work = workload(args.requests + n)
            urls = [e.base_url for e in servers.endpoints]
            asyncio.run(raw(urls, servers.endpoints[0].model, work[:4]))  # warm the servers
            raw_s, raw_tokens = asyncio.run(raw(urls, servers.endpoints[0].model, work[n:]))
            ours_s, our_tokens = through_agentopt(servers, work, Path(tmp) / "bench.db")
        for name, wall, tokens in (("raw openai (asyncio)", raw_s, raw_tokens), ("agentopt (Ray + gate + cache)",
                                                                              ours_s, our_tokens)):
            rates[(n, name)] = args.requests / wall
            rows.append([n, name, args.requests, f"{wall:.1f}", f"{args.requests / wall:.2f}", f"{tokens / wall:.1f}"])
    console.print(table("Throughput on the bundled model (1 thread per server, 2 requests in flight per server)",
                        ["servers", "client", "examples", "wall s", "examples/s", "completion tokens/s"], rows))
    for n in (1, 2):
        console.print(f"{n} server(s): agentopt / raw = "
                      f"{rates[(n, 'agentopt (Ray + gate + cache)')] / rates[(n, 'raw openai (asyncio)')]:.2f} (target >= 0.9)")
    for name in ("raw openai (asyncio)", "agentopt (Ray + gate + cache)"):
        console.print(f"{name}: 2 servers / 1 server = {rates[(2, name)] / rates[(1, name)]:.2f} (target >= 1.6)")


if __name__ == "__main__":
    main()
