"""A sweep of small campaigns on the bundled model: one after another, then several at once.

Both runs use the same sweep (tasks x 2 strategies x seeds), the same endpoints and a fresh
archive each, so every call is paid in both; only ``sweep.concurrency`` differs (1: one campaign
after another, the way ``agentopt run`` goes through its tasks). Campaigns leave the endpoints
idle while a strategy thinks, proposes one call at a time or waits for a round's last example;
running several at once fills those gaps, as far as the endpoints have room.

``--endpoint local`` (default) is the bundled model on 2 servers; ``--endpoint scripted`` is the
test suite's scripted endpoint answering after ``--latency`` seconds with ``--limit`` requests in
flight allowed: a remote API, where a campaign waits on the network, not on this machine's CPU.

    .venv/bin/python experiments/bench_sweep.py [--endpoint scripted] [--seeds 3] [--out FILE]
"""

import argparse
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from rich.console import Console

from agentopt.archive.store import Archive, database_url
from agentopt.optimizer.frontends.status import sweep_status
from agentopt.optimizer.engine.sweep import run_sweep
from agentopt.optimizer.engine.sweep_config import parse_sweep
from agentopt.optimizer.engine.ui import SilentReporter, markdown, table

APE = {"n_subsamples": 2, "demos_per_subsample": 3, "samples_per_subsample": 2, "candidate_demos": 2,
       "batch_size": 4, "pulls_per_round": 2, "racing_budget": 24, "mc_rounds": 0, "top_k": 2}
RANDOM = {"n_subsamples": 2, "demos_per_subsample": 3, "samples_per_subsample": 2, "queries": 3, "batch": 2,
          "dev_size": 4}


def sweep(concurrency: int, seeds: int, url: str | None, limit: int) -> dict[str, Any]:
    remote = {"model": "scripted", "endpoints": [{"base_url": url, "max_concurrency": limit}], "max_attempts": 1}
    models = {"models": {"task": remote, "proposer": {**remote, "temperature": 0.9}}} if url else {}
    return {"name": f"bench-sweep-c{concurrency}", "tasks": ["larger_animal"], **models,
            "local_model": {"servers": 2, "threads": 1},
            "evaluation": {"backend": "threads", "workers": 1, "concurrency": 2, "val_size": 10, "test_size": 20},
            "matrix": {"tasks": ["larger_animal", "antonyms"],
                       "strategies": [{"name": "ape", "params": APE}, {"name": "random", "params": RANDOM}],
                       "seeds": list(range(seeds))},
            "sweep": {"concurrency": concurrency}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--seeds", type=int, default=1, help="seeds per task and strategy (campaigns: 4 x seeds)")
    parser.add_argument("--endpoint", choices=["local", "scripted"], default="local")
    parser.add_argument("--latency", type=float, default=0.3, help="scripted endpoint: seconds per answer")
    parser.add_argument("--limit", type=int, default=8, help="scripted endpoint: requests in flight allowed")
    parser.add_argument("--out", type=Path, help="also write the table here (markdown)")
    args = parser.parse_args()
    console = Console()
    rows = []
    walls = {}
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        url = None
        if args.endpoint == "scripted":
            sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
            from fakes import FakeEndpoint, task_aware_responder

            endpoint = FakeEndpoint(task_aware_responder, delay_s=args.latency)
            stack.callback(endpoint.close)
            url = endpoint.url
        for concurrency in (1, args.concurrency):
            plan = parse_sweep(sweep(concurrency, args.seeds, url, args.limit))
            archive = Archive(database_url(str(Path(tmp) / f"c{concurrency}.db")))
            started = time.perf_counter()
            result = run_sweep(plan, archive, SilentReporter())
            wall = time.perf_counter() - started
            walls[concurrency] = wall
            status = sweep_status(archive, result.sweep_id)
            calls = sum(v["calls"] for v in status.spend.values())
            rows.append([concurrency, len(plan.cells), result.status, f"{wall:.0f}", int(calls),
                         f"{calls / wall:.2f}"])
            console.print(f"concurrency {concurrency}: {wall:.0f}s, {result.status}")
    columns = ["campaigns at once", "campaigns", "status", "wall s (servers and Ray start included)", "LLM calls",
               "calls/s"]
    where = ("the bundled model (2 servers, 1 thread each)" if args.endpoint == "local" else
             f"a scripted endpoint ({args.latency:.2f} s per answer, {args.limit} in flight)")
    console.print(table(f"Sweep wall time on {where}", columns, rows))
    ratio = walls[args.concurrency] / walls[1]
    headline = f"{where}, sweep of {len(plan.cells)} campaigns: {args.concurrency} at once took {100 * ratio:.0f} % of " \
               f"the wall time of one after another ({walls[args.concurrency]:.0f}s vs {walls[1]:.0f}s)"
    console.print(headline)
    if args.out:
        with args.out.open("a") as results:
            results.write("\n".join([f"## {where}", "", *markdown(columns, rows), "", headline, "", ""]))


if __name__ == "__main__":
    main()
