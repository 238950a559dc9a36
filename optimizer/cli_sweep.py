"""``agentopt sweep``: many campaigns at once, and ``agentopt sweep resume`` after a crash."""

import contextlib
import sys
from dataclasses import asdict
from typing import Annotated

import typer

from agentopt.agents.errors import ConfigError
from agentopt.archive.store import Archive
from agentopt.optimizer.cli_campaign import AddressOption, QuietOption
from agentopt.optimizer.cli_common import (DbOption, JsonOption, checked_url, err, open_archive, out, print_json,
                                           stop_on_signals)
from agentopt.optimizer.ui import RichReporter, SilentReporter, table


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
    from agentopt.optimizer.sweep import check_sweep_resumable, run_sweep
    from agentopt.optimizer.sweep_config import load_sweep, parse_sweep

    if what[0] == "resume":
        if len(what) != 2:
            raise ConfigError("usage: agentopt sweep resume SWEEP_ID")
        archive = open_archive(db)
        check_sweep_resumable(archive, what[1], force)
        plan = parse_sweep(archive.sweep(what[1]).config["source"], f"sweep {what[1]}")
        opener: Archive | object = archive
        url, sweep_id = archive.url, what[1]
    else:
        if len(what) != 1:
            raise ConfigError("give one sweep file (or: agentopt sweep resume SWEEP_ID)")
        plan = load_sweep(what[0])
        url = checked_url(db or plan.cells[0].config.db, must_exist=False)
        opener, sweep_id = (lambda: Archive(url, create=True)), ""
    stop_on_signals()
    reporter = SilentReporter() if quiet or json_out else RichReporter(err)
    try:
        with contextlib.closing(reporter):
            result = run_sweep(plan, opener, reporter, address, sweep_id)  # type: ignore[arg-type]
    except KeyboardInterrupt:
        err.print(f"interrupted: every finished campaign, result and LLM call is kept in {url}; "
                  f"`agentopt sweep resume SWEEP_ID --db {url}` finishes the sweep (its id: "
                  f"`agentopt archive sweeps --db {url}`)")
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
