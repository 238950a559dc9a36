"""The ADAS results table: best seed agent vs best discovered agent, validation and test, with CIs.

Reads an archive written by `agentopt run experiments/adas_*.yaml` (run with `test_top` large
enough that every archived agent is also scored on test) and prints, per campaign, how many
generations produced a runnable agent and how the best hand-designed and best discovered agents
compare. Writes the same as markdown with `--out`.

    .venv/bin/python experiments/adas_results.py --db agentopt.db [--out experiments/results/adas.md]
"""

import argparse
from pathlib import Path

from rich.console import Console

from agentopt.archive import queries
from agentopt.archive.stats import bootstrap_ci
from agentopt.archive.store import Archive, database_url
from agentopt.optimizer.engine.ui import markdown, table

HEADERS = ["task", "agent", "name", "val mean [95% CI]", "test mean [95% CI]"]


def scores(archive: Archive, candidate_id: int, split: str) -> list[float] | None:
    """Per-example scores, or ``None`` when the split is missing or has errors (never ranked)."""
    rows = archive.results(candidate_id, split)
    if not rows or any(r.error for r in rows):
        return None
    return [r.score or 0.0 for r in rows]


def cell(values: list[float] | None) -> str:
    if not values:
        return "-"
    mean, low, high = bootstrap_ci(values)
    return f"{mean:.2f} [{low:.2f}, {high:.2f}] (n={len(values)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", required=True, help="archive path or URL")
    parser.add_argument("--out", type=Path, help="also write the table as markdown here")
    args = parser.parse_args()
    archive = Archive(database_url(args.db), create=False)
    rows, counts = [], []
    for campaign in queries.stored_campaigns(archive, strategy="adas", status="finished"):
        task, summary, config = campaign.task, campaign.summary, campaign.config
        candidates = [(c.id, c.payload, c.rationale) for c in queries.campaign_candidates(archive, campaign.id, "code")]
        seeds = [(c, p) for c, p, r in candidates if r.startswith("seed agent")]
        generated = [(c, p) for c, p, r in candidates if r.startswith("generation")]
        found = [(c, p) for c, p in generated if scores(archive, c, "val")]
        for label, group in (("best seed", seeds), ("best discovered", found)):
            scored = [(scores(archive, c, "val"), c, p) for c, p in group]
            ranked = sorted(((v, c, p) for v, c, p in scored if v), key=lambda t: sum(t[0]) / len(t[0]), reverse=True)
            if ranked:
                val, best, payload = ranked[0]
                rows.append([task, label, payload["name"], cell(val), cell(scores(archive, best, "test"))])
            else:
                rows.append([task, label, "none ran without errors", "-", "-"])
        stats = summary.get("stats", {})
        generations = config.get("strategy", {}).get("params", {}).get("generations", "?")
        counts.append([task, str(generations), str(len(found)), str(stats.get("failed generations", 0)),
                       str(len(generated)), str(stats.get("proposals", 0))])
    console = Console()
    count_headers = ["task", "generations", "valid agents", "failed generations", "generated candidates",
                     "meta-agent requests"]
    console.print(table("Meta Agent Search: generations", count_headers, counts))
    console.print(table("Best seed agent vs best discovered agent", HEADERS, rows))
    if args.out:
        args.out.write_text("\n".join(markdown(count_headers, counts) + [""] + markdown(HEADERS, rows)) + "\n")


if __name__ == "__main__":
    main()
