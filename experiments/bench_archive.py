"""Archive at scale: fill an archive with N candidates (default 1,000,000) and time the queries.

    .venv/bin/python experiments/bench_archive.py                 # SQLite in a temp dir, 1M candidates
    .venv/bin/python experiments/bench_archive.py --n 100000 --db postgresql+psycopg://...

The archive is built with the real schema (every migration) and the rows a campaign writes: one
val evaluation per candidate, a parent per candidate (lineage chains up to a few hundred deep) and
a test evaluation for each campaign's winner. Queries go through the same functions the CLI uses;
each latency is the median of repeated runs with different arguments, after one warm-up.
Targets (issue 3): top-k, a filtered query and a depth-20 lineage each under 50 ms.
Then every page of `agentopt dashboard` is fetched over real HTTP on loopback: the installed
`agentopt dashboard --db URL --port PORT` runs in its own process on 127.0.0.1 (uvicorn, read-only, as a
user starts it) and this process fetches each page with urllib, a new TCP connection per request, so each
figure includes connecting, routing, the queries, rendering and reading the whole body.
Target (issue 22): each under 1 s.
"""

import argparse
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress

from agentopt.agents.models.local_model import free_port
from agentopt.archive import queries
from agentopt.archive.queries import Filters
from agentopt.archive.store import Archive
from agentopt.optimizer.engine.ui import table

TASKS = [f"task_{i:02d}" for i in range(20)]
STRATEGIES = ["ape", "opro", "instinct", "optuna", "adas"]
KINDS = ["prompt", "prompt", "prompt", "code", "graph"]
START = datetime(2026, 1, 1, tzinfo=UTC)
BATCH = 20_000


