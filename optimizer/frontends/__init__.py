"""What a person uses: the ``agentopt`` command line (``cli/``), the dashboard, reports and status."""
