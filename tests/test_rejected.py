"""The proposals a strategy refuses are archive data: each one stored with its reason and step, read
back by ``queries.rejected_candidates`` and listed on the dashboard's campaign page and its report."""

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeEndpoint, task_aware_responder
from starlette.testclient import TestClient
from test_campaign import config

from agentopt.archive.errors import ArchiveError
from agentopt.archive import queries
from agentopt.archive.store import Archive, database_url
from agentopt.optimizer.engine.config import parse_config
from agentopt.optimizer.frontends.dashboard.app import create_app
from agentopt.optimizer.frontends.report import write_report
from agentopt.optimizer.engine.runner import run_campaigns
from agentopt.optimizer.engine.ui import SilentReporter

SHORT = "Hi."
TALKS = "This is what you should do now."
MENU = ["Echo the input word.", SHORT, TALKS]  # forward proposal i gets MENU[i % 3] (its sample number)
TALKS_REASON = "talks about the instruction instead of giving one"


def picky(body: dict[str, Any]) -> tuple[int, str | dict[str, Any]]:
    """The echo task's fake, with a proposer whose forward replies cycle through :data:`MENU`."""
    if "What was the instruction?" in body["messages"][-1]["content"]:
        return 200, MENU[body.get("seed", 0) % len(MENU)]
    return task_aware_responder(body)


@pytest.fixture
def endpoint() -> Iterator[FakeEndpoint]:
    served = FakeEndpoint(picky)
    yield served
    served.close()


@pytest.fixture
def refused(tmp_path: Path, echo_task_file: Path, endpoint: FakeEndpoint) -> tuple[Archive, str, dict[str, Any]]:
    """An APE campaign (3 subsamples x 2 samples: forward proposals 1 to 6) and its report's stats."""
    archive = Archive(database_url(str(tmp_path / "a.db")))
    [report] = run_campaigns(parse_config(config(echo_task_file, endpoint.url)), archive, SilentReporter())
    return archive, report.campaign_id, report.stats


def test_each_refused_proposal_is_stored_once_with_its_reason_and_step(
        refused: tuple[Archive, str, dict[str, Any]], echo_task_file: Path, endpoint: FakeEndpoint) -> None:
    archive, campaign_id, stats = refused
    expected = [(2, "too short", SHORT), (3, TALKS_REASON, TALKS), (5, "too short", SHORT), (6, TALKS_REASON, TALKS)]
    assert [(r.step, r.reason, r.proposal) for r in queries.rejected_candidates(archive, campaign_id)] == expected
    assert stats["rejected: too short"] == 2 and stats[f"rejected: {TALKS_REASON}"] == 2, "the counts agree"
    run_campaigns(parse_config(config(echo_task_file, endpoint.url)), archive, SilentReporter(), resume=campaign_id)
    replayed = queries.rejected_candidates(archive, campaign_id)
    assert [(r.step, r.reason, r.proposal) for r in replayed] == expected, "a resume replays them, stored once"
    assert [r.step for r in queries.rejected_candidates(archive, campaign_id, limit=1)] == [2]
    with pytest.raises(ArchiveError, match="no campaign"):
        queries.rejected_candidates(archive, "nosuchcampaign")


def test_the_campaign_page_and_its_report_list_them(refused: tuple[Archive, str, dict[str, Any]],
                                                    tmp_path: Path) -> None:
    archive, campaign_id, _ = refused
    page = TestClient(create_app(Archive(archive.url, create=False, read_only=True)),
                      base_url="http://127.0.0.1").get(f"/campaigns/{campaign_id}")
    assert page.status_code == 200
    listed = page.text.split('<table id="rejected">')[1].split("</table>")[0]
    assert listed.count("<tr>") == 1 + 4, "the header and one row per refused proposal"
    assert "too short" in listed and TALKS_REASON in listed and TALKS in listed
    report = write_report(archive, campaign_id, tmp_path / "report").read_text()
    assert TALKS_REASON in report.split('<table id="rejected">')[1]


def test_python_and_the_command_line_read_them_typed_and_refuse_an_unknown_campaign(
        refused: tuple[Archive, str, dict[str, Any]]) -> None:
    import agentopt
    from processes import cli

    archive, campaign_id, _ = refused
    rows = agentopt.Archive(archive.url).rejected(campaign_id)
    assert [(r.step, r.reason) for r in rows] == [(2, "too short"), (3, TALKS_REASON), (5, "too short"), (6, TALKS_REASON)]
    shown = cli("archive", "rejected", campaign_id, "--db", archive.url, "--json")
    assert shown.returncode == 0, shown.stderr
    assert [r["reason"] for r in json.loads(shown.stdout)] == [r.reason for r in rows]
    table = cli("archive", "rejected", campaign_id, "--db", archive.url, "--limit", "1")
    assert table.returncode == 0 and "too short" in table.stdout and TALKS_REASON not in table.stdout
    missing = cli("archive", "rejected", "nosuchcampaign", "--db", archive.url)
    assert missing.returncode != 0 and len(missing.stderr.strip().splitlines()) == 1 and "no campaign" in missing.stderr