def fill(archive: Archive, n: int, per_campaign: int, seed: int) -> tuple[float, dict[int, int]]:
    """Insert the rows; returns the insert rate (candidates/s) and each candidate's lineage depth."""
    rng = random.Random(seed)
    n_campaigns = (n + per_campaign - 1) // per_campaign
    campaigns = [{"id": f"c{i:07d}", "name": f"bench {i}", "task": TASKS[i % len(TASKS)],
                  "strategy": STRATEGIES[i % len(STRATEGIES)], "config": {}, "status": "finished", "summary": {},
                  "created_at": START + timedelta(days=365 * i / n_campaigns)} for i in range(n_campaigns)]
    depth: dict[int, int] = {}
    started = time.perf_counter()
    archive.bulk_insert({"campaigns": campaigns})
    candidates, evaluations, lineage = [], [], []

    def flush() -> None:
        archive.bulk_insert({"candidates": candidates, "evaluations": evaluations, "lineage": lineage})
        candidates.clear(), evaluations.clear(), lineage.clear()

    with Progress(transient=True) as progress:
        bar = progress.add_task("inserting candidates", total=n)
        for cid in range(1, n + 1):
            index = (cid - 1) % per_campaign
            campaign = campaigns[(cid - 1) // per_campaign]
            created = campaign["created_at"] + timedelta(seconds=index)
            kind = KINDS[rng.randrange(len(KINDS))]
            candidates.append({"id": cid, "campaign_id": campaign["id"], "kind": kind,
                               "payload": {"kind": kind, "instruction": f"Instruction {cid}: answer briefly."},
                               "content_hash": f"{cid:064x}", "strategy": campaign["strategy"], "rationale": "",
                               "created_at": created})
            mean = rng.random()
            evaluations.append({"candidate_id": cid, "split": "val", "n": 50, "n_errors": 0, "mean": mean,
                                "ci_low": max(mean - 0.1, 0.0), "ci_high": min(mean + 0.1, 1.0),
                                "tokens_mean": rng.uniform(20, 400), "updated_at": created})
            if index:
                parent = cid - rng.randint(1, min(index, 5))
                lineage.append({"child_id": cid, "parent_id": parent})
                depth[cid] = depth[parent] + 1
            else:
                depth[cid] = 0
            if len(candidates) >= BATCH:
                flush()
                progress.update(bar, completed=cid)
        if candidates:
            flush()
    return n / (time.perf_counter() - started), depth


def median_ms(fn: Callable[[Any], Any], args: list[Any]) -> float:
    fn(args[0])
    times = []
    for arg in args:
        t0 = time.perf_counter()
        fn(arg)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def fetch(url: str) -> None:
    """One page, read to its last byte: a browser waits for the whole body too."""
    with urllib.request.urlopen(url, timeout=60) as answer:
        answer.read()


@contextmanager
def dashboard_server(db_url: str) -> Iterator[str]:
    """`agentopt dashboard` serving the archive from its own process on a free loopback port; yields its base URL."""
    port = free_port()
    agentopt = Path(sys.executable).parent / "agentopt"
    log = tempfile.TemporaryFile("w+")  # a file, not a pipe: a full pipe nobody reads would stall the server
    server = subprocess.Popen([str(agentopt), "dashboard", "--db", db_url, "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=log, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if server.poll() is not None:
                    log.seek(0)
                    raise RuntimeError(f"agentopt dashboard exited: {log.read().strip()}") from None
                if time.monotonic() > deadline:
                    raise RuntimeError(f"agentopt dashboard did not listen on port {port} within 120 s") from None
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=60)
        log.close()


def dashboard_pages(base: str, campaign_ids: list[str], depth20: list[int], n: int,
                    rng: random.Random) -> list[list[str]]:
    """Each dashboard page's median latency, fetched over HTTP from the running server as a browser would."""

    def get(path: str) -> None:
        try:
            fetch(base + path)
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"{path}: {exc.code}") from None

    pages: list[tuple[str, list[str]]] = [
        ("/ (campaigns, newest 50)", ["/"] * 5),
        ("/ filtered by task + strategy + dates",
         [f"/?task={t}&strategy=ape&since=2026-01-01&until=2026-12-31&page=1" for t in TASKS[:5]]),
        ("/campaigns/ID (1,000 candidates)", [f"/campaigns/{c}" for c in campaign_ids[:10]]),
        ("/campaigns/ID sorted by val, page 5", [f"/campaigns/{c}?sort=val&desc=1&page=5" for c in campaign_ids[:10]]),
        ("/api/campaigns/ID (the live update)", [f"/api/campaigns/{c}" for c in campaign_ids[:10]]),
        ("/candidates/ID (depth-20 lineage)", [f"/candidates/{c}" for c in rng.sample(depth20, min(10, len(depth20)))]),
        ("/candidates/ID (a campaign's root: 999 descendants)",
         [f"/candidates/{1 + 1000 * rng.randrange(max(n // 1000, 1))}" for _ in range(5)]),
        ("/compare?a=ID&b=ID", [f"/compare?a={rng.randrange(1, n)}&b={rng.randrange(1, n)}" for _ in range(10)]),
        ("/compare?task=NAME (50 campaigns)", [f"/compare?task={t}" for t in rng.sample(TASKS, 5)]),
    ]
    rows = []
    for name, paths in pages:
        ms = median_ms(get, paths)
        rows.append([name, f"{ms:.0f}", "< 1000", "yes" if ms < 1000 else "NO"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000, help="candidates to insert")
    parser.add_argument("--per-campaign", type=int, default=1000)
    parser.add_argument("--db", help="an empty database URL (default: a new SQLite file in a temp dir)")
    parser.add_argument("--repeat", type=int, default=20, help="runs per query")
    args = parser.parse_args()
    console = Console()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.db or f"sqlite:///{Path(tmp) / 'bench.db'}"
        archive = Archive(url)
        rate, depth = fill(archive, args.n, args.per_campaign, seed=0)
        t0 = time.perf_counter()
        archive.optimize()  # what every finished campaign runs
        analyze_s = time.perf_counter() - t0
        rng = random.Random(1)
        n_campaigns = (args.n + args.per_campaign - 1) // args.per_campaign
        campaign_ids = [f"c{rng.randrange(n_campaigns):07d}" for _ in range(args.repeat)]
        depth20 = [c for c, d in depth.items() if d == 20]
        deepest = max(depth, key=depth.__getitem__)
        months = [START + timedelta(days=rng.randrange(300)) for _ in range(args.repeat)]
        cases: list[tuple[str, Callable[[Any], Any], list[Any], bool]] = [
            ("top-10 on val, whole archive", lambda _: queries.top(archive, 10), [None] * args.repeat, True),
            ("top-10, filtered by task", lambda t: queries.top(archive, 10, "val", Filters(task=t)),
             rng.sample(TASKS, min(args.repeat, len(TASKS))), True),
            ("top-10, filtered by campaign", lambda c: queries.top(archive, 10, "val", Filters(campaign=c)),
             campaign_ids, True),
            ("top-10, filtered by task + kind + strategy + 30 days",
             lambda m: queries.top(archive, 10, "val", Filters(task=TASKS[3], kind="code", strategy="optuna",
                                                                since=m, until=m + timedelta(days=30))), months, True),
            ("lineage of a depth-20 candidate", lambda c: queries.lineage(archive, c),
             rng.sample(depth20, min(args.repeat, len(depth20))), True),
            (f"lineage of the deepest candidate (depth {depth[deepest]})", lambda c: queries.lineage(archive, c),
             [deepest] * 5, False),
            ("Pareto front of one campaign", lambda c: queries.pareto(archive, "val", Filters(campaign=c)),
             campaign_ids, False),
            ("show one candidate", lambda c: queries.show(archive, c), [rng.randrange(1, args.n) for _ in range(10)],
             False),
        ]
        rows = []
        for name, fn, arguments, targeted in cases:
            ms = median_ms(fn, arguments)
            verdict = ("yes" if ms < 50 else "NO") if targeted else "-"
            rows.append([name, f"{ms:.1f}", "< 50" if targeted else "-", verdict])
        console.print(f"{archive.engine.dialect.name} archive, {args.n:,} candidates + {args.n:,} evaluations + "
                      f"{args.n - n_campaigns:,} lineage edges in {n_campaigns:,} campaigns; "
                      f"insert rate {rate:,.0f} candidates/s; planner statistics refreshed in {analyze_s:.2f} s")
        console.print(table("Query latency (median ms)", ["query", "ms", "target", "met"], rows))
        with dashboard_server(url) as base:
            pages = dashboard_pages(base, campaign_ids, depth20, args.n, rng)
        console.print(table("Dashboard pages (median ms over HTTP, rendering included)", ["page", "ms", "target", "met"],
                            pages))
        archive.engine.dispose()


if __name__ == "__main__":
    main()
