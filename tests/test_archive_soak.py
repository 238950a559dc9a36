"""A bounded soak of one archive shared by everything a user runs at once: campaign processes,
campaign-shaped writers that log each committed row, the dashboard reading, and CLI queries opening
and closing it, on SQLite and on PostgreSQL. At the end the database is intact and every logged row
is there. The figures are printed (run with -s to see them)."""

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from fakes import FakeEndpoint, task_aware_responder
from processes import AGENTOPT, Repeated, archive_query, wait_until
from sqlalchemy import create_engine, text
from test_campaign import config

from agentopt.agents.models.local_model import free_port

pytestmark = pytest.mark.slow

WRITERS, ROUNDS, PACE_S, CAMPAIGNS = 3, 20, 1.5, 3
# Queries and dashboards come and go back to back with a pause between them. A CLI query's process
# took 3 CPU-seconds when the CLI imported the model stack and takes under 1 now: with a 1 s pause a
# soak sees more of them than it did with 0.3 s then, and leaves a core for the writers.
QUERY_PAUSE_S = 1.0
WRITER = Path(__file__).with_name("archive_writer.py")


def _page(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=60) as page:
            return None if page.status == 200 else f"{url}: {page.status}"
    except OSError as exc:
        return f"{url}: {exc}"


def _dashboard_session(url: str, pages: int = 5) -> str | None:
    """A dashboard started, read a few times and stopped: its connections open and close with it."""
    port = free_port()
    server = subprocess.Popen([AGENTOPT, "dashboard", "--db", url, "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    home = f"http://127.0.0.1:{port}/"
    try:
        if not wait_until(lambda: _page(home) is None or server.poll() is not None, timeout=120):
            return "the dashboard never answered"
        failures = [f for f in (_page(home) for _ in range(pages)) if f]
        return "; ".join(failures) or None
    finally:
        server.terminate()
        server.wait(timeout=60)


def _campaigns(url: str, configs: list[Path]) -> Callable[[], str | None]:
    """``agentopt run`` processes, one after another: each opens the archive, fills it and closes it."""
    queue = list(configs)

    def step() -> str | None:
        if not queue:
            return None
        done = subprocess.run([AGENTOPT, "run", str(queue.pop(0)), "--db", url, "--quiet"], capture_output=True,
                              text=True, timeout=600)
        return None if done.returncode == 0 else done.stderr[-2000:]

    return step


def _logged(log: Path) -> dict[str, set[str]]:
    rows: dict[str, set[str]] = {"campaign": set(), "candidate": set(), "result": set(), "call": set()}
    for line in log.read_text().splitlines():
        kind, _, rest = line.partition(" ")
        if kind in rows:
            rows[kind].add(rest)
    return rows


def _stored(url: str) -> tuple[str, dict[str, set[str]]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            check = (conn.execute(text("PRAGMA integrity_check")).scalar_one()
                     if engine.dialect.name == "sqlite" else "ok")
            results = conn.execute(text("select candidate_id, example_id from results")).all()
            return check, {
                "campaign": {r for (r,) in conn.execute(text("select id from campaigns"))},
                "candidate": {str(r) for (r,) in conn.execute(text("select id from candidates"))},
                "result": {f"{c} {e}" for c, e in results},
                "call": {r for (r,) in conn.execute(text("select key from llm_calls"))},
            }
    finally:
        engine.dispose()


def test_a_soak_of_writers_campaigns_dashboard_and_queries_loses_no_row(db_url: str, tmp_path: Path,
                                                                      echo_task_file: Path) -> None:
    """Writers hold the archive open for the whole soak and check its path every round (as a second
    ``optimize`` does); campaigns, dashboards and queries open and close it around them. Before the
    fix, the first process to close while the writers' locks were dropped deleted the WAL."""
    endpoint = FakeEndpoint(task_aware_responder)
    configs = []
    for i in range(CAMPAIGNS):
        configs.append(tmp_path / f"c{i}.yaml")
        configs[-1].write_text(yaml.safe_dump(config(echo_task_file, endpoint.url, name=f"c{i}")))
    started = time.monotonic()
    writers: list[subprocess.Popen[str]] = []
    try:
        first = subprocess.run([sys.executable, str(WRITER), db_url, str(tmp_path / "w-init.log"), "1", "init", "0"],
                               capture_output=True, text=True, timeout=300)
        assert first.returncode == 0, first.stderr[-2000:]
        with (Repeated(lambda: archive_query(db_url), pause_s=QUERY_PAUSE_S) as queries,
              Repeated(lambda: _dashboard_session(db_url), pause_s=QUERY_PAUSE_S) as pages,
              Repeated(_campaigns(db_url, configs)) as campaigns):
            writers = [subprocess.Popen([sys.executable, str(WRITER), db_url, str(tmp_path / f"w{i}.log"), str(ROUNDS),
                                         f"w{i}", str(PACE_S)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                       for i in range(WRITERS)]
            outcomes = [proc.communicate(timeout=900) for proc in writers]
            wait_until(lambda: campaigns.runs >= CAMPAIGNS, timeout=900)
        assert [p.returncode for p in writers] == [0] * WRITERS, [err[-2000:] for _, err in outcomes]
        assert queries.runs > 0 and pages.runs > 0 and campaigns.runs >= CAMPAIGNS
        assert not (queries.failures or pages.failures or campaigns.failures), (
            queries.failures[:2], pages.failures[:2], campaigns.failures[:2])
    finally:
        endpoint.close()
        for proc in writers:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=60)
    check, stored = _stored(db_url)
    assert check == "ok"
    logged: dict[str, set[str]] = {kind: set() for kind in stored}
    for log in tmp_path.glob("w*.log"):
        for kind, rows in _logged(log).items():
            logged[kind] |= rows
    lost = {kind: len(rows - stored[kind]) for kind, rows in logged.items()}
    figures = {"backend": db_url.split(":")[0], "writers": WRITERS, "rounds": ROUNDS, "campaigns": CAMPAIGNS,
               "logged": {k: len(v) for k, v in logged.items()}, "stored": {k: len(v) for k, v in stored.items()},
               "lost": lost, "cli_queries": queries.runs, "dashboard_sessions": pages.runs,
               "wall_s": round(time.monotonic() - started, 1)}
    print(json.dumps(figures))
    assert lost == {kind: 0 for kind in logged}
    assert len(stored["campaign"]) == WRITERS + CAMPAIGNS + 1
