"""The ``agentopt`` command line."""

import json
import os
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.text import Text
from typer.exceptions import TyperException

from agentopt.agents.runtime.errors import AgentoptError, ConfigError
from agentopt.archive import queries
from agentopt.archive.paths import checked_url
from agentopt.optimizer.frontends.cli.campaign import COMMANDS
from agentopt.optimizer.frontends.cli.sweep import COMMANDS as SWEEP_COMMANDS
from agentopt.optimizer.frontends.cli.common import (
    DbOption,
    JsonOption,
    err,
    open_archive,
    out,
    print_json,
    stop_on_signals,
)
from agentopt.optimizer.engine.ui import ci, pct, table

app = typer.Typer(help="Automatically improve LLM prompts and agents.",
                  epilog="Start with: agentopt run experiments/quickstart.yaml, then agentopt archive top.",
                  no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
archive_app = typer.Typer(help="Query the archive of everything tried.", no_args_is_help=True)
tasks_app = typer.Typer(help="Built-in tasks.", no_args_is_help=True)
model_app = typer.Typer(help="The bundled local model (SmolLM2-135M-Instruct on llama.cpp).", no_args_is_help=True)
app.add_typer(archive_app, name="archive")
app.add_typer(tasks_app, name="tasks")
app.add_typer(model_app, name="model")
for command in (*COMMANDS, *SWEEP_COMMANDS):
    app.command()(command)

class Split(StrEnum):
    train = "train"
    val = "val"
    test = "test"


class LineageFormat(StrEnum):
    dot = "dot"
    graphml = "graphml"
    json = "json"


@tasks_app.command("list")
def tasks_list(json_out: JsonOption = False) -> None:
    """List the built-in tasks with their split sizes and metric."""
    from agentopt.optimizer.tasks import BUILTIN, load_task

    rows = []
    for name in sorted(BUILTIN):
        t = load_task(name)
        rows.append({"name": name, "description": t.description, "metric": t.metric_name,
                     "train": len(t.train), "val": len(t.val), "test": len(t.test), "example": t.train[0].input})
    if json_out:
        print_json(rows)
    else:
        out.print(table("Built-in tasks (or pass a .jsonl / .csv file path)", list(rows[0]), [list(r.values()) for r in rows]))


@app.command("strategies")
def strategies(name: Annotated[str | None, typer.Argument(help="one strategy: list its parameters")] = None,
               json_out: JsonOption = False) -> None:
    """List the search strategies, or one strategy's parameters with defaults (``strategy.params``)."""
    from agentopt.optimizer.strategies import STRATEGIES

    if name is None:
        rows = [{"name": n, "about": (sys.modules[s.__module__].__doc__ or n).strip().splitlines()[0]}
                for n, s in sorted(STRATEGIES.items())]
        title = "Strategies (`agentopt strategies NAME` lists one's parameters)"
    elif name in STRATEGIES:
        fields = STRATEGIES[name].Params.model_fields
        rows = [{"param": k, "default": "required" if f.is_required() else repr(f.default),
                 "about": f.description or ""} for k, f in fields.items()]
        title = f"strategy.params for {name}"
    else:
        raise ConfigError(f"unknown strategy {name!r}; known: {', '.join(sorted(STRATEGIES))}")
    if json_out:
        print_json(rows)
    else:
        out.print(table(title, list(rows[0]), [list(r.values()) for r in rows]))


@model_app.command("serve")
def model_serve(
    servers: Annotated[int, typer.Option(help="Server processes; ports PORT, PORT+1, ...")] = 1,
    threads: Annotated[int | None, typer.Option(help="Threads per server [default: cores / servers]")] = None,
    port: Annotated[int, typer.Option(help="First port on 127.0.0.1.")] = 8080,
    embedding: Annotated[bool, typer.Option(help="Serve embeddings instead of chat (for an exported agent that "
                                                 "retrieves its demonstrations by them: AGENTOPT_EMBED_BASE_URL).")]
    = False,
) -> None:
    """Serve the bundled model on loopback until Ctrl-C (OpenAI-compatible, model 'smollm2-135m-instruct')."""
    from agentopt.agents.models.local_model import LocalModelServers

    stop_on_signals()
    with LocalModelServers(servers, threads, ports=list(range(port, port + servers)), embedding=embedding) as pool:
        for endpoint in pool.endpoints:
            out.print(f"serving {endpoint.model} at {endpoint.base_url}")
        out.print("Ctrl-C to stop")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            out.print("stopped")


SplitOption = Annotated[Split, typer.Option(help="Which split's score.")]
CampaignFilter = Annotated[str | None, typer.Option(help="Only this campaign id.")]
TaskFilter = Annotated[str | None, typer.Option(help="Only campaigns on this task.")]
KindFilter = Annotated[str | None, typer.Option(help="Only this agent kind (e.g. prompt).")]
StrategyFilter = Annotated[str | None, typer.Option(help="Only candidates proposed by this strategy (e.g. ape, seed).")]
SinceFilter = Annotated[datetime | None, typer.Option(help="Only candidates created at or after this date (UTC).")]
UntilFilter = Annotated[datetime | None, typer.Option(help="Only candidates created before this date (UTC).")]


def _ranked_table(title: str, ranked: list[queries.Ranked]) -> None:
    out.print(table(title, ["id", "campaign", "task", "strategy", "score", "95% CI", "n", "errors", "tokens/ex",
                            "instruction", "demos"],
                    [[r.candidate_id, r.campaign_id, r.task, r.strategy, pct(r.mean), ci(r.ci_low, r.ci_high), r.n,
                      r.n_errors, "-" if r.tokens_mean is None else f"{r.tokens_mean:.0f}",
                      r.payload.get("instruction", ""), len(r.payload.get("demos", []))] for r in ranked]))


@archive_app.command("top")
def archive_top(
    k: Annotated[int, typer.Option("-k", help="How many candidates.", min=1)] = 10,
    split: SplitOption = Split.val,
    campaign: CampaignFilter = None, task: TaskFilter = None, kind: KindFilter = None,
    strategy: StrategyFilter = None, since: SinceFilter = None, until: UntilFilter = None,
    db: DbOption = None, json_out: JsonOption = False,
) -> None:
    """Best candidates by mean score on a split, with 95% confidence intervals."""
    ranked = queries.top(open_archive(db), k, split.value, queries.Filters.of(
        campaign=campaign, task=task, kind=kind, strategy=strategy, since=since, until=until))
    if json_out:
        print_json([r.as_dict() for r in ranked])
        return
    _ranked_table(f"Top {k} on {split.value}", ranked)


@archive_app.command("pareto")
def archive_pareto(
    split: SplitOption = Split.val,
    usd_per_1m_tokens: Annotated[float | None, typer.Option(
        "--usd-per-1m-tokens", min=0, help="Also show cost per 1,000 examples at this token price.")] = None,
    campaign: CampaignFilter = None, task: TaskFilter = None, kind: KindFilter = None,
    strategy: StrategyFilter = None, since: SinceFilter = None, until: UntilFilter = None,
    db: DbOption = None, json_out: JsonOption = False,
) -> None:
    """Score vs tokens per example (or cost): the candidates nothing beats on both, cheapest first."""
    front = queries.pareto(open_archive(db), split.value, queries.Filters.of(
        campaign=campaign, task=task, kind=kind, strategy=strategy, since=since, until=until))
    price = usd_per_1m_tokens
    if json_out:
        print_json([{**r.as_dict(), "usd_per_1k_examples": None if price is None or r.tokens_mean is None
                      else r.tokens_mean * price / 1000} for r in front])
        return
    _ranked_table(f"Pareto front on {split.value}: score vs tokens per example", front)
    if price is not None:
        for r in front:
            out.print(f"  #{r.candidate_id}: ${(r.tokens_mean or 0) * price / 1000:.4f} per 1,000 examples")


NOTE_FIELD_CHARS = 300  # what `archive show` prints of each field of a note (--json has all of it)
NOTE_SUMMARY_CHARS = 100  # what `archive notes` prints of a whole note


def _one_line(value: Any, limit: int) -> str:
    """A JSON value as one line of at most ``limit`` characters: notes hold paragraphs of model text."""
    text = " ".join((value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


@archive_app.command("show")
def archive_show(candidate_id: Annotated[int, typer.Argument(help="Candidate id")], db: DbOption = None,
                 json_out: JsonOption = False) -> None:
    """Everything stored about one candidate: payload, lineage, scores, notes and per-example results."""
    record = queries.show(open_archive(db), candidate_id)
    if json_out:
        print_json(record.as_dict())
        return
    out.print(f"[bold]candidate {record.id}[/] ({record.kind}) of campaign {record.campaign_id}, task {record.task}")
    out.print(f"strategy {record.strategy}: {record.rationale or '-'}; parents: {list(record.parents) or 'none'}")
    if record.twin_id:
        out.print(f"functional duplicate of #{record.twin_id}: it answered the probe inputs identically, "
                  "so it was never evaluated on its own")
    out.print_json(data=record.payload)
    out.print(table("Evaluations", ["split", "score", "95% CI", "n", "errors"],
                    [[s, pct(e.mean), ci(e.ci_low, e.ci_high), e.n, e.n_errors] for s, e in record.evaluations.items()]))
    for note in record.notes:
        out.print(f"[bold]note: {escape(note.kind)}[/]")
        for key, value in note.data.items():
            out.print(f"  {key}: {_one_line(value, NOTE_FIELD_CHARS)}", markup=False)
    errors = [r for r in record.results if r.error]
    out.print(f"{len(record.results)} example results, {len(errors)} errors")
    for r in errors[:5]:
        out.print(f"  {r.split}/{r.example_id}: {r.error}")


@archive_app.command("notes")
def archive_notes(
    campaign_id: Annotated[str, typer.Argument(help="Campaign id")],
    kind: Annotated[str | None, typer.Option(help="Only notes of this kind.")] = None,
    candidate: Annotated[int | None, typer.Option(help="Only notes about this candidate id.")] = None,
    db: DbOption = None, json_out: JsonOption = False,
) -> None:
    """What a campaign noted: language losses and gradients behind candidates, and edits it rejected."""
    rows = queries.notes(open_archive(db), campaign_id, kind, candidate)
    if json_out:
        print_json([n.as_dict() for n in rows])
        return
    out.print(table(f"Notes of campaign {campaign_id}", ["id", "candidate", "kind", "data"],
                    [[n.id, "-" if n.candidate_id is None else n.candidate_id, escape(n.kind),
                      escape(_one_line(n.data, NOTE_SUMMARY_CHARS))] for n in rows]))


@archive_app.command("rejected")
def archive_rejected(
    campaign_id: Annotated[str, typer.Argument(help="Campaign id")],
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N refused proposals.")] = None,
    db: DbOption = None, json_out: JsonOption = False,
) -> None:
    """The proposals a campaign's strategy refused before they cost a task-model call, and why."""
    rows = queries.rejected_candidates(open_archive(db), campaign_id, limit)
    if json_out:
        print_json([r.as_dict() for r in rows])
        return
    out.print(table(f"Proposals campaign {campaign_id} refused", ["step", "reason", "proposal"],
                    [["-" if r.step is None else r.step, escape(r.reason),
                      escape(_one_line(r.proposal or "-", NOTE_SUMMARY_CHARS))] for r in rows]))


@archive_app.command("lineage")
def archive_lineage(
    candidate_id: Annotated[int, typer.Argument(help="Candidate id")],
    fmt: Annotated[LineageFormat, typer.Option("--format", help="dot (Graphviz), graphml or json (node-link).")]
    = LineageFormat.dot,
    descendants: Annotated[bool, typer.Option(help="Also include the candidate's descendants.")] = False,
    db: DbOption = None,
) -> None:
    """Where a candidate came from: its ancestors (parent -> child edges), with scores on each node."""
    graph = queries.lineage(open_archive(db), candidate_id, descendants)
    sys.stdout.write(queries.render_lineage(graph, fmt.value))


@archive_app.command("diff")
def archive_diff(a: Annotated[int, typer.Argument(help="Candidate id A")],
                 b: Annotated[int, typer.Argument(help="Candidate id B")],
                 db: DbOption = None, json_out: JsonOption = False) -> None:
    """What changed from candidate A to B, and B - A on the examples both were scored on."""
    result = queries.diff(open_archive(db), a, b)
    if json_out:
        print_json(result.as_dict())
        return
    out.print(f"[bold]#{a} -> #{b}[/] ({result.relation})")
    for key, change in result.payload_changes.items():
        if isinstance(change, list):
            out.print(f"{key}:", *change[2:], sep="\n  ", markup=False)
        else:
            out.print(f"{key}: {json.dumps(change, ensure_ascii=False)}", markup=False)
    if not result.payload_changes:
        out.print("payloads are identical")
    rows = []
    for split, e in result.splits.items():
        paired = ["-", "-", "-"] if e.paired is None else [
            f"{100 * e.paired.b_minus_a:+.1f} {ci(*e.paired.b_minus_a_ci)}", e.paired.b_better, e.paired.a_better]
        rows.append([split, pct(None if e.a is None else e.a.mean), pct(None if e.b is None else e.b.mean), e.shared_examples, *paired])
    out.print(table("Scores", ["split", "A", "B", "shared examples", "B - A [95% CI]", "B better", "A better"], rows))


@archive_app.command("campaigns")
def archive_campaigns(task: TaskFilter = None, db: DbOption = None, json_out: JsonOption = False) -> None:
    """Campaigns in the archive, newest first, with their size, best scores and LLM calls."""
    _campaign_table("Campaigns", queries.campaigns(open_archive(db), task), json_out)


@archive_app.command("sweeps")
def archive_sweeps(db: DbOption = None, json_out: JsonOption = False) -> None:
    """Sweeps in the archive, newest first: id, name, status and how many campaigns have started."""
    archive = open_archive(db)
    rows = [{"id": s.id, "name": s.name, "status": s.status, "created_at": s.created_at,
             "campaigns": len(archive.sweep_campaigns(s.id))} for s in archive.sweeps()]
    if json_out:
        print_json(rows)
        return
    out.print(table("Sweeps", ["id", "name", "status", "created", "campaigns started"],
                    [[r["id"], r["name"], r["status"], f"{r['created_at']:%Y-%m-%dT%H:%M:%S}", r["campaigns"]]
                     for r in rows]))


@archive_app.command("compare")
def archive_compare(
    campaign_ids: Annotated[list[str] | None, typer.Argument(help="Campaign ids (default: all on --task)")] = None,
    task: TaskFilter = None, db: DbOption = None, json_out: JsonOption = False,
    sweep: Annotated[str | None, typer.Option("--sweep", help="Compare the strategies (arms) of a sweep, with "
                                                              "intervals and significance tests")] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="With --sweep: also write compare.md, "
                                                               "compare.json and compare.png here")] = None,
) -> None:
    """Campaigns on one task side by side; each best prompt vs the oldest one's, paired on test items.
    With --sweep: per task and arm the mean test score over seeds with a 95 % interval, every pair of
    arms' paired difference over all tasks and per task (t intervals on the crossed seeds x items
    variance, Holm-corrected p), significant wins/ties/losses, and cost; the output states the method."""
    if sweep is not None:
        _sweep_compare(open_archive(db), sweep, out_dir, json_out)
        return
    if not campaign_ids and not task:
        raise ConfigError("name campaign ids or pass --task (or --sweep ID)")
    rows = queries.compare(open_archive(db), task, campaign_ids or ())
    _campaign_table(f"Campaigns on {rows[0].task}" if rows else "No campaigns", rows, json_out, compare=True)


def _sweep_compare(archive: Any, sweep_id: str, out_dir: Path | None, json_out: bool) -> None:
    from rich.markdown import Markdown

    from agentopt.archive.sweep_stats import plot, to_markdown
    from agentopt.optimizer.frontends.status import compare_sweep

    result = compare_sweep(archive, sweep_id)
    text = to_markdown(result)
    if out_dir is not None:
        if out_dir.exists() and not out_dir.is_dir():
            raise ConfigError(f"--out {out_dir}: exists and is not a folder")
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "compare.md").write_text(text)
        (out_dir / "compare.json").write_text(json.dumps(result.as_dict(), indent=2))
        png = plot(result, out_dir / "compare.png")
        err.print(f"wrote {out_dir}/compare.md, compare.json" + (", compare.png" if png else
                                                                 " (no plot: pip install 'agentopt[plots]')"))
    if json_out:
        print_json(result.as_dict())
    else:
        out.print(Markdown(text))


