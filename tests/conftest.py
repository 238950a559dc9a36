import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

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


def _fresh_pg_database(server_url: str) -> Iterator[str]:
    """A new, empty database on the test server for one test, dropped afterwards."""
    from sqlalchemy import create_engine, make_url, text

    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty archive URL: every archive test runs on SQLite and on a real PostgreSQL server.

    ``make test`` starts the server (tests/pg_server.sh) and sets AGENTOPT_TEST_PG; run bare,
    pytest skips the PostgreSQL half and says so.
    """
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'archive.db'}"
        return
    server = os.environ.get("AGENTOPT_TEST_PG")
    if not server:
        pytest.skip("AGENTOPT_TEST_PG is not set (make test starts a PostgreSQL server and sets it)")
    yield from _fresh_pg_database(server)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that asks for the session's model servers is a ``local_model`` test, marked or not, so
    ``make check`` never waits for one."""
    for item in items:
        if "local_model" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.local_model)
