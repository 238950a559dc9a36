"""Commands that drive campaigns: ``run`` (or ``--dry-run``), ``resume`` and ``status``."""

import contextlib
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from agentopt.archive.errors import ArchiveError
from agentopt.archive import queries
from agentopt.archive.paths import checked_url
from agentopt.archive.store import Archive, display_url
from agentopt.optimizer.frontends.cli.common import (
    DbOption,
    JsonOption,
    TwoStepInterrupt,
    err,
    open_archive,
    out,
    print_json,
)
from agentopt.optimizer.engine.ui import RichReporter, SilentReporter, ci, endpoints_line, pct, table

if TYPE_CHECKING:
    from agentopt.optimizer.engine.campaign import CampaignReport
    from agentopt.archive.records import EvalSummary
    from agentopt.optimizer.engine.config import CampaignConfig
    from agentopt.optimizer.tasks import Task

AddressOption = Annotated[str | None, typer.Option(
    "--address", help="Run on an existing Ray cluster: 'auto' (from a cluster node) or ray://HOST:10001 "
                      "(Ray Client) \\[default: start a local Ray]")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")]


def dedup_line(stats: dict[str, Any]) -> str:
    """The campaign's deduplication record in one line."""
    merged, full = stats.get("functional duplicates", 0), stats.get("full evaluations", 0)
    avoided = f"{100 * merged / (merged + full):.0f}%" if merged + full else "-"
    return (f"dedup ({stats.get('functional dedup', 'off')}): {stats.get('proposals', 0)} proposals, "
            f"{stats.get('content duplicates', 0)} content duplicates, {merged} functional duplicates, "
            f"{full} full evaluations ({avoided} avoided), {stats.get('llm calls saved', 0)} LLM calls saved")


def prompt_cache_line(stats: dict[str, Any]) -> str | None:
    """How much of the task model's prompt work its endpoints served from their prompt caches."""
    prompt, cached = stats.get("task_prompt_tokens", 0), stats.get("task_prompt_cached_tokens", 0)
    if not prompt:
        return None
    saved = stats.get("task_prompt_saved_s", 0.0)
    return (f"prompt cache: {cached:,} of {prompt:,} paid task prompt tokens ({100 * cached / prompt:.0f}%) served "
            "from the endpoints' prompt cache" + (f", about {saved:.0f}s of prompt evaluation saved" if saved else ""))


def best_agent_line(agent: dict[str, Any], candidate_id: int) -> str:
    """The winner in one line, by its kind's label (``agentopt archive show`` has the rest)."""
    return f"best {agent.get('kind', 'prompt')} agent: {queries.label(agent)} (`agentopt archive show {candidate_id}`)"


def _errors(summary: "EvalSummary") -> str:
    """A mean over the examples that could be scored says how many could not (an unreadable judge
    reply, a failed call): 0.71 over 7 of 12 examples is not 0.71 over 12."""
    return f" ({summary.n} scored, {summary.n_errors} errors)" if summary.n_errors else ""


def summary_table(reports: list["CampaignReport"]) -> None:
    rows = []
    for r in reports:
        s = r.stats
        calls = s["task_llm_calls"] + s["proposer_llm_calls"] + s.get("judge_llm_calls", 0)
        hits = s["task_cache_hits"] + s["proposer_cache_hits"]
        delta = None if r.best_test.mean is None or r.seed_test.mean is None else r.best_test.mean - r.seed_test.mean
        rows.append([r.task, pct(r.seed_test.mean) + _errors(r.seed_test),
                     f"{pct(r.best_test.mean)} {ci(r.best_test.ci_low, r.best_test.ci_high)}{_errors(r.best_test)}",
                     "-" if delta is None else f"{100 * delta:+.1f}", f"{calls} ({s['proposer_llm_calls']} proposer)",
                     f"{100 * hits / max(calls + hits, 1):.0f}%", s["task_tokens"] + s["proposer_tokens"],
                     f"{r.wall_s:.0f}s", f"{r.campaign_id}/{r.best_candidate_id}"])
    out.print(table("Test accuracy (%) on the sealed test split", [
        "task", "seed", "best [95% CI]", "gain", "LLM calls", "cache hits", "tokens", "wall", "campaign/best id"], rows))
    for r in reports:
        out.print(f"[bold]{escape(r.task)}[/] {escape(best_agent_line(r.best_agent, r.best_candidate_id))}")
        out.print(f"  {dedup_line(r.stats)}")
        if cached := prompt_cache_line(r.stats):
            out.print(f"  {cached}")
        if r.stopped_by:
            out.print(f"  [yellow]stopped early: the {r.stopped_by} budget is spent[/] (search ended; "
                      f"see `agentopt status {r.campaign_id}`)")
        for note in r.notes:
            out.print(f"  [yellow]note:[/] {note}")
    deltas = [r.best_test.mean - r.seed_test.mean for r in reports
              if r.best_test.mean is not None and r.seed_test.mean is not None]
    if deltas:
        out.print(f"Average gain over the seed: {100 * sum(deltas) / len(deltas):+.1f} points")


class Interrupted:
    """Which campaigns a Ctrl-C'd run leaves to resume: the one named ``resume``, or those of this
    config started since this run began and not ended (a finished task's campaign needs nothing)."""

    def __init__(self, url: str, name: str, resume: str, archive: Archive | Callable[[], Archive]) -> None:
        self.url, self.name, self.resume = url, name, resume
        self.started = datetime.now(UTC)
        self.archive = archive if isinstance(archive, Archive) else None
        self._open = archive

    def opened(self) -> Archive:
        """The archive, opened (by the run, once its endpoints answered) and remembered for the lookup."""
        if self.archive is None:
            self.archive = self._open() if callable(self._open) else self._open
        return self.archive

    def kept(self) -> str:
        return f"interrupted: every finished result and LLM call is kept in {display_url(self.url)}"

    def line(self) -> str:
        if self.archive is None:
            return f"interrupted before the archive was opened: nothing was stored in {display_url(self.url)}"
        ids = [self.resume] if self.resume else [
            c.id for c in queries.campaigns(self.archive, since=self.started)
            if c.name == self.name and c.status in ("running", "interrupted")]
        if not ids:
            return "interrupted before a campaign started: nothing to resume"
        db = f" --db {display_url(self.url)}"
        return self.kept() + "; " + "; ".join(
            f"`agentopt resume {i}{db}` finishes campaign {i} without paying for them again" for i in ids)

    def fallback(self) -> str:
        return self.kept() + f"; `agentopt archive campaigns --db {display_url(self.url)}` lists the campaign to resume"


def _drive(cfg: "CampaignConfig", archive: Archive | Callable[[], Archive], url: str, address: str | None,
           json_out: bool, quiet: bool, resume: str = "", tasks: Sequence["Task"] = ()) -> None:
    """Run the campaigns; ``archive`` may be a function that opens it once every endpoint answered."""
    from agentopt.optimizer.engine.runner import run_campaigns

    interrupted = Interrupted(url, cfg.name, resume, archive)
    interrupt = TwoStepInterrupt(interrupted.line, interrupted.fallback())
    reporter = SilentReporter() if quiet or json_out else RichReporter(err)
    started = time.perf_counter()
    try:
        with contextlib.closing(reporter):
            reports = run_campaigns(cfg, interrupted.opened, reporter, address, resume, tasks)
    except KeyboardInterrupt:
        err.print(interrupt.line())
        sys.exit(130)
    if json_out:
        print_json([r.as_dict() for r in reports])
        return
    summary_table(reports)
    out.print(f"Archive: {url}   total wall time {time.perf_counter() - started:.0f}s")


def run(
    config: Annotated[Path, typer.Argument(help="Campaign YAML, e.g. experiments/quickstart.yaml")],
    db: DbOption = None,
    address: AddressOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Estimate calls, tokens and cost per role against "
                                                            "the budgets, then stop: nothing runs.")] = False,
    json_out: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Run the campaign(s) described by CONFIG (one per task) and print a result table per task."""
    from agentopt.optimizer.engine.config import load_config

    cfg = load_config(config)
    if dry_run:
        _dry_run(cfg, json_out)
        return
    url = checked_url(db or cfg.db, must_exist=False)  # a bad --db is refused before anything starts
    _drive(cfg, lambda: Archive(url, create=True), url, address, json_out, quiet)


def resume(
    campaign_id: Annotated[str, typer.Argument(help="Campaign id (printed by run; see `agentopt archive campaigns`)")],
    db: DbOption = None,
    address: AddressOption = None,
    force: Annotated[bool, typer.Option("--force", help="Resume even if the campaign's driver seems alive.")] = False,
    json_out: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Finish an interrupted campaign (killed, Ctrl-C, crashed): finished work is reused, never paid twice."""
    from agentopt.optimizer.engine.config import stored_config
    from agentopt.optimizer.engine.stored import check_resumable, stored_task

    archive = open_archive(db)
    if archive.campaign(campaign_id).status == "finished":
        out.print(f"campaign {campaign_id} already finished: nothing to resume (see `agentopt status {campaign_id}`)")
        return
    check_resumable(archive, campaign_id, force)
    task = stored_task(archive, campaign_id)
    _drive(stored_config(archive, campaign_id), archive, archive.url, address, json_out, quiet, resume=campaign_id,
           tasks=[task])