def _campaign_table(title: str, rows: Sequence[queries.CampaignRow], json_out: bool, compare: bool = False) -> None:
    if json_out:
        print_json([c.as_dict() for c in rows])
        return
    columns = ["id", "name", "task", "strategy", "status", "created", "candidates", "best val", "seed test",
               "best test [95% CI]", "LLM calls", "dedup (content/functional)"]
    body = []
    for c in rows:
        s = c.stats
        line = [c.id, c.name, c.task, c.strategy, c.status, f"{c.created_at:%Y-%m-%dT%H:%M:%S}", c.candidates,
                pct(c.best_val), pct(c.seed_test), f"{pct(c.best_test)} {ci(*c.best_test_ci)}",
                c.llm_calls, f"{s.get('content duplicates', 0)}/{s.get('functional duplicates', 0)}"]
        if isinstance(c, queries.Comparison):
            ref = c.test_vs_reference
            line.append("reference" if ref is None and c.best_candidate_id else
                        "-" if ref is None else f"{100 * ref.delta:+.1f} {ci(*ref.ci)} on {ref.shared_examples}")
        body.append(line)
    out.print(table(title, columns + (["test vs oldest [95% CI]"] if compare else []), body))


@archive_app.command("upgrade")
def archive_upgrade(db: DbOption = None) -> None:
    """Migrate an archive made by an older agentopt to this version's schema (back it up first)."""
    from agentopt.archive.store import display_url, upgrade_archive

    url = checked_url(db)
    before, after = upgrade_archive(url)
    message = "already at" if before == after else f"upgraded from {before or 'empty'} to"
    out.print(f"archive {display_url(url)}: {message} schema revision {after}")


