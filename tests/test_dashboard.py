"""`agentopt dashboard`: every page over a campaign's archive (SQLite and PostgreSQL), unknown ids as 404
pages, hostile text escaped, a database session that cannot write, the export download, and the CLI's
one-line errors. The real-model, real-browser test is in test_dashboard_local.py."""

import io
import socket
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from subprocess import CompletedProcess

import pytest
from databases import copy_archive, drop_archive, new_archive
from fakes import FakeEndpoint, task_aware_responder
from processes import agentopt, cli
from sqlalchemy import func, select
from starlette.testclient import TestClient
from test_campaign import config

from agentopt.agents.prompt import PromptAgent
from agentopt.archive.models import Candidate
from agentopt.archive.store import Archive, ExampleOutcome
from agentopt.optimizer.engine.config import parse_config
from agentopt.optimizer.frontends.dashboard.app import create_app
from agentopt.optimizer.engine.runner import run_campaigns
from agentopt.optimizer.engine.ui import SilentReporter

Campaigned = tuple[str, str, int, int]
"""An archive's URL, its campaign, the campaign's best candidate and the hostile candidate added to it."""

HOSTILE = ('<script>window.__pwned = 1; alert("script")</script> <img src=x onerror="window.__pwned = 2; '
           'alert(\'img\')"> <a href="javascript:window.__pwned = 3">click me</a>')
HOSTILE_STRATEGY = '<script>window.__pwned = 4</script><img src=x onerror="window.__pwned = 5">'
"""Short enough for the strategy column; the one stored text the campaign page's chart labels are built from."""


def add_hostile_candidate(archive: Archive, campaign_id: str, parent: int) -> int:
    """A candidate whose instruction, strategy, rationale, answers and notes are all hostile markup."""
    agent = PromptAgent(instruction=f"Echo the word. {HOSTILE}")
    candidate_id, _ = archive.add_candidate(campaign_id, agent, HOSTILE_STRATEGY, [parent],
                                            rationale=f"because {HOSTILE}")
    for i, split in enumerate(("train", "val")):
        archive.add_result(candidate_id, split, ExampleOutcome(f"{split}-{i}", HOSTILE, 1.0, None, {}))
        archive.update_evaluation(candidate_id, split)
    archive.add_result(candidate_id, "val", ExampleOutcome("val-x", None, None, f"failed: {HOSTILE}", {}))
    archive.add_note(campaign_id, "loss", {"loss": HOSTILE, "link": "javascript:alert(1)"}, candidate_id)
    return candidate_id


@dataclass(frozen=True)
class Reference:
    kind: str
    campaigned: Campaigned
    pristine: str
    """The URL copies are made from: for SQLite the reference itself (read by the online backup), for
    PostgreSQL a template database no test connects to (CREATE DATABASE ... TEMPLATE refuses a source
    with open connections, and the tests read the reference through engines they leave open)."""


REFERENCES = pytest.StashKey[dict[str, Reference]]()


def build_reference(kind: str, workdir: Path, endpoint: FakeEndpoint, task: Path,
                    pytest_config: pytest.Config) -> Reference:
    """A finished campaign with a hostile candidate; its PostgreSQL databases are dropped when the session
    ends (the tests leave read-only engines on it open, as a dashboard would)."""
    url = new_archive(kind, workdir, prefix="dashboard_ref")
    pytest_config.add_cleanup(partial(drop_archive, url))
    archive = Archive(url)
    [report] = run_campaigns(parse_config(config(task, endpoint.url)), archive, SilentReporter())
    hostile = add_hostile_candidate(archive, report.campaign_id, report.best_candidate_id)
    archive.engine.dispose()
    campaigned = url, report.campaign_id, report.best_candidate_id, hostile
    if kind == "sqlite":
        return Reference(kind, campaigned, url)
    pristine = copy_archive(url, workdir, prefix="dashboard_ref")
    pytest_config.add_cleanup(partial(drop_archive, pristine))
    return Reference(kind, campaigned, pristine)


