"""Archive queries, through the Python API and the CLI's --json, on SQLite and PostgreSQL.

The CLI's queries run in this process (:func:`processes.cli`): reading an archive and printing it does
not depend on being a separate process. One usage error still goes through a real ``agentopt``
process, for the exit code and the one-line stderr a shell sees.
"""

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import networkx as nx
import pytest
from databases import copy_archive, drop_archive, new_archive
from processes import agentopt, cli

from agentopt.archive.errors import ArchiveError
from agentopt.agents.graph import GraphAgent, Node
from agentopt.agents.prompt import Demo, PromptAgent
from agentopt.archive import queries
from agentopt.archive.queries import Filters
from agentopt.archive.store import Archive, ExampleOutcome


def score(archive: Archive, candidate: int, split: str, scores: list[float], tokens: int) -> None:
    for i, value in enumerate(scores):
        archive.add_result(candidate, split, ExampleOutcome(f"{split}-{i}", "out", value, None,
                                                            {"llm_calls": 1, "footprint_tokens": tokens}))
    archive.update_evaluation(candidate, split)


def fill(archive: Archive) -> dict[str, Any]:
    """Two tasks; on antonyms a 21-deep chain of Monte Carlo variations and a campaign to compare."""
    ant = archive.create_campaign("first", "antonyms", "ape", {})
    chain = []
    for depth in range(21):
        agent = PromptAgent(instruction=f"Give the antonym, version {depth}.",
                            demos=(Demo(input="hot", output="cold"),) * (depth % 3))
        candidate, _ = archive.add_candidate(ant, agent, "seed" if depth == 0 else "ape", chain[-1:])
        score(archive, candidate, "val", [1.0] * (depth // 2) + [0.0] * (10 - depth // 2), tokens=20 + 10 * (depth % 3))
        chain.append(candidate)
    archive.finish_campaign(ant, "finished", {"best_candidate_id": chain[-1], "stats": {"task_llm_calls": 7}})
    score(archive, chain[-1], "test", [1.0, 1.0, 0.0, 1.0], tokens=40)
    score(archive, chain[0], "test", [0.0, 1.0, 0.0, 0.0], tokens=20)
    again = archive.create_campaign("second", "antonyms", "ape", {})
    other, _ = archive.add_candidate(again, PromptAgent(instruction="Opposite."), "ape")
    score(archive, other, "val", [1.0] * 3 + [0.0] * 7, tokens=15)
    score(archive, other, "test", [0.0, 1.0, 0.0, 0.0], tokens=15)
    archive.finish_campaign(again, "finished", {"best_candidate_id": other, "stats": {
        "task_llm_calls": 5, "proposer_llm_calls": 2, "judge_llm_calls": 3}})
    plural = archive.create_campaign("third", "plural", "ape", {})
    best_plural, _ = archive.add_candidate(plural, PromptAgent(instruction="Pluralise."), "ape")
    score(archive, best_plural, "val", [1.0] * 12, tokens=12)
    return {"chain": chain, "ant": ant, "again": again, "plural": plural, "other": other, "best_plural": best_plural}


class References:
    """One filled archive per backend for the whole module, built the first time a test asks for it.

    Filling takes hundreds of writes; a copy of the result takes milliseconds. Built lazily per
    backend rather than as a parametrized module fixture, so a shuffled test order cannot make pytest
    tear a reference down and fill it again between tests of alternating backends."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.built: dict[str, tuple[str, dict[str, Any]]] = {}

    def get(self, kind: str) -> tuple[str, dict[str, Any]]:
        """The reference's URL and its ids."""
        if kind not in self.built:
            url = new_archive(kind, self.root, prefix="ref")
            self.built[kind] = (url, {})  # dropped at the end even if filling fails
            archive = Archive(url)
            ids = fill(archive)
            archive.engine.dispose()  # a PostgreSQL template must have no sessions; SQLite's WAL is folded in
            self.built[kind] = (url, ids)
        return self.built[kind]

    def drop(self) -> None:
        for url, _ in self.built.values():
            drop_archive(url)


@pytest.fixture(scope="module")
def references(tmp_path_factory: pytest.TempPathFactory) -> Iterator[References]:
    refs = References(tmp_path_factory.mktemp("reference"))
    yield refs
    refs.drop()


@pytest.fixture
def filled(db_kind: str, references: References, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A private copy of the module's reference archive (see :func:`fill`): tests add notes to it."""
    reference, ids = references.get(db_kind)
    url = copy_archive(reference, tmp_path)
    archive = Archive(url)
    try:
        yield {"url": url, "archive": archive, **ids}
    finally:
        archive.engine.dispose()
        drop_archive(url)


def test_top_k_with_filters(filled: dict) -> None:  # type: ignore[type-arg]
    archive, chain = filled["archive"], filled["chain"]
    assert [r.candidate_id for r in queries.top(archive, 1)] == [filled["best_plural"]]
    on_task = queries.top(archive, 3, "val", Filters(task="antonyms"))
    assert [r.candidate_id for r in on_task] == [chain[20], chain[18], chain[19]], "ties: more examples, then older"
    assert on_task[0].ci_low <= on_task[0].mean <= on_task[0].ci_high and on_task[0].n == 10
    assert [r.candidate_id for r in queries.top(archive, 5, "val", Filters(strategy="seed"))] == [chain[0]]
    assert [r.candidate_id for r in queries.top(archive, 5, "val", Filters(campaign=filled["again"]))] == [filled["other"]]
    assert queries.top(archive, 5, "val", Filters(kind="code")) == []
    now = datetime.now(UTC)
    assert len(queries.top(archive, 50, "val", Filters(since=now - timedelta(hours=1)))) == 23
    assert queries.top(archive, 50, "val", Filters(until=now - timedelta(hours=1))) == []
    assert [r.candidate_id for r in queries.top(archive, 5, "test")][:1] == [chain[20]]


def test_pareto_front_trades_score_against_tokens(filled: dict) -> None:  # type: ignore[type-arg]
    front = queries.pareto(filled["archive"], "val", Filters(task="antonyms"))
    points = [(r.tokens_mean, r.mean) for r in front]
    assert points == sorted(points) and len(points) == len({p[0] for p in points}), "cheaper first, each strictly better"
    assert front[0].candidate_id == filled["other"] and front[-1].candidate_id == filled["chain"][20]
    everyone = queries.top(filled["archive"], 100, "val", Filters(task="antonyms"))
    for r in everyone:  # nothing outside the front beats a front point on both axes
        assert not any(f.tokens_mean > r.tokens_mean and f.mean < r.mean for f in front if f is not r) or r in front


def test_lineage_of_a_depth_20_candidate_in_three_formats(filled: dict) -> None:  # type: ignore[type-arg]
    chain = filled["chain"]
    graph = queries.lineage(filled["archive"], chain[20])
    assert nx.dag_longest_path_length(graph) == 20 and set(graph.nodes) == set(chain)
    assert graph.nodes[chain[0]]["strategy"] == "seed" and graph.nodes[chain[20]]["val_score"] == 1.0
    middle = queries.lineage(filled["archive"], chain[10], descendants=True)
    assert set(middle.nodes) == set(chain)
    dot = cli("archive", "lineage", str(chain[20]), "--db", filled["url"])
    assert dot.returncode == 0 and dot.stdout.startswith("digraph lineage {")
    assert dot.stdout.count("->") == 20 and f"{chain[19]} -> {chain[20]};" in dot.stdout
    graphml = cli("archive", "lineage", str(chain[20]), "--format", "graphml", "--db", filled["url"])
    assert len(nx.parse_graphml(graphml.stdout).edges) == 20
    as_json = cli("archive", "lineage", str(chain[20]), "--format", "json", "--db", filled["url"])
    assert len(nx.node_link_graph(json.loads(as_json.stdout), edges="edges").edges) == 20
    unknown = cli("archive", "lineage", "999999", "--db", filled["url"])
    assert unknown.returncode == 2 and "no candidate 999999" in unknown.stderr


def test_diff_shows_payload_changes_and_paired_scores(filled: dict) -> None:  # type: ignore[type-arg]
    chain = filled["chain"]
    result = queries.diff(filled["archive"], chain[0], chain[20])
    assert set(result.payload_changes) == {"demos", "instruction"}
    assert "+Give the antonym, version 20." in result.payload_changes["instruction"]
    val = result.splits["val"]
    assert val.shared_examples == 10 and val.paired is not None and val.paired.b_minus_a == pytest.approx(1.0)
    assert val.paired.b_better == 10 and val.paired.a_better == 0
    assert val.a is not None and val.a.candidate_id == chain[0] and val.b is not None and val.b.mean == 1.0
    test = result.splits["test"].paired
    assert test is not None and test.b_minus_a == pytest.approx(0.5) and test.b_minus_a_ci[0] <= 0.5 <= test.b_minus_a_ci[1]
    reported = json.loads(cli("archive", "diff", str(chain[0]), str(chain[20]), "--json", "--db", filled["url"]).stdout)
    assert reported == json.loads(json.dumps(result.as_dict()))
    assert set(reported) == {"A", "B", "relation", "payload_changes", "splits"} and reported["A"] == chain[0]
    assert set(reported["splits"]["val"]) == {"A", "B", "shared_examples", "b_minus_a", "b_minus_a_ci", "b_better",
                                              "a_better"} and reported["splits"]["val"]["b_better"] == 10
    assert reported["splits"]["val"]["A"]["n"] == 10 and isinstance(reported["splits"]["test"]["b_minus_a_ci"], list)
    text = cli("archive", "diff", str(chain[0]), str(chain[20]), "--db", filled["url"])
    assert text.returncode == 0 and "version 20" in text.stdout


def test_campaigns_and_comparing_campaigns_on_one_task(filled: dict) -> None:  # type: ignore[type-arg]
    rows = queries.campaigns(filled["archive"])
    assert [r.name for r in rows] == ["third", "second", "first"]
    first = rows[-1]
    assert first.candidates == 21 and first.best_val == 1.0 and first.llm_calls == 7
    assert first.best_candidate_id == filled["chain"][20] and first.best_test_ci == (None, None)
    assert rows[1].llm_calls == 10, "task, proposer and LLM-judge calls all count"
    as_json = first.as_dict()
    assert list(as_json) == ["id", "name", "task", "strategy", "status", "created_at", "candidates", "best_val",
                             "best_test", "best_test_ci", "seed_test", "best_candidate_id", "llm_calls", "wall_s",
                             "stats"]
    assert as_json["created_at"] == first.created_at.isoformat() and as_json["best_test_ci"] == [None, None]
    compared = queries.compare(filled["archive"], task="antonyms")
    second = next(r for r in compared if r.name == "second")
    assert second.test_vs_reference is not None and second.test_vs_reference.reference == filled["ant"]
    assert second.test_vs_reference.delta == pytest.approx(-0.5) and second.test_vs_reference.shared_examples == 4
    assert next(r for r in compared if r.name == "first").test_vs_reference is None, "the reference itself"
    reported = json.loads(cli("archive", "compare", "--task", "antonyms", "--json", "--db", filled["url"]).stdout)
    assert [r["name"] for r in reported] == ["second", "first"]
    assert reported == json.loads(json.dumps([r.as_dict() for r in compared]))
    assert list(reported[0])[-1] == "test_vs_reference" and set(reported[0]["test_vs_reference"]) == {
        "reference", "delta", "ci", "shared_examples"}
    mixed = cli("archive", "compare", filled["ant"], filled["plural"], "--db", filled["url"])
    assert mixed.returncode == 2 and "of one task" in mixed.stderr
    listed = cli("archive", "campaigns", "--task", "plural", "--json", "--db", filled["url"])
    assert [r["name"] for r in json.loads(listed.stdout)] == ["third"]


def test_top_and_pareto_cli_json(filled: dict) -> None:  # type: ignore[type-arg]
    top = cli("archive", "top", "-k", "2", "--task", "antonyms", "--strategy", "ape", "--json", "--db", filled["url"])
    assert [r["candidate_id"] for r in json.loads(top.stdout)] == [filled["chain"][20], filled["chain"][18]]
    front = cli("archive", "pareto", "--task", "antonyms", "--usd-per-1m-tokens", "0.5", "--json", "--db", filled["url"])
    rows = json.loads(front.stdout)
    assert rows[0]["usd_per_1k_examples"] == pytest.approx(rows[0]["tokens_mean"] * 0.5 / 1000)


@pytest.mark.slow
def test_a_bad_filter_exits_2_from_the_installed_command(filled: dict) -> None:  # type: ignore[type-arg]
    """The exit code and the one stderr line a shell sees, from a process of its own."""
    bad = agentopt("archive", "top", "--since", "yesterday", "--db", filled["url"])
    assert bad.returncode == 2 and "--since" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def _chain(names: list[str], tools: dict[str, str] | None = None) -> GraphAgent:
    """A linear graph agent over ``names``, listed in reverse so the label must follow the edges."""
    nodes = [Node(name=n, template="{" + (names[i - 1] if i else "input") + "}", tool=(tools or {}).get(n))
             for i, n in enumerate(names)]
    return GraphAgent(nodes=tuple(reversed(nodes)), edges=tuple(zip(names, names[1:])), output=names[-1])


def test_graph_candidates_are_labelled_by_their_nodes_in_order(db_url: str) -> None:
    archive = Archive(db_url)
    campaign = archive.create_campaign("g", "arithmetic", "symbolic", {})
    parent, _ = archive.add_candidate(campaign, _chain(["think", "calc", "answer"], {"calc": "calculator"}), "seed")
    child, _ = archive.add_candidate(campaign, _chain([f"step{i:02d}" for i in range(20)]), "symbolic", [parent])
    graph = queries.lineage(archive, child)
    assert graph.nodes[parent]["label"] == "graph: think → calc[calculator] → answer"
    assert len(graph.nodes[child]["label"]) == 60 and graph.nodes[child]["label"].startswith("graph: step00 → step01")
    assert graph.nodes[child]["label"].endswith("...")


def test_notes_of_an_unknown_campaign_are_an_error(filled: dict) -> None:  # type: ignore[type-arg]
    archive, chain = filled["archive"], filled["chain"]
    archive.add_note(filled["ant"], "loss", {"text": "too literal"}, chain[3])
    [note] = queries.notes(archive, filled["ant"])
    assert (note.candidate_id, note.kind, note.data) == (chain[3], "loss", {"text": "too literal"})
    assert note.as_dict() == {"id": note.id, "candidate_id": chain[3], "kind": "loss", "data": {"text": "too literal"},
                              "created_at": note.created_at.isoformat()}
    assert queries.notes(archive, filled["again"]) == []
    with pytest.raises(ArchiveError, match="no campaign 'nope'"):
        queries.notes(archive, "nope")


def test_show_and_progress_records_keep_their_json_shape(filled: dict) -> None:  # type: ignore[type-arg]
    archive, chain = filled["archive"], filled["chain"]
    archive.add_note(filled["ant"], "loss", {"text": "too literal"}, chain[20])
    record = queries.show(archive, chain[20])
    assert record.parents == (chain[19],) and record.evaluations["test"].n == 4 and record.task == "antonyms"
    assert [n.kind for n in record.notes] == ["loss"] and len(record.results) == 14
    assert record.results[0] == queries.ResultRecord("val", "val-0", "out", 1.0, None, None, None)
    shown = json.loads(cli("archive", "show", str(chain[20]), "--json", "--db", filled["url"]).stdout)
    assert shown == json.loads(json.dumps(record.as_dict()))
    assert shown["notes"] == [{"kind": "loss", "data": {"text": "too literal"}}] and shown["parents"] == [chain[19]]
    assert set(shown["results"][0]) == {"split", "example_id", "output", "score", "feedback", "error", "trace"}
    assert shown["evaluations"]["val"] == {"candidate_id": chain[20], "split": "val", "n": 10, "n_errors": 0,
                                           "mean": 1.0, "ci_low": 1.0, "ci_high": 1.0}
    progress = queries.progress(archive, filled["ant"])
    assert (progress.candidates, progress.twins, progress.errors) == (21, 0, 0)
    assert progress.examples["val"] == queries.SplitProgress(210, 0) and progress.examples["test"].evaluated == 8
    assert progress.best is not None and progress.best.candidate_id == chain[20]
    assert progress.as_dict()["examples"]["val"] == {"evaluated": 210, "errors": 0}
    assert progress.as_dict()["best"] == progress.best.as_dict()


def test_filters_of_reads_dates_without_a_zone_as_utc() -> None:
    aware = datetime(2026, 1, 1, tzinfo=UTC)
    filters = Filters.of(task="t", since=datetime(2026, 1, 1), until=aware + timedelta(days=1))
    assert filters == Filters(task="t", since=aware, until=aware + timedelta(days=1))
    assert Filters.of() == Filters()
