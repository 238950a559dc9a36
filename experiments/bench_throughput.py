"""Throughput on the bundled model: agentopt against plain asyncio clients, on 1 and 2 local servers.

Three workloads, each a list of rounds (a round ends before the next starts, as a strategy waits
for its results), jobs listed in the order a strategy hands them over (candidate by candidate):

- *short*: 4 short instructions, no demonstrations, 80 jobs interleaved (the first benchmark);
- *full*: 8 candidates x 20 examples, 3 demonstrations each (a full evaluation);
- *racing*: what APE's racing sends: rounds of 8, 6 and 4 candidates, 5 new examples each;
- *full-long*, *racing-long*: the same on gsm_symbolic, whose word problems make a candidate's
  prompt about 4 times as long (the quickstart's larger_animal prompts are 60-90 tokens); only
  racing-long runs by default (full-long takes 6 minutes a client on 1 server).

Each workload is run by
- **raw**: an asyncio ``openai`` client sending the jobs in the given order, round-robin over the servers;
- **ideal**: the same client, each candidate's jobs back to back on one server, candidates dealt
  so every server has as many jobs as the others;
- **agentopt before** (``prefix_affinity: false``): Ray actors, the cluster-wide gate sending each
  call to the least loaded server, the SQLite call cache (a fresh archive: every call is paid);
- **agentopt after** (the default): the same, with prefix runs and prefix-affine dispatch.

Every client keeps 2 requests in flight per server; temperature 0. Each timed run starts after a
pause of ``SETTLE_S``: an agentopt run's Ray workers exit in the background, and a run started
at once would share the CPU with them (the first version of this script had no pause and always
ran "after" right after "before"). On 2 servers, full and racing run ``--reps`` times (each time
starting with another client) and the median counts. The answers of the two agentopt runs are compared:
re-using a KV cache can change floating-point results slightly. The first workload runs once,
untimed, on freshly started servers (their first requests were measured 10 % slower).

    .venv/bin/python experiments/bench_throughput.py [--out experiments/results/bench_throughput.md]
"""

import argparse
import asyncio
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import openai
from rich.console import Console

from agentopt.agents.models.llm import Completion, LLMClient, MemoryCache, Sampling
from agentopt.agents.models.local_model import LocalModelServers
from agentopt.agents.prompt import Demo, PromptAgent
from agentopt.agents.runtime.wire import completion_request
from agentopt.archive.records import ExampleOutcome
from agentopt.archive.store import Archive, database_url
from agentopt.optimizer.engine.cluster import RemoteGate, ensure_ray
from agentopt.optimizer.engine.evaluation import Job, LLMSpec, RayEvaluator
from agentopt.optimizer.tasks import Example, load_task
from agentopt.optimizer.engine.ui import table

PER_SERVER = 2
SETTLE_S = 5.0  # before each timed run: the previous run's Ray workers exit and new ones finish starting
SAMPLING = Sampling(max_tokens=16)
INSTRUCTIONS = (
    "Answer the following.",
    "Which animal is larger? Reply with its name only.",
    "Name the larger of the two animals given, in one word, with nothing else.",
    "You compare animals by their typical adult size. Reply with the larger one.",
    "Read the two animals and write the name of the bigger one.",
    "Decide which of the two animals is larger by body mass and answer with that animal.",
    "Give the larger animal. One word, lower case, no punctuation.",
    "Think about the usual size of each animal, then reply with only the larger one's name.",
)
Round = list[tuple[int, Example]]  # (candidate index, example), in the order a strategy hands them over


@dataclass(frozen=True)
class Workload:
    name: str
    agents: tuple[PromptAgent, ...]
    rounds: tuple[Round, ...]

    @property
    def jobs(self) -> int:
        return sum(len(r) for r in self.rounds)


def prefix_workloads(task_name: str, suffix: str) -> list[Workload]:
    """*full* and *racing* on a task's own examples, each candidate with 3 of its demonstrations."""
    task = load_task(task_name)
    pool, demos = task.val + task.test, task.train
    agents = tuple(PromptAgent(instruction=text, demos=tuple(Demo(input=d.input, output=d.target)
                                                             for d in demos[3 * i:3 * i + 3]))
                   for i, text in enumerate(INSTRUCTIONS))
    full = [(c, pool[k]) for c in range(8) for k in range(20)]
    racing, start = [], 0
    for alive in (8, 6, 4):
        racing.append([(c, pool[start + k]) for c in range(alive) for k in range(5)])
        start += 5
    return [Workload(f"full{suffix}", agents, (full,)), Workload(f"racing{suffix}", agents, tuple(racing))]


