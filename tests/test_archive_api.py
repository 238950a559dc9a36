"""The Python API's archive: the queries as methods on an opened archive, answering what the
query functions (and so the CLI's --json) answer, without creating anything when only reading."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import networkx as nx
import pytest
from test_queries import filled, references, score  # noqa: F401  (filled and the module reference it copies: fixtures)

from agentopt.archive.errors import ArchiveError
from agentopt.agents.prompt import PromptAgent
from agentopt.archive import queries, store
from agentopt.archive.queries import Filters
from agentopt.archive.facade import Archive


def test_every_query_is_a_method_answering_what_the_query_answers(filled: dict) -> None:  # type: ignore[type-arg]  # noqa: F811
    archive, chain, ant = Archive(filled["url"]), filled["chain"], filled["ant"]
    assert isinstance(archive, store.Archive), "usable wherever an archive is, e.g. run_campaigns"
    assert [r.candidate_id for r in archive.top(3, task="antonyms")] == [chain[20], chain[18], chain[19]]
    assert archive.top(5, strategy="seed") == queries.top(archive, 5, "val", Filters(strategy="seed"))
    assert [r.candidate_id for r in archive.top(2, "test", campaign=ant)] == [chain[20], chain[0]]
    a_day_ago = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=1)  # no zone: UTC
    assert len(archive.top(50, since=a_day_ago)) == 23 and archive.top(50, until=a_day_ago) == []
    assert archive.top(5, kind="code") == []
    assert archive.pareto(task="antonyms") == queries.pareto(archive, "val", Filters(task="antonyms"))
    assert [c.name for c in archive.campaigns()] == ["third", "second", "first"]
    assert [c.name for c in archive.campaigns(ids=[ant])] == ["first"]
    assert [c.name for c in archive.campaigns(task="plural")] == ["third"]
    compared = archive.compare(task="antonyms")
    assert compared == queries.compare(archive, task="antonyms") and compared[0].test_vs_reference is not None
    archive.add_note(ant, "loss", {"text": "too literal"}, chain[20])
    archive.add_note(ant, "rejected", {"edit": "drop the demos"})
    shown = archive.show(chain[20])
    assert [n.kind for n in shown.notes] == ["loss"] and shown.as_dict() == queries.show(archive, chain[20]).as_dict()
    assert [(n.kind, n.candidate_id) for n in archive.notes(ant)] == [("loss", chain[20]), ("rejected", None)]
    assert [n.kind for n in archive.notes(ant, kind="rejected")] == ["rejected"]
    assert [n.kind for n in archive.notes(ant, candidate_id=chain[20])] == ["loss"]
    with pytest.raises(ArchiveError, match="no campaign 'nope'"):
        archive.notes("nope")
    graph = archive.lineage(chain[20])
    assert isinstance(graph, nx.DiGraph) and nx.dag_longest_path_length(graph) == 20
    assert set(archive.lineage(chain[10], descendants=True).nodes) == set(chain)
    assert archive.diff(chain[0], chain[20]) == queries.diff(archive, chain[0], chain[20])
    assert archive.progress(ant) == queries.progress(archive, ant)
    archive.engine.dispose()


def test_a_bare_path_is_sqlite_and_reading_creates_nothing(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    with pytest.raises(ArchiveError, match="no archive at"):
        Archive(str(db))
    assert list(tmp_path.iterdir()) == [], "a read leaves no file behind"
    db.write_bytes(b"")
    with pytest.raises(ArchiveError, match="empty file"):
        Archive(str(db))
    db.unlink()
    created = Archive(str(db), create=True)
    assert created.url == f"sqlite:///{db}" and created.campaigns() == []
    campaign = created.create_campaign("c", "antonyms", "ape", {})
    candidate, _ = created.add_candidate(campaign, PromptAgent(instruction="Opposite."), "ape")
    score(created, candidate, "val", [1.0, 0.0], tokens=10)
    created.engine.dispose()
    reader = Archive(str(db))
    assert [(r.candidate_id, r.mean) for r in reader.top()] == [(candidate, 0.5)]
    assert reader.progress(campaign).examples["val"].evaluated == 2
    reader.engine.dispose()


def test_without_a_url_it_opens_the_command_lines_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTOPT_DB", str(tmp_path / "env.db"))
    Archive(create=True).engine.dispose()
    assert Archive().url == f"sqlite:///{tmp_path / 'env.db'}"