@pytest.fixture
def reference(db_kind: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
              fake_endpoint: FakeEndpoint, echo_task_file: Path) -> Reference:
    """Run once a session per database kind, by the first test that asks, with its endpoint and task
    file (a campaign takes seconds, and these tests used to run one each)."""
    references = request.config.stash.setdefault(REFERENCES, {})
    if db_kind not in references:
        references[db_kind] = build_reference(db_kind, tmp_path_factory.mktemp("reference"), fake_endpoint,
                                              echo_task_file, request.config)
    return references[db_kind]


@pytest.fixture
def reference_campaign(reference: Reference) -> Campaigned:
    """The reference campaign, shared by every test here: open it read-only (``create=False,
    read_only=True``) and write nothing to it. A test that writes asks for :func:`campaign_copy`."""
    return reference.campaigned


@pytest.fixture
def campaign_copy(reference: Reference, tmp_path: Path) -> Iterator[Campaigned]:
    """This test's own copy of the reference campaign, to write to. SQLite's online backup reads a
    consistent snapshot whatever other connections do, which a copy of the file's bytes would not."""
    _, campaign_id, best, hostile = reference.campaigned
    url = copy_archive(reference.pristine, tmp_path)
    try:
        yield url, campaign_id, best, hostile
    finally:
        drop_archive(url)


@pytest.fixture
def client(reference_campaign: Campaigned) -> Iterator[TestClient]:
    archive = Archive(reference_campaign[0], create=False, read_only=True)
    yield TestClient(create_app(archive), base_url="http://127.0.0.1")
    archive.engine.dispose()


def test_every_page_answers_and_unknown_ids_are_404_pages(client: TestClient,
                                                           reference_campaign: Campaigned) -> None:
    _, campaign_id, best, hostile = reference_campaign
    pages = {"/": "Campaigns", f"/campaigns/{campaign_id}": "What the search did",
             f"/campaigns/{campaign_id}?sort=val&desc=1&page=1": "Candidates", f"/candidates/{best}": "Lineage",
             f"/compare?a={best}&b={hostile}": "Where B does better", "/compare?task=echo": "test vs reference",
             "/?task=echo&strategy=ape&since=2020-01-01": campaign_id}
    for url, marker in pages.items():
        page = client.get(url)
        assert page.status_code == 200 and marker in page.text, url
        assert "default-src 'self'" in page.headers["content-security-policy"]
    live = client.get(f"/api/campaigns/{campaign_id}").json()
    assert live["state"] == "finished" and live["timeline"]["best"]["best"][-1] == 1.0
    assert live["candidates"] == 7 and live["dedup"]["functional_twins"] >= 1
    for url in ("/campaigns/nope", "/candidates/999999", "/candidates/abc", "/campaigns/..%2F..%2Fetc",
                "/api/campaigns/nope", "/nowhere"):
        page = client.get(url)
        assert page.status_code == 404 and "not found" in page.text and "Traceback" not in page.text, url
    for url in ("/?page=x", "/?since=yesterday", f"/campaigns/{campaign_id}?sort=payload", "/compare"):
        page = client.get(url)
        assert page.status_code == 400 and "Traceback" not in page.text, url
    assert client.get("/static/plotly.min.js").status_code == 200


def test_hostile_text_is_inert_on_every_page(client: TestClient, reference_campaign: Campaigned) -> None:
    _, campaign_id, best, hostile = reference_campaign
    for url in (f"/candidates/{hostile}", f"/campaigns/{campaign_id}", f"/compare?a={best}&b={hostile}",
                f"/candidates/{best}"):
        text = client.get(url).text
        assert "<script>window" not in text and "<img src=x" not in text and 'href="javascript:' not in text, url
    page = client.get(f"/candidates/{hostile}").text
    assert page.count("&lt;script&gt;window.__pwned") >= 4, "instruction, rationale, answers, error and note shown"
    live = client.get(f"/api/campaigns/{campaign_id}").text
    assert "&lt;script&gt;window.__pwned = 4" in live, "the hostile strategy reaches the chart labels"
    assert "<script>" not in live and "\\u003cscript" not in live, "chart labels are escaped for plotly.js too"