def report(
    campaign_id: Annotated[str, typer.Argument(help="Campaign id (see `agentopt archive campaigns`)")],
    out: Annotated[Path, typer.Option("--out", help="Folder for index.html and its scripts (created)")],
    db: DbOption = None,
) -> None:
    """A static HTML report of a campaign, readable offline: the dashboard's campaign page frozen (what the search
    did against calls, time and dollars, scores per strategy, score against tokens, seed vs best on test)."""
    from agentopt.optimizer.frontends.report import write_report

    index = write_report(open_archive(db), campaign_id, out)
    err.print(f"wrote {index} (open it in a browser; its scripts are next to it)")


def status(
    campaign_id: Annotated[str, typer.Argument(help="Campaign id, or a sweep id")],
    db: DbOption = None,
    json_out: JsonOption = False,
) -> None:
    """Progress, spend against budgets and the best candidate so far, for a running or finished campaign;
    for a sweep: its campaigns done, running and queued, spend, and the best per task so far."""
    from agentopt.optimizer.frontends.status import status as campaign_status

    archive = open_archive(db)
    if archive.find_sweep(campaign_id) is not None:
        _sweep_status(archive, campaign_id, json_out)
        return
    if archive.find_campaign(campaign_id) is None:
        raise ArchiveError(f"no campaign or sweep {campaign_id!r} in this archive "
                           "(see `agentopt archive campaigns` and `agentopt archive sweeps`)")
    current = campaign_status(archive, campaign_id)
    progress, spend, limits = current.progress, current.spend, current.limits
    report = current.as_dict()
    if json_out:
        print_json(report)
        return
    out.print(f"[bold]campaign {campaign_id}[/]  task {current.task}  strategy {current.strategy}  status "
              f"{current.status}")
    wall = current.wall_time_limit_s
    out.print(f"active {current.active_s:.0f}s" + (f" of {wall:.0f}s wall-time budget" if wall else "")
              + _stopped(report, campaign_id))
    examples = ", ".join(f"{split} {v.evaluated} ({v.errors} errors)" for split, v in progress.examples.items())
    out.print(f"{progress.candidates} candidates ({progress.twins} functional twins); "
              f"examples: {examples or 'none'}; {progress.errors} errors so far"
              + (f", {current.proposals_lost} proposals lost to proposer errors" if current.proposals_lost else ""))
    endpoints = report["endpoints"]
    out.print(escape(f"endpoints as of {endpoints['at']}: {endpoints_line(endpoints['endpoints'])}") if endpoints
              else "endpoints: no outage seen")
    out.print(table("Spend against budget", ["role", "calls", "tokens", "USD", "prompt-cached tokens",
                                             "prompt time saved"], [
        [role, *(_against(spend[role][what], limits[role][what]) for what in ("calls", "tokens", "usd")),
         f"{spend[role]['cached_tokens']:,}", f"{spend[role]['prompt_saved_s']:.0f}s"]
        for role in spend]))
    best = progress.best
    if best:
        out.print(f"best so far: candidate {best.candidate_id} {pct(best.mean)} {ci(best.ci_low, best.ci_high)} "
                  f"on {best.split} (n={best.n}, {best.n_errors} errors): {best.payload.get('instruction', '')!r}")


