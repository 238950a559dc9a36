"""`agentopt report`: a static HTML page with its PNG plots, rendered by headless Chromium from the
file system; the plots and the table of top candidates must be on the page, and a screenshot is
saved for review (tests/artifacts/report.png)."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from fakes import FakeEndpoint
from processes import agentopt
from test_campaign import config
from typer.testing import CliRunner

from agentopt.archive.store import Archive, database_url
from agentopt.optimizer.cli import app
from agentopt.optimizer.config import parse_config
from agentopt.optimizer.runner import run_campaigns
from agentopt.optimizer.ui import SilentReporter

ARTIFACTS = Path(__file__).parent / "artifacts"
PLOTS = ["best_vs_calls.png", "best_vs_cost.png", "scores_by_strategy.png", "lineage.png"]
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars"]


@pytest.fixture
def campaign(tmp_path: Path, fake_endpoint: FakeEndpoint, echo_task_file: Path) -> tuple[Path, str]:
    db = tmp_path / "a.db"
    [report] = run_campaigns(parse_config(config(echo_task_file, fake_endpoint.url)), Archive(database_url(str(db))),
                             SilentReporter())
    return db, report.campaign_id


def chromium() -> str:
    found = os.environ.get("AGENTOPT_TEST_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail("no Chromium: `make test` installs Debian's chromium package (tests/chromium.sh)")
    return found


def test_report_renders_in_headless_chromium(tmp_path: Path, campaign: tuple[Path, str]) -> None:
    db, campaign_id = campaign
    out = tmp_path / "report"
    done = CliRunner().invoke(app, ["report", campaign_id, "--db", str(db), "--out", str(out)])
    assert done.exit_code == 0, done.output
    assert all((out / name).stat().st_size > 1000 for name in PLOTS)
    browser, profile = chromium(), tmp_path / "profile"
    common = [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--allow-file-access-from-files"]
    dom = subprocess.run([*common, "--dump-dom", (out / "index.html").as_uri()], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert all(f'src="{name}"' in dom for name in PLOTS)
    assert '<table id="top">' in dom and dom.count("<tr>") >= 3 and "Echo" in dom
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report.png"
    subprocess.run([*common, f"--screenshot={shot}", "--window-size=1200,2400", (out / "index.html").as_uri()],
                   capture_output=True, timeout=120, check=True)
    import matplotlib.image

    pixels = matplotlib.image.imread(str(shot))[..., :3]
    orange = ((abs(pixels[..., 0] - 1.0) < 0.05) & (abs(pixels[..., 1] - 0.5) < 0.05)
              & (abs(pixels[..., 2] - 0.055) < 0.06)).sum()
    assert orange > 500, "the lineage plot's top candidates (orange) are visible in the rendered page"


def test_report_of_an_unknown_campaign_is_a_one_line_error(tmp_path: Path, campaign: tuple[Path, str]) -> None:
    db, _ = campaign
    done = agentopt("report", "nope", "--db", str(db), "--out", str(tmp_path / "r"))
    assert done.returncode == 2 and "no campaign 'nope'" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "r").exists()
