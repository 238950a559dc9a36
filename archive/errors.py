"""The archive's errors: defined in the layer that raises them, on the base the CLI reports as one line."""

from agentopt.agents.runtime.errors import AgentoptError


class ArchiveError(AgentoptError):
    """An archive lookup failed: unknown id, or a database that cannot be opened."""
