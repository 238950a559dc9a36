"""The errors of the agents layer, and the base every layer's errors derive from.

The CLI turns any :class:`AgentoptError` into one clear line and a non-zero exit, so user-facing
problems (bad config, bad data, unreachable endpoint) must raise a subclass of it, never a bare
exception whose traceback would leak to the user. Standard library only: ``agentopt export``
copies this module into packages, next to the sandbox that raises these errors.
"""


class AgentoptError(Exception):
    """Base of every error agentopt reports to the user as a single line."""


class ConfigError(AgentoptError):
    """A campaign config, CLI argument or option value is invalid."""



class LLMError(AgentoptError):
    """An LLM call failed for good: retries are spent or the reply is unusable.

    Raised instead of returning an empty answer, so a failure is recorded as an error and never
    scored as a wrong answer.
    """


class LLMUnavailable(LLMError):
    """The endpoint could not be reached or kept failing (timeouts, 429, 5xx) after retries."""


class LLMBadReply(LLMError):
    """The endpoint answered, but with no usable text (empty, missing or malformed body)."""


class LLMRefused(LLMError):
    """The endpoint answered, and would answer the same again: it refused the request (401, 403 or
    another 4xx but 429) or replied without a message. Never retried: another try is paid for
    nothing, so a campaign does not run the example again either."""



class LLMEmptyReply(LLMBadReply, LLMRefused):
    """The endpoint answered with nothing (an empty message, or a completion without one);
    deterministic, so it is recorded rather than retried."""


class BudgetExhausted(AgentoptError):
    """A hard budget is spent, so no new LLM call may start. Not an :class:`LLMError`: nothing
    failed, and the example it stopped is left unevaluated rather than recorded as an error."""

    def __init__(self, budget: str) -> None:
        super().__init__(f"budget {budget} is spent")
        self.budget = budget

    def __reduce__(self) -> tuple[type, tuple[str]]:  # survives pickling through Ray
        return (type(self), (self.budget,))


class AgentRunError(AgentoptError):
    """A code agent failed in the sandbox (exception, limit, blocked action); the message says why."""
