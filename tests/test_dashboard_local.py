"""`agentopt dashboard` in headless Chromium over a campaign the real model runs: the campaign page
updates while the campaign runs, every page renders its charts once it is done, a hostile candidate
runs no script, and the downloaded package installs and replays. Screenshots of the main pages are
kept in tests/artifacts/ (dashboard-*.png)."""

import sqlite3
import subprocess
import tarfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from browser import Browser
from processes import AGENTOPT, assert_installed_and_replayed, install_exported, wait_until
from test_dashboard import add_hostile_candidate
from test_end_to_end import TINY

from agentopt.agents.models.local_model import LocalModelServers, free_port
from agentopt.archive import queries
from agentopt.archive.store import Archive

pytestmark = [pytest.mark.local_model, pytest.mark.browser]

ARTIFACTS = Path(__file__).parent / "artifacts"


def campaign_config() -> str:
    """test_end_to_end's tiny campaign, racing longer (so it is seen running) on threads."""
    config = yaml.safe_load(TINY)
    config["name"] = "watched"
    config["strategy"]["params"].update(n_subsamples=3, racing_budget=24)
    config["evaluation"] = {"backend": "threads", "workers": 2, "val_size": 8, "test_size": 8}
    config["budget"] = {"task": {"calls": 2000}}
    return yaml.safe_dump(config)


TRACED = "document.getElementById('timeline').data.reduce((n, t) => n + (t.x ? t.x.length : 0), 0)"


def _campaign_started(db: Path) -> bool:
    if not db.exists():
        return False
    try:
        with sqlite3.connect(db) as conn:
            return conn.execute("select count(*) from results").fetchone()[0] > 0
    except sqlite3.OperationalError:
        return False


@pytest.fixture
def dashboard(tmp_path: Path) -> Iterator[tuple[str, Path, subprocess.Popen[str]]]:
    """A campaign started in the background on the real model, and the dashboard serving its archive."""
    (tmp_path / "c.yaml").write_text(campaign_config())
    db = tmp_path / "a.db"
    run = subprocess.Popen([AGENTOPT, "run", str(tmp_path / "c.yaml"), "--db", str(db), "--quiet"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    port = free_port()
    server = None
    try:
        assert wait_until(lambda: _campaign_started(db), timeout=600), "the campaign never got going"
        server = subprocess.Popen([AGENTOPT, "dashboard", "--db", str(db), "--port", str(port)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        url = f"http://127.0.0.1:{port}"
        assert wait_until(lambda: _answers(url), timeout=60), "the dashboard never answered"
        yield url, db, run
    finally:
        for proc in (server, run):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=60)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as page:
            return page.status == 200
    except OSError:
        return False


def test_the_dashboard_in_chromium_over_a_real_campaign(tmp_path: Path, local_model: LocalModelServers,
                                                        dashboard: tuple[str, Path, subprocess.Popen[str]]) -> None:
    url, db, run = dashboard
    with sqlite3.connect(db) as conn:
        [(campaign_id,)] = conn.execute("select id from campaigns").fetchall()
    browser = Browser(tmp_path / "profile")
    try:
        browser.open(f"{url}/campaigns/{campaign_id}")
        assert browser.eval("document.getElementById('live-state').textContent") == "running"
        first = browser.eval(TRACED)
        browser.wait_for(f"Number(document.body.dataset.updates || 0) >= 2 && {TRACED} > {first}", timeout=600)
        grown = browser.eval(TRACED)
        stdout, stderr = run.communicate(timeout=1200)
        assert run.returncode == 0, stderr[-2000:]
        browser.wait_for("document.getElementById('live-state').textContent === 'finished'", timeout=30)
        assert browser.eval(TRACED) >= grown, "the page followed the campaign to its end without a reload"
        assert browser.dialogs == []

        archive = Archive(f"sqlite:///{db}")
        summary = archive.campaign(campaign_id).summary
        best, seed = summary["best_candidate_id"], summary["seed_test"]["candidate_id"]
        pages = {"campaigns": ("/", 0), "campaign": (f"/campaigns/{campaign_id}", 4),
                 "candidate": (f"/candidates/{best}", 1), "compare": (f"/compare?a={seed}&b={best}", 0),
                 "compare-task": ("/compare?task=singular_to_plural", 0)}
        for name, (path, charts) in pages.items():
            browser.open(url + path)
            assert int(browser.eval("document.body.dataset.charts")) == charts, name
            assert browser.eval("document.title").endswith("agentopt"), name
            browser.screenshot(ARTIFACTS / f"dashboard-{name}.png")
        browser.open(f"{url}/campaigns/{campaign_id}")
        refused = sum(n for key, n in summary["stats"].items() if key.startswith("rejected: "))
        assert len(queries.rejected_candidates(archive, campaign_id)) == refused, "each refusal counted is listed"
        listed = "document.querySelectorAll('#rejected tbody tr').length"
        assert browser.eval(listed) == max(refused, 1), "a row per refused proposal, or one saying none was"
        browser.eval("document.querySelector('[data-axis=s]').click()")
        assert browser.eval("document.getElementById('timeline').layout.xaxis.title.text") == "seconds since the start"

        hostile = add_hostile_candidate(archive, campaign_id, best)
        archive.engine.dispose()
        browser.open(f"{url}/candidates/{hostile}")
        text = browser.eval("document.body.innerText")
        assert "<script>window.__pwned" in text and "onerror=" in text, "the hostile text is shown as text"
        assert browser.eval("window.__pwned === undefined") and browser.dialogs == [], "and none of it ran"
        assert browser.eval("document.querySelectorAll('a[href^=\"javascript\"], img[onerror], script:not([src]):not([type])').length") == 0
        browser.screenshot(ARTIFACTS / "dashboard-hostile.png")

        browser.open(f"{url}/campaigns/nope")
        assert browser.eval("document.title").startswith("404")

        browser.open(f"{url}/candidates/{best}")
        href = browser.eval("document.getElementById('export').href")
    finally:
        browser.close()
    package = tmp_path / "download.tar.gz"
    with urllib.request.urlopen(href, timeout=120) as answer:
        package.write_bytes(answer.read())
    with tarfile.open(package) as tar:
        tar.extractall(tmp_path / "unpacked", filter="data")
    [folder] = (tmp_path / "unpacked").iterdir()
    steps = install_exported(folder, tmp_path / "installed", local_model.endpoints[0].base_url)
    assert_installed_and_replayed(steps)
