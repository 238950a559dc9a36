"""Ctrl-C on a running campaign, through a real ``agentopt run`` process against a fake endpoint whose
calls turn slow: the first Ctrl-C says at once that it is finishing the calls in flight and that a
second stops now; the line it ends with names the real campaign to resume; a second Ctrl-C stops at once.
Nothing stored is lost either way."""

import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeEndpoint, task_aware_responder
from processes import AGENTOPT, stored_results, wait_until

pytestmark = pytest.mark.slow

SLOW_S = 20.0  # each task call once the campaign has stored some results: the in-flight calls a Ctrl-C waits for


class Run:
    """``agentopt run`` in the background, its stderr collected line by line as it comes."""

    def __init__(self, config: Path, db: Path) -> None:
        self.proc = subprocess.Popen([AGENTOPT, "run", str(config), "--db", str(db)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stderr or ()), daemon=True)
        self.reader.start()

    def said(self, needle: str) -> bool:
        return any(needle in line for line in self.lines)

    def ended(self, timeout: float) -> str:
        self.proc.wait(timeout=timeout)
        self.reader.join(timeout=10)
        return "".join(self.lines)


@pytest.fixture
def slowing(tmp_path: Path, echo_task_file: Path) -> Iterator[tuple[Run, FakeEndpoint, Path]]:
    """A campaign running against an endpoint whose task calls take SLOW_S once 3 results are stored,
    caught with a call in flight."""
    db, slow, release = tmp_path / "a.db", threading.Event(), threading.Event()

    def respond(body: dict[str, Any]) -> tuple[int, str | dict[str, Any]]:
        if slow.is_set() and "variation" not in body["messages"][-1]["content"]:
            release.wait(SLOW_S)
        return task_aware_responder(body)

    endpoint = FakeEndpoint(respond)
    config = tmp_path / "c.yaml"
    config.write_text(f"tasks: [{echo_task_file}]\nmodels:\n  task: {{model: fake, base_url: '{endpoint.url}'}}\n"
                      f"  proposer: {{model: fake, base_url: '{endpoint.url}'}}\nevaluation: {{backend: threads}}\n")
    run = Run(config, db)
    try:
        assert wait_until(lambda: stored_results(db) >= 3, 120), "the campaign never got going"
        slow.set()
        assert wait_until(lambda: endpoint.active > 0, 30), "no call in flight"
        yield run, endpoint, db
    finally:
        if run.proc.poll() is None:
            run.proc.kill()
        release.set()
        endpoint.close()


def campaign_rows(db: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(db) as conn:
        assert conn.execute("pragma integrity_check").fetchone() == ("ok",)
        rows = conn.execute("select id, status from campaigns").fetchall()
    conn.close()
    return rows


def test_first_ctrl_c_says_it_is_finishing_and_names_the_campaign(slowing: tuple[Run, FakeEndpoint, Path]) -> None:
    run, _, db = slowing
    stored = stored_results(db)
    run.proc.send_signal(signal.SIGINT)
    assert wait_until(lambda: run.said("finishing in-flight calls"), SLOW_S / 2), run.lines
    assert run.proc.poll() is None, "it is still waiting for the slow call"
    assert run.said("Ctrl-C again to stop now")
    stderr = run.ended(SLOW_S * 4 + 60)
    assert run.proc.returncode == 130 and "Traceback" not in stderr, stderr
    [(campaign, status)] = campaign_rows(db)
    assert status == "interrupted"
    assert f"`agentopt resume {campaign} --db sqlite:///{db}`" in stderr and "CAMPAIGN_ID" not in stderr, stderr
    assert stored_results(db) >= stored


def test_second_ctrl_c_stops_at_once_and_loses_nothing(slowing: tuple[Run, FakeEndpoint, Path]) -> None:
    run, _, db = slowing
    stored = stored_results(db)
    run.proc.send_signal(signal.SIGINT)
    assert wait_until(lambda: run.said("Ctrl-C again to stop now"), SLOW_S / 2), run.lines
    pressed = time.monotonic()
    run.proc.send_signal(signal.SIGINT)
    stderr = run.ended(SLOW_S * 4)
    assert time.monotonic() - pressed < SLOW_S / 2, "the second Ctrl-C waited for the calls in flight"
    assert run.proc.returncode == 130 and "Traceback" not in stderr, stderr
    assert "stopped at once" in stderr and "kept in" in stderr, stderr
    [(campaign, _)] = campaign_rows(db)
    assert campaign in stderr and "CAMPAIGN_ID" not in stderr, stderr
    assert stored_results(db) >= stored
