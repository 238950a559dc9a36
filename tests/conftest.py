import os
import sys
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
