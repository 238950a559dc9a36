import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from databases import KINDS, drop_archive, new_archive, skip_without_postgres  # noqa: E402
from fakes import FakeEndpoint, task_aware_responder  # noqa: E402
from processes import cores_per_worker  # noqa: E402

from agentopt.agents.models.local_model import LocalModelServers  # noqa: E402


@pytest.fixture
def fake_endpoint() -> Iterator[FakeEndpoint]:
    endpoint = FakeEndpoint(task_aware_responder)
    yield endpoint
    endpoint.close()


@pytest.fixture(scope="session")
def local_model() -> Iterator[LocalModelServers]:
    """The real bundled model, one server for the session (for each pytest-xdist worker), with the
    machine's cores shared among the workers: a second thread won only about 10 % alone (24 calls,
    5.11 s on one thread, 4.57 s on two), and beside another worker it would fight for a core."""
    with LocalModelServers(n_servers=1, threads=cores_per_worker()) as servers:
        yield servers


@pytest.fixture
def echo_task_file(tmp_path: Path) -> Path:
    """A user task where the right answer is the input itself."""
    words = ["apple", "river", "stone", "cloud", "maple", "otter", "piano", "lemon", "tiger", "ocean",
             "amber", "cedar", "delta", "ember", "flint", "grove", "haven", "ivory", "jolly", "koala"]
    path = tmp_path / "echo.jsonl"
    path.write_text("".join(f'{{"input": "{w}", "target": "{w}"}}\n' for w in words))
    return path


@pytest.fixture(params=KINDS)
def db_kind(request: pytest.FixtureRequest) -> str:
    """Every archive test runs on SQLite and on a real PostgreSQL server.

    ``make test`` starts the server (tests/pg_server.sh) and sets AGENTOPT_TEST_PG; run bare,
    pytest skips the PostgreSQL half and says so.
    """
    skip_without_postgres(request.param)
    return str(request.param)


@pytest.fixture
def db_url(db_kind: str, tmp_path: Path) -> Iterator[str]:
    """An empty archive URL of each kind; a PostgreSQL database is dropped afterwards."""
    url = new_archive(db_kind, tmp_path)
    yield url
    drop_archive(url)


DURATIONS = Path(__file__).with_name("durations.json")
"""Seconds each test file took in a whole run (``AGENTOPT_RECORD_DURATIONS=1 make test`` rewrites it)."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that asks for the session's model servers is a ``local_model`` test, marked or not, so
    ``make check`` never waits for one.

    Files run longest first, by their last recorded duration: pytest-xdist hands out whole files in
    this order, and a minute-long file handed out last would leave the other workers idle while it
    runs. A file not recorded yet goes last; a stale record costs balance, never a result."""
    for item in items:
        if "local_model" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.local_model)
    seconds = json.loads(DURATIONS.read_text()) if DURATIONS.exists() else {}
    items.sort(key=lambda item: -seconds.get(item.path.name, 0.0))


_recorded: dict[str, float] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Set-up, call and tear-down of every test, summed per file (on the xdist controller too)."""
    name = Path(report.location[0]).name
    _recorded[name] = _recorded.get(name, 0.0) + report.duration


def pytest_sessionfinish(session: pytest.Session) -> None:
    if os.environ.get("AGENTOPT_RECORD_DURATIONS") and _recorded and not hasattr(session.config, "workerinput"):
        ordered = dict(sorted(((k, round(v, 1)) for k, v in _recorded.items()), key=lambda kv: -kv[1]))
        DURATIONS.write_text(json.dumps(ordered, indent=1) + "\n")
