"""The archive for use from Python: ``agentopt.Archive("sqlite:///agentopt.db").top(10, task="rag")``."""

from collections.abc import Iterable
from datetime import datetime

import networkx as nx

from agentopt.archive import queries, store
from agentopt.archive.paths import checked_url


class Archive(store.Archive):
    """The archive with its queries as methods: what ``agentopt archive ...`` prints, as typed records.

    ``url`` is a SQLAlchemy URL or a bare path, which means SQLite; ``None`` means what the command
    line uses, ``$AGENTOPT_DB`` or ``./agentopt.db``. Every method returns frozen dataclasses from
    :mod:`agentopt.archive.records`, each with ``as_dict()``, the JSON of the matching ``--json``.

    Opening reads by default (``create=False``), as the ``archive`` commands do: a missing, empty or
    foreign SQLite file is refused with one line and left as it was, so a mistyped path never shows
    an empty archive nor leaves a new file behind. Pass ``create=True`` to start a new archive, e.g.
    to hand to ``run_campaigns``, as ``agentopt run`` does. Like any archive, one at an older schema
    revision is refused until ``agentopt archive upgrade`` migrates it.
    """

    def __init__(self, url: str | None = None, create: bool = False) -> None:
        super().__init__(checked_url(url, must_exist=not create), create)

    def top(self, k: int = 10, split: str = "val", *, campaign: str | None = None, task: str | None = None,
            kind: str | None = None, strategy: str | None = None, since: datetime | None = None,
            until: datetime | None = None) -> list[queries.Ranked]:
        """The ``k`` best candidates on ``split`` by mean score (dates without a time zone are UTC)."""
        return queries.top(self, k, split, queries.Filters.of(
            campaign=campaign, task=task, kind=kind, strategy=strategy, since=since, until=until))

    def pareto(self, split: str = "val", *, campaign: str | None = None, task: str | None = None,
               kind: str | None = None, strategy: str | None = None, since: datetime | None = None,
               until: datetime | None = None) -> list[queries.Ranked]:
        """Candidates nothing beats on both score and tokens per example, cheapest first."""
        return queries.pareto(self, split, queries.Filters.of(
            campaign=campaign, task=task, kind=kind, strategy=strategy, since=since, until=until))

    def campaigns(self, task: str | None = None, ids: Iterable[str] = ()) -> list[queries.CampaignRow]:
        """Campaigns (all, on ``task``, or those of ``ids``), newest first, with size, best scores and spend."""
        return queries.campaigns(self, task, ids)

    def compare(self, task: str | None = None, ids: Iterable[str] = ()) -> list[queries.Comparison]:
        """Campaigns of one task side by side, each best candidate paired with the oldest one's on test."""
        return queries.compare(self, task, ids)

    def show(self, candidate_id: int) -> queries.CandidateRecord:
        """Everything stored about one candidate, per-example results and their feedback included."""
        return queries.show(self, candidate_id)

    def notes(self, campaign_id: str, kind: str | None = None,  # type: ignore[override]  # records, not rows: see below
              candidate_id: int | None = None) -> list[queries.NoteRecord]:
        """A campaign's notes as records (an unknown campaign is an error). This replaces the store's
        row accessor of the same name, whose rows :mod:`queries` reads through ``store.Archive``."""
        return queries.notes(self, campaign_id, kind, candidate_id)

    def rejected(self, campaign_id: str, limit: int | None = None) -> list[queries.Rejected]:
        """The proposals the campaign's strategy refused, with the reason, in the order refused."""
        return queries.rejected_candidates(self, campaign_id, limit)

    def lineage(self, candidate_id: int, descendants: bool = False) -> "nx.DiGraph[int]":  # quoted: see queries
        """The candidate's ancestry (and optionally descendants), edges parent → child, scores on nodes."""
        return queries.lineage(self, candidate_id, descendants)

    def diff(self, a: int, b: int) -> queries.Diff:
        """What changed from candidate A to B, and B - A on the examples both were scored on."""
        return queries.diff(self, a, b)

    def progress(self, campaign_id: str) -> queries.Progress:
        """How far a campaign has got: candidates, examples per split, the best so far."""
        return queries.progress(self, campaign_id)