def test_the_dashboards_session_cannot_write(campaign_copy: Campaigned) -> None:
    url, campaign_id, _, _ = campaign_copy
    writer = Archive(url)
    with writer.session() as s:
        before = s.scalar(select(func.count(Candidate.id)))
    reader = Archive(url, create=False, read_only=True)
    with pytest.raises(Exception, match="(?i)read.only|readonly"):
        reader.add_candidate(campaign_id, PromptAgent(instruction="sneaked in"), "ape")
    with writer.session() as s:
        assert s.scalar(select(func.count(Candidate.id))) == before
    reader.engine.dispose()
    writer.engine.dispose()


@pytest.fixture(scope="module")
def builtin_campaign(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, int]:
    """A campaign on a built-in task, whose best candidate the dashboard exports; run once for both
    database kinds' cases (it is SQLite in both), read-only by both."""
    url = f"sqlite:///{tmp_path_factory.mktemp('builtin') / 'builtin.db'}"
    endpoint = FakeEndpoint(task_aware_responder)
    try:
        archive = Archive(url)
        [report] = run_campaigns(parse_config(config(Path("singular_to_plural"), endpoint.url)), archive,
                                 SilentReporter())
        archive.engine.dispose()
    finally:
        endpoint.close()
    return url, report.best_candidate_id


def test_the_export_download_is_a_package_built_in_a_removed_temp_dir(
        client: TestClient, reference_campaign: Campaigned, builtin_campaign: tuple[str, int]) -> None:
    _, _, on_file_task, _ = reference_campaign
    refused = client.get(f"/candidates/{on_file_task}/export")
    assert refused.status_code == 409 and "agentopt export" in refused.text, "a task file is not opened to export"
    url, best = builtin_campaign
    client = TestClient(create_app(Archive(url, create=False, read_only=True)), base_url="http://127.0.0.1")
    before = set(Path(tempfile.gettempdir()).glob("agentopt-dashboard-export-*"))
    download = client.get(f"/candidates/{best}/export")
    assert download.status_code == 200 and download.headers["content-type"] == "application/gzip"
    assert f'filename="agentopt-candidate-{best}.tar.gz"' in download.headers["content-disposition"]
    with tarfile.open(fileobj=io.BytesIO(download.content)) as tar:
        names = tar.getnames()
    assert f"agentopt-candidate-{best}/pyproject.toml" in names and any(n.endswith("README.md") for n in names)
    assert set(Path(tempfile.gettempdir()).glob("agentopt-dashboard-export-*")) == before


def assert_one_line_refusal(done: CompletedProcess[str]) -> None:
    assert done.returncode == 2 and "Traceback" not in done.stderr, (done.args, done.stderr)
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


@pytest.mark.slow
def test_a_dashboard_refusal_exits_2_from_the_installed_command(tmp_path: Path) -> None:
    """The exit code a shell sees, from a process of its own; the other cases run in this process."""
    notes = tmp_path / "notes.txt"
    notes.write_text("not a database")
    assert_one_line_refusal(agentopt("dashboard", "--db", str(notes)))


def test_dashboard_cli_errors_are_one_line(tmp_path: Path) -> None:
    """Through the CLI's entry point in this process (``cli``): nothing in these cases is about a process."""
    notes = tmp_path / "notes.txt"
    notes.write_text("not a database")
    for args in (("--db", str(notes)), ("--db", str(tmp_path / "missing.db")), ("--port", "0")):
        assert_one_line_refusal(cli("dashboard", *args))
    db = tmp_path / "a.db"
    Archive(f"sqlite:///{db}").engine.dispose()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = cli("dashboard", "--db", str(db), "--port", str(port))
    assert done.returncode == 2 and done.stdout == "", done
    assert done.stderr.strip().splitlines() == [f"error: cannot serve on 127.0.0.1:{port}: Address already in use "
                                                "(pick another with --port)"], "only the error, no 'serving' first"
    help_text = cli("dashboard", "--help").stdout
    assert "ssh -L" in help_text and "127.0.0.1" in help_text


