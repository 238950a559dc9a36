"""Agent kinds are an open set: a kind defined outside agentopt (``toy_kind``), registered through
the public API, runs a campaign and is shown, reported and exported with no edit to agentopt."""

import importlib
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import toy_kind
from fakes import FakeEndpoint

import agentopt
from agentopt.agents.runtime.errors import AgentoptError
from agentopt.agents.kinds import KINDS, kind_of

ROOT = Path(__file__).resolve().parents[1]
WORDS = ["apple", "river", "stone", "cloud", "maple", "otter", "piano", "lemon", "tiger", "ocean"]


@pytest.fixture
def registered() -> Iterator[None]:
    toy_kind.register()
    yield
    KINDS.pop("echo", None)


def test_a_kind_from_outside_runs_a_campaign_and_is_shown_reported_and_exported(
        registered: None, tmp_path: Path, fake_endpoint: FakeEndpoint) -> None:
    task = agentopt.Task.from_records([{"input": w, "target": w} for w in WORDS], name="echo")
    fake = agentopt.Role(model="fake", base_url=fake_endpoint.url, max_attempts=1)
    with agentopt.optimize(task, seed="Answer.", strategy=agentopt.strategies.make("echo_search"),
                           models=agentopt.Models(task=fake, proposer=fake), archive=str(tmp_path / "a.db"),
                           evaluation=agentopt.Evaluation(backend="threads"), progress=False) as result:
        assert result.best.agent == toy_kind.EchoAgent(prefix="") and result.best.test.mean == 1.0
        assert result.best.run("zebra") == "zebra"
        shown = agentopt.Archive(str(tmp_path / "a.db")).show(result.best.candidate_id)
        assert shown.kind == "echo" and shown.payload == {"kind": "echo", "prefix": ""}
        lineage = agentopt.Archive(str(tmp_path / "a.db")).lineage(result.best.candidate_id)
        assert lineage.nodes[result.best.candidate_id]["label"] == "echo with ''"
        assert "Echoes its input after the prefix" in (result.report(tmp_path / "report")).read_text()
        package = result.export(tmp_path / "pkg")
    assert (package / "README.md").read_text().count("Echoes its input after the prefix") == 1
    [module] = [p.parent.name for p in package.glob("*/agent.json")]
    sys.path.insert(0, str(package))
    try:
        exported = importlib.import_module(module)
        assert exported.run("hello") == "hello", "the package answers through the kind's own runtime"
    finally:
        sys.path.remove(str(package))


def test_an_unknown_kind_is_one_line_naming_how_to_register_it() -> None:
    with pytest.raises(AgentoptError, match="unknown agent kind 'nope'.*register_kind"):
        kind_of({"kind": "nope"})


def test_nothing_outside_the_kind_modules_branches_on_a_kind_name() -> None:
    pattern = re.compile(r"""(==|!=)\s*["'](prompt|code|graph|program)["']|["'](prompt|code|graph|program)["']\s*(==|!=)""")
    found = [f"{path.relative_to(ROOT)}:{n}" for folder in ("agents", "archive", "optimizer")
             for path in (ROOT / folder).rglob("*.py") for n, line in enumerate(path.read_text().splitlines(), 1)
             if pattern.search(line)]
    assert found == []
