"""``agentopt sweep``: many campaigns at once, and ``agentopt sweep resume`` after a crash."""

import contextlib
import sys
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated

import typer

from agentopt.agents.runtime.errors import ConfigError
from agentopt.archive.paths import checked_url
from agentopt.archive.store import Archive, display_url
from agentopt.optimizer.frontends.cli.campaign import AddressOption, QuietOption
from agentopt.optimizer.frontends.cli.common import DbOption, JsonOption, TwoStepInterrupt, err, open_archive, out, print_json
from agentopt.optimizer.engine.ui import RichReporter, SilentReporter, table


def sweep(
    what: Annotated[list[str], typer.Argument(metavar="SWEEP.yaml | resume SWEEP_ID",
                                              help="A sweep file to run, or `resume` and the id of a sweep to "
                                                   "finish")],
    db: DbOption = None,
    address: AddressOption = None,
    force: Annotated[bool, typer.Option("--force", help="Resume even if the sweep's driver seems alive.")] = False,
    json_out: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Run every campaign of a matrix (tasks x strategies x seeds x models), several at once.

    A sweep file is a run config plus `matrix:` (tasks, strategies, seeds, models) and optionally
    `sweep:` (concurrency: campaigns at once; budget: limits over the whole sweep). Campaign drivers
    run as Ray actors over the cluster and share one gate, so endpoint limits hold across all of them.
    Killed? `agentopt sweep resume ID` skips finished campaigns and resumes the others; then
    `agentopt archive compare --sweep ID` tells strategies apart, with the statistics stated."""
    from agentopt.optimizer.engine.sweep import check_sweep_resumable, run_sweep
    from agentopt.optimizer.engine.sweep_config import load_sweep, parse_sweep

    if what[0] == "resume":
        if len(what) != 2:
            raise ConfigError("usage: agentopt sweep resume SWEEP_ID")
        archive = open_archive(db)
        check_sweep_resumable(archive, what[1], force)
        plan = parse_sweep(archive.sweep(what[1]).config["source"], f"sweep {what[1]}")
        opener: Archive | Callable[[], Archive] = archive
        url, sweep_id = archive.url, what[1]
    else:
        if len(what) != 1:
            raise ConfigError("give one sweep file (or: agentopt sweep resume SWEEP_ID)")
        plan = load_sweep(what[0])
        url = checked_url(db or plan.cells[0].config.db, must_exist=False)
        opener, sweep_id = (lambda: Archive(url, create=True)), ""
    opened: list[Archive] = []  # for the Ctrl-C line: the new sweep's id is looked up in it
    started, shown = datetime.now(UTC), display_url(url)

    def open_once() -> Archive:
        opened.append(opener() if callable(opener) else opener)
        return opened[-1]

    def farewell() -> str:
        """Which sweep to resume: the one named, or the one this run started (looked up by name and time)."""
        ids = [sweep_id] if sweep_id else [
            s.id for s in (opened[0].sweeps() if opened else []) if s.name == plan.name and s.created_at >= started]
        if not ids:
            return "interrupted before the sweep started: nothing to resume"
        return (f"interrupted: every finished campaign, result and LLM call is kept in {shown}; "
                + "; ".join(f"`agentopt sweep resume {i} --db {shown}` finishes sweep {i}" for i in ids))

    interrupt = TwoStepInterrupt(farewell, f"interrupted: every finished campaign, result and LLM call is kept in "
                                           f"{shown}; `agentopt archive sweeps --db {shown}` lists the sweep to resume")
    reporter = SilentReporter() if quiet or json_out else RichReporter(err)
    try:
        with contextlib.closing(reporter):
            result = run_sweep(plan, open_once, reporter, address, sweep_id)
    except KeyboardInterrupt:
        err.print(interrupt.line())
        sys.exit(130)
    if json_out:
        print_json({"sweep_id": result.sweep_id, "status": result.status, "skipped": result.skipped,
                    "wall_s": round(result.wall_s, 1), "campaigns": [asdict(o) for o in result.outcomes]})
    else:
        rows = [[o.key, o.campaign_id or "-", o.status, o.error or ""] for o in result.outcomes]
        out.print(table(f"Sweep {result.sweep_id}: {result.status}", ["cell", "campaign", "status", "why"], rows))
        out.print(f"{len(result.outcomes)} campaigns run, {result.skipped} already finished, in {result.wall_s:.0f}s. "
                  f"Next: agentopt status {result.sweep_id}; agentopt archive compare --sweep {result.sweep_id}")
    if result.status == "failed":
        raise typer.Exit(1)


COMMANDS = (sweep,)
