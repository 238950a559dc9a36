"""Everything a campaign tried, stored: the one place the other layers read and write history.

- ``store``: the ``Archive`` writer (campaigns, candidates, results, the call cache) over SQLAlchemy,
  on SQLite or PostgreSQL; ``engine`` and ``schema`` open databases and migrate them (Alembic,
  ``migrations/``); ``models`` are the ORM tables, imported by no module outside this package.
- ``records``: the value types that cross layers (``EvalSummary``, ``ExampleOutcome`` and the rows
  queries return); ``lifecycle``: the claim / heartbeat / finish lease campaigns and sweeps share.
- ``queries``: every read, for the CLI, status, dashboard, reports and experiments; ``stats``,
  ``sweep_stats``, ``calibration``: the statistics over what was read.
- ``export``: a stored agent as an installable package; ``facade``: ``agentopt.Archive``; ``errors``:
  ``ArchiveError``, raised here and nowhere else.
"""
