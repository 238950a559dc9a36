"""What every ``agentopt`` command shares: the consoles, common options and archive opening."""

import json
import os
import signal
import sys
import threading
from collections.abc import Callable
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


FINISHING = ("stopping: finishing in-flight calls (up to their timeout) so a resume need not pay for them again; "
             "Ctrl-C again to stop now")


class TwoStepInterrupt:
    """Ctrl-C for commands that drive campaigns, ending with the line ``farewell`` makes (what to resume).

    The first Ctrl-C unwinds through ``finally`` blocks: calls in flight finish into the call cache,
    the campaign is marked interrupted, model servers and Ray stop. That lasts as long as the slowest call,
    so it says so at once. The second leaves at once: results are committed as they finish, so nothing
    stored is lost, and a resume makes the abandoned calls again. Its signal handler must not query the
    archive (the interrupted main thread may hold one of its locks), so the first Ctrl-C starts making
    the farewell line in a thread.
    """

    def __init__(self, farewell: Callable[[], str], fallback: str) -> None:
        self._farewell, self._line = farewell, fallback
        self._thread: threading.Thread | None = None
        stop_on_signals()
        signal.signal(signal.SIGINT, self._on_sigint)

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._make_line, name="farewell", daemon=True)
            self._thread.start()
            err.print(FINISHING)
            raise KeyboardInterrupt
        err.print(f"{self._line} (stopped at once: the calls in flight were abandoned)")
        err.show_cursor(True)  # a progress display hid it, and no finally block will show it again
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)  # not sys.exit: the interpreter's exit waits for the abandoned calls' threads

    def _make_line(self) -> None:
        try:
            self._line = self._farewell()
        except Exception:  # noqa: BLE001 - the interrupt must end with a line even if the archive cannot say more
            pass

    def line(self) -> str:
        """The farewell line, once the unwind is over (made here when SIGTERM, not Ctrl-C, began it)."""
        if self._thread is None:
            self._make_line()
        else:
            self._thread.join()
        return self._line