def workloads() -> list[Workload]:
    task = load_task("larger_animal")
    pool = task.val + task.test
    bare = tuple(PromptAgent(instruction=i) for i in INSTRUCTIONS[:4])
    short = [(i % 4, pool[i // 4]) for i in range(80)]
    return [Workload("short", bare, (short,)), *prefix_workloads("larger_animal", ""),
            *prefix_workloads("gsm_symbolic", "-long")]


Answers = dict[tuple[int, str], str]


async def raw(urls: Sequence[str], model: str, load: Workload, ideal: bool) -> tuple[float, Answers]:
    """The plain client: jobs dealt round-robin over the servers in the given order, or (``ideal``)
    candidate by candidate to the server with the fewest jobs so far; 2 in flight per server."""
    clients = [openai.AsyncOpenAI(base_url=u, api_key="x", max_retries=0) for u in urls]
    answers: Answers = {}

    async def worker(client: openai.AsyncOpenAI, queue: list[tuple[int, Example]]) -> None:
        while queue:
            candidate, example = queue.pop(0)
            messages = load.agents[candidate].messages(example.input)
            reply = await client.chat.completions.create(**completion_request(model, messages, SAMPLING.model_dump(), 0))
            answers[(candidate, example.id)] = reply.choices[0].message.content or ""

    started = time.perf_counter()
    for jobs in load.rounds:
        queues: list[list[tuple[int, Example]]] = [[] for _ in urls]
        if ideal:
            for candidate in dict.fromkeys(c for c, _ in jobs):
                min(queues, key=len).extend(j for j in jobs if j[0] == candidate)
        else:
            for i, job in enumerate(jobs):
                queues[i % len(urls)].append(job)
        await asyncio.gather(*(worker(c, q) for c, q in zip(clients, queues, strict=True) for _ in range(PER_SERVER)))
    wall = time.perf_counter() - started
    for client in clients:
        await client.close()
    return wall, answers


def through_agentopt(servers: LocalModelServers, load: Workload, db: Path, affinity: bool) -> tuple[float, Answers]:
    archive = Archive(database_url(str(db)))
    gate = RemoteGate(servers.endpoints, affinity=affinity)
    n = len(servers.endpoints)
    spec = LLMSpec(tuple(servers.endpoints), SAMPLING, 60.0, 2, gate)
    evaluator = RayEvaluator(spec, archive.url, workers=n, concurrency=PER_SERVER, lanes=n if affinity else None)
    answers: Answers = {}
    campaign = archive.create_campaign("bench", "larger_animal", "bench", {})
    ids = [archive.add_candidate(campaign, agent, "bench")[0] for agent in load.agents]
    index = {candidate_id: i for i, candidate_id in enumerate(ids)}

    def done(job: Job, outcome: ExampleOutcome) -> None:
        if outcome.error:
            raise RuntimeError(outcome.error)
        answers[(index.get(job.candidate_id, -1), job.example_id)] = outcome.output or ""
        archive.add_result(job.candidate_id, job.split, outcome)

    warm_agent = PromptAgent(instruction="Reply with one word.")
    warm_id = archive.add_candidate(campaign, warm_agent, "bench")[0]
    try:  # actors up before the clock starts
        evaluator.evaluate([Job(warm_id, "train", f"w{i}", f"warm up {i}", warm_agent.payload(), campaign)
                            for i in range(2 * n)], done)
        time.sleep(SETTLE_S)
        started = time.perf_counter()
        for jobs in load.rounds:
            evaluator.evaluate([Job(ids[c], "val", e.id, e.input, load.agents[c].payload(), campaign) for c, e in jobs],
                               done)
        return time.perf_counter() - started, {k: v for k, v in answers.items() if k[0] >= 0}
    finally:
        evaluator.close()
        gate.close()


CLIENTS = ("raw (given order, round-robin)", "ideal (runs back to back)", "agentopt before", "agentopt after")


def run_once(servers: LocalModelServers, load: Workload, client: str, db: Path) -> tuple[float, Answers]:
    urls, model = [e.base_url for e in servers.endpoints], servers.endpoints[0].model
    if client in CLIENTS[:2]:
        time.sleep(SETTLE_S)
        return asyncio.run(raw(urls, model, load, ideal=client == CLIENTS[1]))
    return through_agentopt(servers, load, db, affinity=client == CLIENTS[3])


def cache_share(servers: LocalModelServers, load: Workload) -> float:
    """The share of prompt tokens the first server serves from its KV cache when a candidate's
    jobs arrive back to back (what the after path aims for), as its usage reports it."""
    llm = LLMClient(servers.endpoints[:1], MemoryCache(), SAMPLING)
    calls: list[Completion] = [llm.chat(load.agents[c].messages(e.input)) for c, e in load.rounds[0][:10]]
    return sum(c.cached_tokens for c in calls) / max(sum(c.prompt_tokens for c in calls), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="also write the tables and headline ratios here (markdown)")
    parser.add_argument("--workloads", nargs="+", default=["short", "full", "racing", "racing-long"])
    parser.add_argument("--reps", type=int, default=3, help="runs of full and racing on 2 servers (median kept)")
    args = parser.parse_args()
    ensure_ray()
    console = Console()
    loads = [w for w in workloads() if w.name in args.workloads]
    walls: dict[tuple[str, int, str], list[float]] = {}
    differences, shares = [], {}
    for n in (1, 2):
        with LocalModelServers(n_servers=n, threads=1, max_concurrency=PER_SERVER) as servers, \
                tempfile.TemporaryDirectory() as tmp:
            urls = [e.base_url for e in servers.endpoints]
            asyncio.run(raw(urls, servers.endpoints[0].model, loads[0], ideal=False))  # untimed: fresh servers are slower
            for load in loads:
                shares[(load.name, n)] = cache_share(servers, load)
                reps = args.reps if n == 2 and load.name in ("full", "racing") else 1
                for rep in range(reps):  # each repetition starts with another client, so drift hits all alike
                    answers: dict[str, Answers] = {}
                    for client in CLIENTS[rep % 4:] + CLIENTS[:rep % 4]:
                        db = Path(tmp) / f"{load.name}-{rep}-{client}.db"
                        wall, answers[client] = run_once(servers, load, client, db)
                        walls.setdefault((load.name, n, client), []).append(wall)
                    before, after = answers[CLIENTS[2]], answers[CLIENTS[3]]
                    changed = sorted(k for k in before if before[k] != after.get(k))
                    differences.append((load.name, n, rep, len(before),
                                        [(k, before[k], after.get(k)) for k in changed]))
                console.print(f"{load.name}, {n} server(s) done")
    rates = {key: sorted(len_of(loads, key[0]) / w for w in runs)[len(runs) // 2]
             for key, runs in walls.items()}
    rows = [[name, n, client, len(runs), len_of(loads, name), " ".join(f"{w:.1f}" for w in runs),
             f"{rates[(name, n, client)]:.2f}"] for (name, n, client), runs in walls.items()]
    console.print(table("Throughput on the bundled model (1 thread per server, 2 requests in flight per server)",
                        ["workload", "servers", "client", "runs", "examples", "wall s", "examples/s (median)"], rows))
    headline = []
    for load in loads:
        raw_rate, ideal, before, after = (rates[(load.name, 2, c)] for c in CLIENTS)
        headline += [f"{load.name}, 2 servers: agentopt after / before = {after / before:.2f}",
                     f"{load.name}, 2 servers: agentopt at {100 * after / ideal:.0f} % of the ideal",
                     f"{load.name}, 2 servers: raw client at {100 * raw_rate / ideal:.0f} % of the ideal",
                     f"{load.name}: agentopt after, 2 servers / 1 server = "
                     f"{after / rates[(load.name, 1, CLIENTS[3])]:.2f}",
                     f"{load.name}: ideal, 2 servers / 1 server = {ideal / rates[(load.name, 1, CLIENTS[1])]:.2f}"]
    diff_lines = []
    for name, n, rep, total, changed in differences:
        diff_lines.append(f"{name}, {n} server(s), run {rep + 1}: {len(changed)} of {total} answers differ between "
                          "agentopt before and after")
        diff_lines += [f"  - candidate {c}, example {e}: {b!r} before, {a!r} after" for (c, e), b, a in changed]
    share_lines = [f"{name}, {n} server(s): {100 * s:.0f} % of prompt tokens served from the KV cache when a "
                   "candidate's jobs arrive back to back" for (name, n), s in shares.items()]
    for line in headline + diff_lines + share_lines:
        console.print(line)
    if args.out:
        args.out.write_text("\n".join([
            "| workload | servers | client | runs | examples | wall s | examples/s (median) |",
            "|---|---|---|---|---|---|---|", *("|" + "|".join(map(str, row)) + "|" for row in rows), "",
            *headline, "", *diff_lines, "", *share_lines, ""]))


def len_of(loads: Sequence[Workload], name: str) -> int:
    return next(w.jobs for w in loads if w.name == name)


if __name__ == "__main__":
    main()
