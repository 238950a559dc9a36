import json
import sqlite3
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fakes import FakeEndpoint
from processes import AGENTOPT, NEW_ARCHIVE_CANDIDATES, busy_cores, race_to_new_archives
from sqlalchemy import func, select
from test_cli import fake_config

from agentopt.agents.models.llm import Completion, Payer
from agentopt.agents.prompt import PromptAgent
from agentopt.archive import queries
from agentopt.archive.cache import SqlCallCache
from agentopt.archive.models import Campaign, Candidate, LLMCall, Result
from agentopt.archive.stats import bootstrap_ci
from agentopt.archive.store import Archive, ExampleOutcome, Paid, database_url


def outcome(example_id: str, score: float | None, error: str | None = None) -> ExampleOutcome:
    return ExampleOutcome(example_id, None if error else "out", score, error, {"llm_calls": 1, "prompt_tokens": 5})


def test_database_url_resolution(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("AGENTOPT_DB", raising=False)
    assert database_url() == "sqlite:///agentopt.db"
    monkeypatch.setenv("AGENTOPT_DB", "x.db")
    assert database_url() == "sqlite:///x.db"
    assert database_url("postgresql+psycopg://u@h/db") == "postgresql+psycopg://u@h/db"


def test_candidates_dedup_by_content_and_keep_lineage(db_url: str) -> None:
    archive = Archive(db_url)
    cid = archive.create_campaign("c", "task", "ape", {"k": 1})
    first, new = archive.add_candidate(cid, PromptAgent(instruction="Do it."), "ape")
    twin, twin_new = archive.add_candidate(cid, PromptAgent(instruction="  do IT. "), "ape")
    assert new and not twin_new and twin == first
    child, _ = archive.add_candidate(cid, PromptAgent(instruction="Do it well."), "ape", parents=[first, first])
    assert archive.parents(child) == [first]
    other = archive.create_campaign("c2", "task", "ape", {})
    assert archive.add_candidate(other, PromptAgent(instruction="Do it."), "ape")[1], "dedup is per campaign"


def test_results_are_idempotent_and_errors_are_not_scores(db_url: str) -> None:
    archive = Archive(db_url)
    cid = archive.create_campaign("c", "task", "ape", {})
    cand, _ = archive.add_candidate(cid, PromptAgent(instruction="Do it."), "ape")
    archive.add_result(cand, "val", outcome("val-1", 1.0))
    archive.add_result(cand, "val", outcome("val-1", 0.0))  # a repeat never overwrites a score
    archive.add_result(cand, "val", outcome("val-2", None, "LLMUnavailable: down"))
    archive.add_result(cand, "val", outcome("val-3", 0.0))
    assert archive.scored_examples(cand, "val") == {"val-1", "val-3"}
    summary = archive.update_evaluation(cand, "val")
    assert (summary.n, summary.n_errors, summary.mean) == (2, 1, 0.5)
    archive.add_result(cand, "val", outcome("val-2", 1.0))  # a retried error is replaced by its result
    summary = archive.update_evaluation(cand, "val")
    assert (summary.n, summary.n_errors) == (3, 0)
    assert archive.evaluations(cand)["val"].mean == summary.mean
    record = queries.show(archive, cand)
    assert record.evaluations["val"].n == 3 and len(record.results) == 3
    assert archive.usage_totals(cid)["llm_calls"] == 3
    ranked = queries.top(archive, 5, "val")
    assert [r.candidate_id for r in ranked] == [cand]


def test_bootstrap_ci_brackets_the_mean() -> None:
    mean, low, high = bootstrap_ci([1.0] * 30 + [0.0] * 70)
    assert mean == 0.3 and 0.18 < low < 0.3 < high < 0.42
    assert bootstrap_ci([1.0]) == (1.0, 1.0, 1.0)


def test_sql_call_cache_round_trip_and_ledger(db_url: str) -> None:
    archive = Archive(db_url)
    cache = SqlCallCache(archive)
    assert cache.get("k") is None
    cache.put("k", {"model": "m"}, Completion("hi", 3, 1, 0.2, "length"), Payer("c1", "task"))
    cache.put("k", {"model": "m"}, Completion("other", 3, 1, 0.2), Payer("c1", "task"))  # first write wins
    cache.put("p", {"model": "m"}, Completion("idea", 20, 8, 0.2), Payer("c1", "proposer"))
    assert cache.get("k") == Completion("hi", 3, 1, 0.2, "length")
    assert archive.spend("c1") == {"task": Paid(1, 3, 1), "proposer": Paid(1, 20, 8)}  # what the budget resumes from
    assert archive.spend("other") == {}


def test_concurrent_writers_lose_nothing_and_never_duplicate(db_url: str) -> None:
    """Eight writers race to store the same candidates, results and cache entries."""
    Archive(db_url)  # create the schema once; each writer then opens its own connection pool
    campaign = Archive(db_url).create_campaign("c", "task", "ape", {})
    agents = [PromptAgent(instruction=f"Instruction {i}.") for i in range(10)]

    def writer(seed: int) -> list[int]:
        archive, cache = Archive(db_url), SqlCallCache(Archive(db_url))
        ids = []
        for i in range(len(agents)):
            agent = agents[(i + seed) % len(agents)]
            candidate, _ = archive.add_candidate(campaign, agent, "ape")
            ids.append(candidate)
            for example in range(3):
                archive.add_result(candidate, "train", outcome(f"train-{example}", float(example % 2)))
                cache.put(f"key-{i}-{example}", {"model": "m"}, Completion("x", 1, 1, 0.1), Payer())
        archive.engine.dispose()
        return sorted(ids)

    with ThreadPoolExecutor(8) as pool:
        seen = list(pool.map(writer, range(8)))
    assert all(ids == seen[0] for ids in seen), "every writer got the same id for the same prompt"
    archive = Archive(db_url)
    with archive.session() as s:
        assert s.scalar(select(func.count(Candidate.id))) == 10
        assert s.scalar(select(func.count(Result.id))) == 30
        assert s.scalar(select(func.count(LLMCall.key))) == 30


@pytest.mark.slow
def test_campaign_processes_on_one_new_archive_lose_no_rows_on_a_loaded_machine(
        db_url: str, tmp_path: Path, fake_endpoint: FakeEndpoint, echo_task_file: Path) -> None:
    """Three processes create the schema at the same moment, then write side by side, while every
    core is busy: all finish, with every row and no lock error."""
    config = fake_config(tmp_path / "c.yaml", echo_task_file, fake_endpoint.url, "{name: ape, params: {"
                         "n_subsamples: 3, samples_per_subsample: 2, racing_budget: 24, mc_rounds: 1, top_k: 2}}")
    with busy_cores():
        procs = [subprocess.Popen([AGENTOPT, "run", str(config), "--db", db_url, "--json"], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(3)]
        outputs = [p.communicate(timeout=900) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [o[1] for o in outputs]
    assert not [err for _, err in outputs if "locked" in err]
    reports = [json.loads(out)[0] for out, _ in outputs]
    archive = Archive(db_url)
    with archive.session() as s:
        for report in reports:
            rows = s.scalar(select(func.count(Result.id)).join(Candidate, Candidate.id == Result.candidate_id)
                            .where(Candidate.campaign_id == report["campaign_id"]))
            assert rows == report["stats"]["examples evaluated"], "every evaluated example has its row"
            hashes = s.scalars(select(Candidate.content_hash).where(Candidate.campaign_id == report["campaign_id"])).all()
            assert len(hashes) == len(set(hashes))
    assert all(report["best_agent"] == reports[0]["best_agent"] for report in reports)
    assert [report["best_test"]["mean"] for report in reports] == [1.0] * 3


def test_notes_are_stored_once_per_campaign_and_filtered(db_url: str) -> None:
    archive = Archive(db_url)
    cid = archive.create_campaign("c", "task", "symbolic", {})
    cand, _ = archive.add_candidate(cid, PromptAgent(instruction="Do it."), "symbolic")
    archive.add_note(cid, "loss", {"text": "too terse", "score": 0.5}, cand)
    archive.add_note(cid, "loss", {"score": 0.5, "text": "too terse"}, cand)  # a replay: same note, any key order
    archive.add_note(cid, "rejected", {"edit": "drop the calc node"})
    archive.add_note(cid, "rejected", {"edit": "drop the calc node"})
    archive.add_note(cid, "loss", {"text": "too terse", "score": 0.5})  # same data, no candidate: another note
    other = archive.create_campaign("c2", "task", "symbolic", {})
    archive.add_note(other, "rejected", {"edit": "drop the calc node"})
    assert [(n.kind, n.candidate_id) for n in archive.notes(cid)] == [("loss", cand), ("rejected", None),
                                                                      ("loss", None)]
    assert [n.data for n in archive.notes(cid, candidate_id=cand)] == [{"text": "too terse", "score": 0.5}]
    assert [n.candidate_id for n in archive.notes(cid, kind="loss")] == [cand, None]
    assert [n.campaign_id for n in archive.notes(kind="rejected")] == [cid, other]
    assert archive.notes(other, kind="loss") == []
    assert [(n.kind, n.data) for n in queries.show(archive, cand).notes] == [("loss", {"text": "too terse",
                                                                                      "score": 0.5})]


def test_traces_round_trip_and_a_retry_replaces_the_failed_one(db_url: str) -> None:
    archive = Archive(db_url)
    cid = archive.create_campaign("c", "task", "symbolic", {})
    cand, _ = archive.add_candidate(cid, PromptAgent(instruction="Do it."), "symbolic")
    trace = [{"node": "think", "output": "2 + 2"}, {"node": "calc", "tool": "calculator", "output": "4"}]
    archive.add_result(cand, "val", ExampleOutcome("val-1", "4", 1.0, None, {}, trace=trace))
    archive.add_result(cand, "val", outcome("val-2", 1.0))
    archive.add_result(cand, "val", ExampleOutcome("val-3", None, None, "ToolError: bad input", {},
                                                   trace=[{"node": "think", "output": "?"}]))
    archive.add_result(cand, "val", ExampleOutcome("val-3", "5", 0.0, None, {}, trace=trace))
    assert [(r.example_id, r.trace) for r in archive.results(cand)] == [("val-1", trace), ("val-2", None),
                                                                        ("val-3", trace)]
    assert [r.trace for r in queries.show(archive, cand).results] == [trace, None, trace]


def test_feedback_is_stored_beside_the_score_and_shown(db_url: str) -> None:
    archive = Archive(db_url)
    cid = archive.create_campaign("c", "task", "gepa", {})
    cand, _ = archive.add_candidate(cid, PromptAgent(instruction="Do it."), "gepa")
    archive.add_result(cand, "val", ExampleOutcome("val-1", "cold", 0.5, None, {}, feedback="half right: no article"))
    archive.add_result(cand, "val", outcome("val-2", 1.0))
    archive.add_result(cand, "val", ExampleOutcome("val-3", None, None, "LLMUnavailable: down", {},
                                                   feedback="a failed try's feedback"))
    archive.add_result(cand, "val", ExampleOutcome("val-3", "hot", 0.0, None, {}, feedback="wrong word"))
    assert [r.feedback for r in archive.results(cand)] == ["half right: no article", None, "wrong word"]
    record = queries.show(archive, cand)
    assert [(r.score, r.feedback) for r in record.results] == [(0.5, "half right: no article"), (1.0, None),
                                                               (0.0, "wrong word")]
    assert record.as_dict()["results"][0]["feedback"] == "half right: no article"


@pytest.mark.slow
def test_writers_creating_new_sqlite_archives_at_one_instant_never_see_a_lock_error(tmp_path: Path) -> None:
    """Three processes open each of 30 new archives at the same instant, on a loaded machine, and
    each write a campaign. SQLite turns a new file into a WAL database without waiting on a busy
    handler, so this is where a second process used to be told the archive was locked (a window of
    milliseconds that real processes hit now and then; test_schema holds it open to pin it down)."""
    urls = [f"sqlite:///{tmp_path / f'a{i}.db'}" for i in range(30)]
    with busy_cores():
        errors = race_to_new_archives(urls, writers=3)
    assert errors == []
    for url in urls:
        archive = Archive(url)
        with archive.session() as s:
            assert s.scalars(select(Campaign.status)).all() == ["finished"] * 3
            assert s.scalar(select(func.count(Candidate.id))) == 3 * NEW_ARCHIVE_CANDIDATES
            assert s.scalar(select(func.count(Result.id))) == 3 * NEW_ARCHIVE_CANDIDATES
            assert s.scalar(select(func.count(LLMCall.key))) == 3 * NEW_ARCHIVE_CANDIDATES
        archive.engine.dispose()


def test_a_sqlite_write_after_a_read_waits_for_another_writer(tmp_path: Path) -> None:
    """A session reads, another process commits and then holds the write lock, the session writes: it
    must wait for the lock. Had its transaction begun at the read, WAL mode could not upgrade that
    stale snapshot: SQLITE_BUSY at once, which no busy timeout cures (two writers deadlocked)."""
    db = tmp_path / "a.db"
    archive = Archive(f"sqlite:///{db}")
    campaign = archive.create_campaign("c", "task", "ape", {})
    other = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    with archive.session() as s:
        row = s.get_one(Campaign, campaign)
        other.execute("UPDATE campaigns SET active_s = 5")
        other.execute("BEGIN IMMEDIATE")
        release = threading.Timer(0.3, other.commit)
        release.start()
        row.summary = {"written": "after the other writer"}
    release.join()
    other.close()
    found = archive.campaign(campaign)
    assert (found.summary, found.active_s) == ({"written": "after the other writer"}, 5)
