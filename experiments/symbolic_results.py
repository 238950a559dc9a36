"""The symbolic-learning results table: seed pipeline vs learned pipeline on the sealed test split.

Reads an archive written by `agentopt run experiments/symbolic_*.yaml` and prints, per finished
`symbolic` campaign, both pipelines' test scores with 95% CIs, how the learning went (steps
accepted, rolled back, edits refused and why) and the command that shows the learned pipeline's
lineage. Writes the same as markdown with `--out`.

    .venv/bin/python experiments/symbolic_results.py --db agentopt.db [--out experiments/results/symbolic.md]
"""

import argparse
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any

from rich.console import Console

from agentopt.archive.queries import campaign_candidates, label, stored_campaigns
from agentopt.archive.store import Archive, database_url
from agentopt.optimizer.engine.ui import markdown, table

HEADERS = ["task", "seed pipeline test [95% CI]", "learned pipeline test [95% CI]", "learned val",
           "learned pipeline", "accepted steps", "rollbacks", "refused edits", "proposer calls", "task calls",
           "wall s"]


def cell(summary: dict[str, Any]) -> str:
    if summary.get("mean") is None:
        return "-"
    return f"{summary['mean']:.2f} [{summary['ci_low']:.2f}, {summary['ci_high']:.2f}] (n={summary['n']})"


def accepted_steps(archive: Archive, campaign_id: str) -> int:
    """Graphs the learner moved to: every accepted step is scored on validation, rolled-back ones never are."""
    return sum(c.rationale.startswith("step") for c in campaign_candidates(archive, campaign_id, evaluated_on="val"))


def reason_kind(reason: str) -> str:
    """A refusal reason without its particulars, for counting."""
    return reason.split(":")[0].split(" (")[0].split(" {")[0].split(" in ")[0][:50]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", required=True, help="archive path or URL")
    parser.add_argument("--out", type=Path, help="also write the table as markdown here")
    args = parser.parse_args()
    archive = Archive(database_url(args.db), create=False)
    rows, details = [], []
    for campaign in stored_campaigns(archive, strategy="symbolic", status="finished"):
        campaign_id, task, summary = campaign.id, campaign.task, campaign.summary
        stats, best = summary["stats"], summary["best_candidate_id"]
        refused = [n.data for n in archive.notes(campaign_id, kind="rejected_edit")]
        val = archive.evaluations(best).get("val")
        accepted = accepted_steps(archive, campaign_id)
        rows.append([task, cell(summary["seed_test"]), cell(summary["best_test"]),
                     f"{val.mean:.2f}" if val and val.mean is not None else "-",
                     label(summary["best_agent"]), str(accepted), str(stats.get("rollbacks", 0)), str(len(refused)),
                     str(stats["proposer_llm_calls"]), str(stats["task_llm_calls"]), f"{summary['wall_s']:.0f}"])
        reasons = Counter(f"{r['optimizer']}: {reason_kind(r['reason'])}" for r in refused)
        details.append(f"- **{task}** (campaign `{campaign_id}`): refused edits by reason: "
                       + (", ".join(f"{k} ×{v}" for k, v in reasons.most_common()) or "none")
                       + f". Lineage: `agentopt archive lineage {best} --db {args.db}`.")
    Console().print(table("symbolic learning: seed vs learned pipeline", HEADERS, rows))
    for line in details:
        Console().print(line)
    if args.out:
        header = [f"# Agent symbolic learning ({date.today().isoformat()}, 2 cores, SmolLM2-135M-Instruct as task "
                  "model and proposer)", "", "Commands: `agentopt run experiments/symbolic_<task>.yaml --db DB` for "
                  "each config, then `.venv/bin/python experiments/symbolic_results.py --db DB --out ...`. Test scores "
                  "are on the sealed test split; the learned pipeline is the campaign's winner on validation.", ""]
        args.out.write_text("\n".join(header + markdown(HEADERS, rows) + [""] + details) + "\n")


if __name__ == "__main__":
    main()
