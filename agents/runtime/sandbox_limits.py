"""What one sandboxed run may use and how it ended: the public types of :mod:`agentopt.agents.runtime.sandbox`.

Standard library only, imports relative: ``agentopt export`` copies the sandbox into packages.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError

LLMHandler = Callable[[dict[str, Any]], str]
"""Parent side of ``call_llm``: the agent's request (``{"messages": [...], **params}``) -> reply text.
May raise; the agent then sees ``RuntimeError("LLM error: ...")``. :class:`BudgetExhausted` is not
an agent failure: it aborts the run and propagates to the caller."""

KINDS = ("timeout", "cpu", "memory", "blocked", "output", "exception", "crash", "protocol")
STDOUT_TAIL_CHARS = 8_192


@dataclass(frozen=True)
class Limits:
    """What one run may use. Exceeding any of them ends it with ``ok=False``."""

    cpu_s: float = 20.0  # RLIMIT_CPU, rounded up to whole seconds
    wall_s: float = 60.0  # the parent kills the process group after it (LLM handler time not counted)
    memory_mb: int = 512  # RLIMIT_AS
    max_output_bytes: int = 1_000_000  # prints + LLM requests + the return value, in bytes
    max_llm_calls: int = 50  # per run; the next call raises RuntimeError in the agent
    max_processes: int = 32  # RLIMIT_NPROC headroom (threads count); fork itself is refused anyway
    max_file_mb: int = 64  # RLIMIT_FSIZE: the largest file the agent may write

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if not value > 0:
                raise ConfigError(f"sandbox limit {name} must be > 0, got {value!r}")


@dataclass(frozen=True)
class SandboxResult:
    """How one run ended. ``error`` is one line, ``kind`` one of :data:`KINDS` (None when ok)."""

    ok: bool
    value: Any  # the entry's JSON-serialisable return value when ok
    error: str | None
    kind: str | None
    stdout: str  # the tail of the agent's own prints (empty when the parent had to kill it)
    llm_calls: int  # requests passed to the handler
    wall_s: float  # the whole run, LLM calls included