def test_the_python_api_serves_the_same_app(reference_campaign: Campaigned) -> None:
    import agentopt

    url, campaign_id, _, _ = reference_campaign
    page = TestClient(agentopt.dashboard_app(url), base_url="http://127.0.0.1").get(f"/campaigns/{campaign_id}")
    assert page.status_code == 200 and "What the search did" in page.text


def test_code_is_highlighted_and_a_graph_agent_is_drawn_with_its_tools() -> None:
    from agentopt.agents.code_agent import CodeAgent
    from agentopt.agents.graph import GraphAgent, Node
    from agentopt.optimizer.frontends.dashboard.app import code_html
    from agentopt.optimizer.frontends.dashboard.views import agent_sections, graph_drawing

    code = CodeAgent(name="solver", thought="adds <b>two</b> numbers", code="def forward(x):\n    return '<script>'\n")
    sections = agent_sections(code.payload())
    [block] = [s for s in sections if s["type"] == "code"]
    rendered = str(code_html(block["text"], block["language"]))
    assert block["language"] == "python" and '<span class="k">def</span>' in rendered
    assert "&lt;script&gt;" in rendered and "<script>" not in rendered
    assert graph_drawing(code.payload()) is None
    graph = GraphAgent(nodes=(Node(name="expr", template="Write an expression for: {input}", tool="calculator"),
                              Node(name="answer", template="Result {expr}. Answer <b>{input}</b>")),
                       edges=(("expr", "answer"),), output="answer")
    drawn = graph_drawing(graph.payload())
    assert drawn is not None and drawn["label"] == ["expr [calculator]", "answer"]
    assert drawn["x"] == [0.0, 1.0] and drawn["edges"] == [[0.0, 0.0, 1.0, 0.0]]
    assert "&lt;b&gt;" in drawn["text"][1], "node templates are escaped for the chart's hover text"


def test_read_only_opening_changes_nothing_and_a_foreign_host_is_refused(tmp_path: Path) -> None:
    import sqlite3

    from agentopt.archive.schema import SchemaError, head_revision

    db = tmp_path / "a.db"
    Archive(f"sqlite:///{db}").engine.dispose()
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA journal_mode=DELETE")
        conn.execute("UPDATE agentopt_version SET version_num = '0001'")
    with pytest.raises(SchemaError, match="agentopt archive upgrade"):
        Archive(f"sqlite:///{db}", create=False, read_only=True)
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",), "a reader leaves the journal mode"
        conn.execute("UPDATE agentopt_version SET version_num = ?", (head_revision(),))
    reader = Archive(f"sqlite:///{db}", create=False, read_only=True)
    guarded = TestClient(create_app(reader, hosts=["127.0.0.1", "localhost"]), base_url="http://127.0.0.1:8765")
    assert guarded.get("/").status_code == 200
    assert guarded.get("/", headers={"host": "attacker.example"}).status_code == 400, "DNS rebinding"


def test_query_edge_cases_are_400_or_404(client: TestClient, reference_campaign: Campaigned) -> None:
    _, campaign_id, best, _ = reference_campaign
    assert client.get(f"/compare?a={best}").status_code == 400, "b is missing"
    assert client.get("/?page=²").status_code == 400 and client.get(f"/?page={2**70}").status_code == 400
    assert client.get(f"/candidates/{2**70}").status_code == 404
    assert client.get(f"/compare?campaigns={campaign_id},nope").status_code == 404
    assert client.get("/compare?task=no_such_task").status_code == 404
    today = client.get(f"/campaigns/{campaign_id}").text.split("started</th><td>")[1][:10]
    assert campaign_id in client.get(f"/?since={today}&until={today}").text, "the 'to' day is included"