def _sweep_status(archive: Archive, sweep_id: str, json_out: bool) -> None:
    from agentopt.optimizer.frontends.status import sweep_status

    current = sweep_status(archive, sweep_id)
    if json_out:
        print_json(current.as_dict())
        return
    out.print(f"[bold]sweep {sweep_id}[/] {escape(current.name)}  status {escape(current.status)}")
    out.print("campaigns: " + ", ".join(f"{n} {state}" for state, n in sorted(current.counts.items())))
    wall = current.wall_time_limit_s
    out.print(f"driven {current.active_s:.0f}s" + (f" of the sweep's {wall:.0f}s wall-time budget" if wall else ""))
    out.print(table("Spend (all campaigns) against the sweep's budget", ["role", "calls", "tokens", "USD"],
                    [[role, *(_against(v[what], current.limits[role][what]) for what in ("calls", "tokens", "usd"))]
                     for role, v in current.spend.items()]))
    out.print(table("Best per task so far (test when finished, else val)", ["task", "arm", "seed", "campaign",
                                                                           "best val", "best test"],
                    [[c.task, c.arm, c.seed, c.campaign_id, pct(c.best_val), pct(c.best_test)]
                     for c in current.best.values()]))
    out.print(table("Campaigns", ["task", "arm", "seed", "campaign", "status", "best val", "best test"],
                    [[c.task, c.arm, c.seed, c.campaign_id or "-", c.status, pct(c.best_val), pct(c.best_test)]
                     for c in current.cells]))
    for key, why in current.failures.items():
        out.print(escape(f"cell {key}: {why}"))


