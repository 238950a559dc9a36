"""experiments/bench_archive.py times the dashboard over real HTTP, as the README says: the installed
`agentopt dashboard` serves the archive from its own process on loopback and the benchmark fetches every
page through a socket (issue 32: the figures were once taken with an in-process test client)."""

import importlib.util
import random
import socket
import urllib.request
from pathlib import Path
from types import ModuleType

import pytest

from agentopt.archive.store import Archive

BENCH = Path(__file__).parents[1] / "experiments" / "bench_archive.py"


def bench_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_archive", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_every_dashboard_page_is_timed_from_a_real_server_process(tmp_path: Path) -> None:
    bench = bench_module()
    url = f"sqlite:///{tmp_path / 'bench.db'}"
    archive = Archive(url)
    _, depth = bench.fill(archive, 2000, 100, seed=0)  # 20 campaigns: one per task, depth-20 chains in each
    archive.optimize()
    archive.engine.dispose()
    campaign_ids = [f"c{i:07d}" for i in range(10)]
    depth20 = [c for c, d in depth.items() if d == 20]
    with bench.dashboard_server(url) as base:
        host, port = base.removeprefix("http://").split(":")
        assert host == "127.0.0.1"
        with urllib.request.urlopen(base + "/", timeout=60) as page:
            assert page.headers["server"] == "uvicorn", "a real uvicorn server answers, not an in-process client"
        rows = bench.dashboard_pages(base, campaign_ids, depth20, 2000, random.Random(1))
    assert len(rows) == 9 and all(row[3] == "yes" for row in rows), rows
    with pytest.raises(ConnectionRefusedError):  # the server process is stopped with the benchmark
        socket.create_connection((host, int(port)), timeout=5).close()
