"""`agentopt report`: the dashboard's campaign page frozen into a folder, rendered by headless Chromium from
the file system: its four charts draw (the lineage of the top 5 labelled) (plotly.js copied next to it), the header is a table rather than
a JSON dump, a free endpoint gets no dollar axis, and the seed is set against the best on test. A
screenshot is saved for review (tests/artifacts/report.png)."""

import re
import subprocess
from pathlib import Path

import pytest
from browser import FLAGS, chromium
from fakes import FakeEndpoint
from processes import agentopt, cli
from test_campaign import config

from agentopt.archive.store import Archive, database_url
from agentopt.optimizer.engine.config import parse_config
from agentopt.optimizer.engine.runner import run_campaigns
from agentopt.optimizer.engine.ui import SilentReporter

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).parent / "artifacts"
ASSETS = ["index.html", "plotly.min.js", "dashboard.js", "dashboard.css"]


@pytest.fixture(scope="module")
def campaigns_run() -> dict[str, tuple[Path, str]]:
    """The campaign the tests here report on, once run (by the first test that asks)."""
    return {}


@pytest.fixture
def campaign(campaigns_run: dict[str, tuple[Path, str]], tmp_path_factory: pytest.TempPathFactory,
             fake_endpoint: FakeEndpoint, echo_task_file: Path) -> tuple[Path, str]:
    """One campaign for the module, not one a test: a report only reads its archive."""
    if "echo" not in campaigns_run:
        db = tmp_path_factory.mktemp("report-campaign") / "a.db"
        archive = Archive(database_url(str(db)))
        [report] = run_campaigns(parse_config(config(echo_task_file, fake_endpoint.url)), archive, SilentReporter())
        archive.engine.dispose()
        campaigns_run["echo"] = db, report.campaign_id
    return campaigns_run["echo"]


def test_report_renders_in_headless_chromium(tmp_path: Path, campaign: tuple[Path, str]) -> None:
    db, campaign_id = campaign
    out = tmp_path / "report"
    done = cli("report", campaign_id, "--db", str(db), "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert all((out / name).stat().st_size > 1000 for name in ASSETS)
    browser, profile = chromium(), tmp_path / "profile"
    common = [browser, *FLAGS, f"--user-data-dir={profile}", "--allow-file-access-from-files",
              "--virtual-time-budget=10000"]
    dom = subprocess.run([*common, "--dump-dom", (out / "index.html").as_uri()], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert 'data-charts="4"' in dom, "the timeline, per-strategy, Pareto and lineage charts all drew"
    assert dom.count('class="main-svg"') >= 4
    assert re.search(r'<g class="textpoint"[^>]*><text[^>]*>#\d+ \d+%</text>', dom), "lineage nodes carry id and score"
    assert '<table id="facts"' in dom and "{" not in dom.split('<table id="facts"')[1].split("</table>")[0]
    assert "no dollar axis" in dom, "a free endpoint gets no dollar axis"
    tests = dom.split('<table id="test-scores"')[1].split("</table>")[0]
    assert "seed agent" in tests and "best agent" in tests and "best − seed" in tests
    assert '<table id="top">' in dom and "Echo" in dom
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report.png"
    subprocess.run([*common, f"--screenshot={shot}", "--window-size=1300,2400", (out / "index.html").as_uri()],
                   capture_output=True, timeout=120, check=True)
    assert shot.stat().st_size > 50_000


def test_report_of_an_unknown_campaign_is_a_one_line_error(tmp_path: Path, campaign: tuple[Path, str]) -> None:
    """A real process: this file's one check of the exit code a shell sees (the render test runs in this one)."""
    db, _ = campaign
    done = agentopt("report", "nope", "--db", str(db), "--out", str(tmp_path / "r"))
    assert done.returncode == 2 and "no campaign 'nope'" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "r").exists()
