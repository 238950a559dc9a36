"""One SQLite archive used by several processes at once, each holding connections while others come
and go: no row a writer committed may be lost (POSIX locks belong to a process, and closing any
descriptor of the file outside SQLite drops the locks the process's connections rely on)."""

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from processes import Repeated, archive_query

from agentopt.archive.store import Archive, ExampleOutcome

# A process that keeps one archive open (its pooled connection stays open between commands) and
# does what it is told on stdin, one command a line, answering each on stdout.
WORKER = textwrap.dedent("""
    import sys
    from agentopt.agents.prompt import PromptAgent
    from sqlalchemy import func, select
    from agentopt.archive.models import Result
    from agentopt.archive.paths import checked_url
    from agentopt.archive.store import Archive, ExampleOutcome

    url = sys.argv[1]
    archive = Archive(url)
    campaign = archive.create_campaign("w", "task", "ape", {})
    candidate, _ = archive.add_candidate(campaign, PromptAgent(instruction=sys.argv[2]), "ape")
    for line in sys.stdin:
        command, *args = line.split()
        if command == "write":
            for i in range(int(args[0])):
                archive.add_result(candidate, "train", ExampleOutcome(f"{args[1]}-{i}", "o", 1.0, None, {}))
            print("written", flush=True)
        elif command == "count":
            with archive.session() as s:
                print(s.scalar(select(func.count()).select_from(Result)), flush=True)
        elif command == "check":
            checked_url(url)
            print("checked", flush=True)
        elif command == "close":
            archive.engine.dispose()
            print("closed", flush=True)
            break
""")


class Worker:
    def __init__(self, url: str, name: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", WORKER, url, name], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)

    def ask(self, command: str) -> str:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline().strip()
        assert answer, f"the worker died on {command!r}"
        return answer

    def close(self) -> None:
        self.ask("close")
        assert self.proc.wait(timeout=60) == 0


def integrity_and_results(db: Path) -> tuple[str, int]:
    with sqlite3.connect(db) as conn:
        check = conn.execute("PRAGMA integrity_check").fetchone()[0]
        return check, conn.execute("select count(*) from results").fetchone()[0]


@pytest.mark.slow
def test_checking_the_path_while_holding_connections_loses_no_row_of_another_process(tmp_path: Path) -> None:
    """The issue's sequence: A writes 100 rows and checks the path; B opens and closes the archive;
    A writes 100 more; C writes 50. Before the fix B deleted the WAL under A: C saw 100 rows, and 100 vanished."""
    db = tmp_path / "a.db"
    url = f"sqlite:///{db}"
    Archive(url).engine.dispose()
    a = Worker(url, "a")
    try:
        a.ask("write 100 a1")
        assert a.ask("check") == "checked"
        b = Worker(url, "b")
        b.close()
        a.ask("write 100 a2")
        c = Worker(url, "c")
        assert c.ask("count") == "200", "C sees every row A committed"
        c.ask("write 50 c")
        c.close()
    finally:
        a.close()
    assert integrity_and_results(db) == ("ok", 250)


@pytest.mark.slow
def test_archive_objects_opened_and_closed_in_a_writing_process_lose_nothing(tmp_path: Path) -> None:
    """The same from the side of one process: it writes, opens and drops other archive objects on the
    same file (what a second ``optimize`` or a dashboard beside a campaign does) while another process
    comes and goes."""
    from agentopt.agents.prompt import PromptAgent
    from agentopt.archive.facade import Archive as QueryArchive

    db = tmp_path / "a.db"
    url = f"sqlite:///{db}"
    archive = Archive(url)
    campaign = archive.create_campaign("w", "task", "ape", {})
    candidate, _ = archive.add_candidate(campaign, PromptAgent(instruction="x"), "ape")
    written = 0
    for round_ in range(5):
        for i in range(20):
            archive.add_result(candidate, "train", ExampleOutcome(f"{round_}-{i}", "o", 1.0, None, {}))
        written += 20
        QueryArchive(url).engine.dispose()
        other = Worker(url, f"o{round_}")
        other.ask("write 10 o")
        other.close()
        written += 10
    archive.engine.dispose()
    assert integrity_and_results(db) == ("ok", written)


TINY_APE = dict(n_subsamples=2, demos_per_subsample=4, samples_per_subsample=2, candidate_demos=2, batch_size=3,
                pulls_per_round=2, racing_budget=12, mc_rounds=1, mc_top=1, mc_samples=1, mc_budget=3, top_k=2)


def stored_rows(db: Path, campaign_id: str) -> dict[str, int]:
    """What one campaign stored, table by table, read through SQLite."""
    with sqlite3.connect(db) as conn:
        return {
            "candidates": conn.execute("select count(*) from candidates where campaign_id = ?", (campaign_id,)).fetchone()[0],
            "results": conn.execute("select count(*) from results join candidates on candidates.id = results.candidate_id "
                                    "where candidates.campaign_id = ?", (campaign_id,)).fetchone()[0],
            "llm_calls": conn.execute("select count(*) from llm_calls where campaign_id = ?", (campaign_id,)).fetchone()[0],
        }


@pytest.mark.local_model
@pytest.mark.cluster
def test_two_campaigns_in_one_process_on_ray_keep_every_row(tmp_path: Path) -> None:
    """The notebook pattern: ``optimize`` twice in one process, one SQLite archive, Ray evaluation and
    the bundled model, while CLI queries open and close the archive. Before the fix, the second
    ``optimize``'s path check dropped the first archive object's locks and a query deleted the WAL
    under the writer."""
    import agentopt

    db = tmp_path / "a.db"
    models = agentopt.Models(task=agentopt.Role(model="local", max_tokens=16),
                             proposer=agentopt.Role(model="local", temperature=0.9, max_tokens=40))
    evaluation = agentopt.Evaluation(backend="ray", workers=2, val_size=6, test_size=6)
    results, rows = [], {}
    with Repeated(lambda: archive_query(str(db)) if db.exists() else None, pause_s=1.0) as queries:
        for task in ("singular_to_plural", "antonyms"):
            result = agentopt.optimize(task, strategy=agentopt.strategies.APE(**TINY_APE), models=models,
                                       archive=f"sqlite:///{db}", evaluation=evaluation, progress=False)
            results.append(result)
            rows[result.campaign_id] = stored_rows(db, result.campaign_id)
    assert queries.runs > 0 and not queries.failures, queries.failures
    with sqlite3.connect(db) as conn:
        assert conn.execute("select status from campaigns order by created_at").fetchall() == [("finished",)] * 2
    for result in results:
        assert rows[result.campaign_id] == stored_rows(db, result.campaign_id), "a finished campaign lost rows"
        assert rows[result.campaign_id]["results"] > 0 and rows[result.campaign_id]["llm_calls"] > 0
    check, _ = integrity_and_results(db)
    assert check == "ok"