@app.command("export")
def export(candidate_id: Annotated[int, typer.Argument(help="Candidate id (see `agentopt archive top`)")],
           out_dir: Annotated[Path, typer.Option("--out", help="Directory for the package.")],
           db: DbOption = None) -> None:
    """Write a pip-installable package for any candidate (prompt, code or graph agent): `run`, `arun`, a
    langchain Runnable, a console command, an evaluation card and a regression test of recorded examples."""
    from agentopt.optimizer.engine.stored import export_agent

    path = export_agent(open_archive(db), candidate_id, out_dir)
    out.print(f"exported candidate {candidate_id} to {path} — install it with: pip install {path}")


@app.command("dashboard", epilog="On a cluster, the dashboard stays on the head node's loopback; reach it with an "
             "ssh tunnel: ssh -L 8765:127.0.0.1:8765 HEAD, then open http://127.0.0.1:8765 here (as with "
             "`ray dashboard`). --host 0.0.0.0 exposes it to everyone who can reach the port: it has no login.")
def dashboard(
    db: DbOption = None,
    host: Annotated[str, typer.Option(help="Address to bind; loopback only by default.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to serve on.")] = 8765,
) -> None:
    """Browse an archive in a web browser, read-only and offline: campaigns (live while they run), candidates
    with their lineage and per-example results, comparisons, and exported packages to download."""
    try:
        from agentopt.optimizer.frontends.dashboard.app import check_port, serve
    except ImportError as exc:
        raise ConfigError(f"the dashboard needs its extra: pip install 'agentopt[dashboard]' ({exc.name} missing)") \
            from None
    from agentopt.archive.store import Archive, display_url

    archive = Archive(checked_url(db), create=False, read_only=True)
    check_port(host, port)  # before saying it serves: a port in use is the one line printed
    stop_on_signals()
    err.print(f"serving {escape(display_url(archive.url))} read-only at http://{host}:{port}/ (Ctrl-C to stop)")
    try:
        serve(archive, host, port)
    except KeyboardInterrupt:
        err.print("stopped")


def main() -> None:
    """Entry point: user errors become one line on stderr and a non-zero exit, never a traceback."""
    try:
        code = app(standalone_mode=False)  # a command's typer.Exit(n) comes back as n
    except TyperException as exc:  # a usage error: bad option, value, or command
        ctx = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError":  # its message is the help text (typer tests it so too)
            out.print(exc.format_message())
        else:
            hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            err.print(Text.assemble(("error: ", "red"), exc.format_message(), hint))
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        sys.exit(130)
    except AgentoptError as exc:
        err.print(Text.assemble(("error: ", "red"), str(exc)))
        sys.exit(2)
    except Exception as exc:
        if os.environ.get("AGENTOPT_DEBUG"):
            raise
        err.print(Text.assemble(("internal error: ", "red"), f"{type(exc).__name__}: {exc}",
                                " (set AGENTOPT_DEBUG=1 for the traceback)"))
        sys.exit(1)
    if isinstance(code, int) and code:
        sys.exit(code)
