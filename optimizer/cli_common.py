"""What every ``agentopt`` command shares: the consoles, common options and archive opening."""

import json
import signal
import sys
from types import FrameType
from typing import Annotated, Any

import typer
from rich.console import Console

from agentopt.archive.paths import checked_url
from agentopt.archive.store import Archive

out = Console(width=None if sys.stdout.isatty() else 150)
err = Console(stderr=True, soft_wrap=True)

DbOption = Annotated[str | None, typer.Option("--db", help="Archive: a SQLite path or SQLAlchemy URL "
                                                            "\\[default: $AGENTOPT_DB or ./agentopt.db]")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def open_archive(db: str | None, must_exist: bool = True) -> Archive:
    return Archive(checked_url(db, must_exist), create=not must_exist)


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def sigterm_as_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def stop_on_signals() -> None:
    """SIGTERM and SIGINT both unwind through ``finally`` blocks, so model servers and Ray stop.

    SIGINT is set explicitly because a shell starts background jobs with it ignored, and
    ``kill -INT`` must still stop ``agentopt model serve &``.
    """
    signal.signal(signal.SIGTERM, sigterm_as_interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)