def _stopped(report: dict[str, Any], campaign_id: str) -> str:
    """Why the campaign stopped early: a spent budget, or a halt that resuming gets past."""
    if not report["stopped_by"]:
        return ""
    if report["stop_detail"]:
        return (f"; stopped ({report['stopped_by']}): {escape(report['stop_detail'])}; "
                f"`agentopt resume {campaign_id}` finishes it")
    return f"; stopped by the {report['stopped_by']} budget"


def _against(spent: float, limit: float | None) -> str:
    shown = f"{spent:.4f}" if isinstance(spent, float) and not float(spent).is_integer() else f"{spent:,.0f}"
    return shown if limit is None else f"{shown} / {limit:,} ({100 * spent / limit:.0f}%)"


def _dry_run(cfg: "CampaignConfig", json_out: bool) -> None:
    from agentopt.optimizer.engine.budgets import estimate
    from agentopt.optimizer.engine.config import task_ref
    from agentopt.optimizer.tasks import load_task

    estimates = [estimate(cfg, load_task(task_ref(ref), seed=cfg.task_seed)) for ref in cfg.tasks]
    if json_out:
        print_json(estimates)
        return
    rows = []
    for e in estimates:
        for role, key in (("proposer", "proposer"), ("task", "task_role"), ("judge", "judge")):
            if role == "judge" and e[key] is None:
                continue  # no judge grades this task
            got = e[key]
            limit = getattr(cfg.budget, role)
            if got is None:
                rows.append([e["task"], role, "unknown", "unknown", "unknown", "-"])
                continue
            rows.append([e["task"], role, f"{got['calls']:,}", f"{got['tokens']:,}", f"{got['usd']:.4f}",
                         _fits(got, limit.model_dump())])
    out.print(table(f"Dry run of {cfg.name}: upper bounds per campaign before any cache hit",
                    ["task", "role", "calls ≤", "tokens ≈", "USD ≈", "budget"], rows))
    if cfg.budget.wall_time_s:
        out.print(f"wall-time budget: {cfg.budget.wall_time_s:.0f}s per campaign")


def _fits(estimate: dict[str, float], limits: dict[str, float | None]) -> str:
    over = [f"{what} {estimate[what]:,.0f} > {limit:,}" for what, limit in limits.items()
            if limit is not None and estimate[what] > limit]
    if over:
        return "stops early: " + "; ".join(over)
    return "fits" if any(v is not None for v in limits.values()) else "no limits"


COMMANDS = (run, resume, status, report)
