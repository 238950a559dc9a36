import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from databases import KINDS, drop_archive, new_archive, skip_without_postgres  # noqa: E402
from fakes import FakeEndpoint, task_aware_responder  # noqa: E402

from agentopt.agents.local_model import LocalModelServers  # noqa: E402


@pytest.fixture
def fake_endpoint() -> Iterator[FakeEndpoint]:
    endpoint = FakeEndpoint(task_aware_responder)
    yield endpoint
    endpoint.close()


@pytest.fixture(scope="session")
def local_model() -> Iterator[LocalModelServers]:
    """The real bundled model, one server for the whole session."""
    with LocalModelServers(n_servers=1, threads=os.cpu_count() or 1) as servers:
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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that asks for the session's model servers is a ``local_model`` test, marked or not, so
    ``make check`` never waits for one."""
    for item in items:
        if "local_model" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.local_model)
