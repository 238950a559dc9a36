"""The ``agentopt`` command: typer commands for campaigns, sweeps and the archive (``main``), started
by ``entry``, which turns every AgentoptError into one line and a non-zero exit."""
