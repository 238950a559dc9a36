"""What a person sees while a campaign runs: a live progress bar with errors so far and endpoint
health, then result tables."""

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Protocol

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:  # the gate loads pydantic, which commands that only read the archive never need
    from agentopt.agents.models.gate import EndpointHealth


class Reporter(Protocol):
    def phase(self, text: str, total: int) -> None: ...

    def advance(self, n: int = 1, errors: int = 0) -> None:
        """``n`` example runs finished, ``errors`` of them with an error."""

    def endpoints(self, health: Mapping[str, "EndpointHealth"]) -> None:
        """An endpoint went down or came back."""

    def lost(self, n: int) -> None:
        """``n`` more proposer calls failed for good: their proposals are lost."""

    def close(self) -> None: ...


class SilentReporter:
    def phase(self, text: str, total: int) -> None: ...

    def advance(self, n: int = 1, errors: int = 0) -> None: ...

    def endpoints(self, health: Mapping[str, "EndpointHealth"]) -> None: ...

    def lost(self, n: int) -> None: ...

    def close(self) -> None: ...


def endpoints_line(health: Mapping[str, Mapping[str, Any]]) -> str:
    """Each endpoint up or down (for how long, and why), from :class:`EndpointHealth` fields."""
    def one(url: str, h: Mapping[str, Any]) -> str:
        if h["up"]:
            return f"{url} up"
        since = f" for {h['down_for_s']:.0f}s" if h.get("down_for_s") is not None else ""
        return f"{url} DOWN{since} ({h.get('last_error') or 'no answer'})"

    return "; ".join(one(url, h) for url, h in health.items())


class OutageColumn(ProgressColumn):
    """How long the endpoints have been down, counted at each refresh: the health is reported when it
    changes, so a length written then would stay at the outage's first second."""

    def render(self, task: Task) -> Text:
        since = task.fields.get("down_since")
        return Text(f"down for {time.monotonic() - since:.0f}s", style="yellow") if since is not None else Text("")


class RichReporter:
    """One bar per phase (racing round, validation, test) counting examples evaluated."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            OutageColumn(), console=console, transient=True,
        )
        self.progress.start()
        self._bar = self.progress.add_task("starting", total=None)
        self._logged: set[str] = set()
        self._text = "starting"
        self.errors = 0
        self.down = 0
        self.proposals_lost = 0

    def phase(self, text: str, total: int) -> None:
        self._text = text
        self.progress.reset(self._bar, description=self._describe(), total=total, completed=0)
        if not self.console.is_terminal and (total or text not in self._logged):
            # No live bar in a log file or CI: a line per unit of work (or new phase) instead.
            self._logged.add(text)
            self.console.print(text + (f" ({total} example runs{self._errors_so_far()})" if total else ""))

    def advance(self, n: int = 1, errors: int = 0) -> None:
        self.errors += errors
        self.progress.update(self._bar, advance=n, description=self._describe())

    def endpoints(self, health: Mapping[str, "EndpointHealth"]) -> None:
        was_down, self.down = self.down, sum(not h.up for h in health.values())
        longest = max((h.down_for_s or 0.0 for h in health.values() if not h.up), default=0.0)
        since = (time.monotonic() - longest) if self.down and not was_down else None
        if since is not None or not self.down:
            self.progress.update(self._bar, description=self._describe(), down_since=since)
        else:
            self.progress.update(self._bar, description=self._describe())
        waiting = "; calls to a down endpoint wait for it" if self.down else ""
        self.console.print(f"endpoints: {escape(endpoints_line({u: asdict(h) for u, h in health.items()}))}{waiting}")

    def lost(self, n: int) -> None:
        self.proposals_lost += n
        self.progress.update(self._bar, description=self._describe())
        if not self.console.is_terminal:
            self.console.print(f"{self._text}: {self.proposals_lost} proposals lost to proposer errors so far")

    def _errors_so_far(self) -> str:
        lost = f", {self.proposals_lost} proposals lost" if self.proposals_lost else ""
        return (f", {self.errors} errors so far" if self.errors else "") + lost

    def _describe(self) -> str:
        notes = [f"{self.errors} errors"] if self.errors else []
        notes += [f"{self.proposals_lost} proposals lost"] if self.proposals_lost else []
        notes += [f"{self.down} endpoint(s) down"] if self.down else []
        return self._text + (f" [{', '.join(notes)}]" if notes else "")

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
