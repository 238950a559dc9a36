"""What a person sees while a campaign runs: a live progress bar, then result tables."""

from collections.abc import Sequence
from typing import Any, Protocol

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table


class Reporter(Protocol):
    def phase(self, text: str, total: int) -> None: ...

    def advance(self, n: int = 1) -> None: ...

    def close(self) -> None: ...


class SilentReporter:
    def phase(self, text: str, total: int) -> None: ...

    def advance(self, n: int = 1) -> None: ...

    def close(self) -> None: ...


class RichReporter:
    """One bar per phase (racing round, validation, test) counting examples evaluated."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=console, transient=True,
        )
        self.progress.start()
        self._bar = self.progress.add_task("starting", total=None)
        self._logged: set[str] = set()

    def phase(self, text: str, total: int) -> None:
        self.progress.reset(self._bar, description=text, total=total, completed=0)
        if not self.console.is_terminal and (total or text not in self._logged):
            # No live bar in a log file or CI: a line per unit of work (or new phase) instead.
            self._logged.add(text)
            self.console.print(text + (f" ({total} example runs)" if total else ""))

    def advance(self, n: int = 1) -> None:
        self.progress.advance(self._bar, n)

    def close(self) -> None:
        self.progress.stop()


def pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def ci(low: float | None, high: float | None) -> str:
    return "-" if low is None or high is None else f"[{pct(low)}, {pct(high)}]"


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Table:
    out = Table(title=title, title_justify="left")
    for column in columns:
        out.add_column(column, overflow="fold")
    for row in rows:
        out.add_row(*(str(cell) for cell in row))
    return out


def markdown(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """The same table as GitHub markdown lines, for results files committed next to the scripts."""
    return ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)] + \
        ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
