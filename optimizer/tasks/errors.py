"""The tasks' errors: defined in the layer that raises them, on the base the CLI reports as one line."""

from agentopt.agents.runtime.errors import AgentoptError


class TaskError(AgentoptError):
    """A task name is unknown or a task file is malformed."""
