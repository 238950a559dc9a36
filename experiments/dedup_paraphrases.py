"""Functional deduplication on a paraphrase-heavy campaign: the same config with dedup off and on.

    .venv/bin/python experiments/dedup_paraphrases.py [experiments/paraphrase_dedup.yaml]

Each run gets its own fresh archive, so neither is served from the other's LLM cache. Prints, per
task: proposals, duplicates, full evaluations and the share avoided, task-model calls and the best
prompt's test score; then one pair of textually different prompts that were merged, with their
answers on the probe inputs. Last, a check of every merge: both prompts of each merged pair answer
the first 20 validation inputs (never used for the merge), and the table says how often they agree.
"""

import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from rich.console import Console

from agentopt.agents import agent_from_payload
from agentopt.agents.runtime.errors import LLMError
from agentopt.agents.models.llm import LLMClient
from agentopt.agents.models.local_model import LocalModelServers
from agentopt.archive.cache import SqlCallCache
from agentopt.archive.queries import campaign_candidates
from agentopt.archive.store import Archive
from agentopt.optimizer.engine.campaign import CampaignReport
from agentopt.optimizer.engine.config import CampaignConfig, load_config
from agentopt.optimizer.engine.runner import run_campaigns
from agentopt.optimizer.tasks import load_task
from agentopt.optimizer.tasks.metrics import normalise
from agentopt.optimizer.engine.ui import RichReporter, ci, pct, table

console = Console(stderr=True)


def run(config: CampaignConfig, policy: str, db: Path) -> tuple[Archive, list[CampaignReport]]:
    config = config.model_copy(update={"dedup": config.dedup.model_copy(update={"functional": policy})})
    archive = Archive(f"sqlite:///{db}")
    return archive, run_campaigns(config, archive, RichReporter(console))


def merges(archive: Archive, campaign_id: str) -> list[Any]:
    """The campaign's candidates merged into a functional twin, oldest first."""
    return campaign_candidates(archive, campaign_id, twins=True)


def check_merges(archive: Archive, reports: list[CampaignReport], config: CampaignConfig) -> list[list[object]]:
    """Run both sides of every merge on 20 validation inputs; a false merge shows as disagreement."""
    rows = []
    with LocalModelServers() as servers:
        llm = LLMClient(servers.endpoints, SqlCallCache(archive), config.models.task.sampling)
        for report in reports:
            task = load_task(report.task, seed=config.task_seed)
            inputs = [e.input for e in task.val[:20]]
            pairs = [(archive.candidate(d.twin_id).payload, d.payload) for d in merges(archive, report.campaign_id)]

            def answers(payload: dict[str, object]) -> list[str]:
                agent = agent_from_payload(payload)

                def answer(text: str) -> str:
                    try:
                        return normalise(agent.run(text, llm))
                    except LLMError as exc:  # an error never counts as agreement
                        return f"<error {id(exc)}>"

                with ThreadPoolExecutor(4) as pool:
                    return list(pool.map(answer, inputs))

            agree = [sum(a == b for a, b in zip(answers(t), answers(d), strict=True)) for t, d in pairs]
            rows.append([report.task, len(pairs), sum(n == len(inputs) for n in agree),
                         f"{100 * sum(agree) / max(len(agree) * len(inputs), 1):.1f}%" if agree else "-"])
    return rows


def merged_pair(archive: Archive, report: CampaignReport, config: CampaignConfig) -> list[str]:
    different = [d for d in merges(archive, report.campaign_id) if d.payload["instruction"] != archive.candidate(d.twin_id).payload["instruction"]]
    if not different:
        return [f"{report.task}: no merged pair with different instructions"]
    dup = different[0]
    twin = archive.candidate(dup.twin_id)
    task = load_task(report.task, seed=config.task_seed)
    probe = [e.id for e in task.train[: 2 * config.dedup.probe_size]]
    a, b = archive.outputs(twin.id, "train", probe), archive.outputs(dup.id, "train", probe)
    lines = [f"{report.task}: candidate #{dup.id} merged into #{twin.id}",
             f"  A #{twin.id}: {twin.payload['instruction']!r} + {len(twin.payload['demos'])} demos",
             f"  B #{dup.id}: {dup.payload['instruction']!r} + {len(dup.payload['demos'])} demos",
             f"  same demonstrations: {twin.payload['demos'] == dup.payload['demos']}"]
    lines += [f"  {i}: {task.example(i).input!r} -> A {a.get(i)!r} | B {b.get(i)!r}" for i in probe if i in b]
    return lines


def main() -> None:
    config = load_config(sys.argv[1] if len(sys.argv) > 1 else "experiments/paraphrase_dedup.yaml")
    rows, pairs, checks = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for policy in ("off", "verify"):
            archive, reports = run(config, policy, Path(tmp) / f"{policy}.db")
            for r in reports:
                s = r.stats
                merged, full = s["functional duplicates"], s["full evaluations"]
                rows.append([r.task, policy, s["proposals"], s["content duplicates"], merged,
                             s["functional matches rejected by verify"], full,
                             f"{100 * merged / max(merged + full, 1):.0f}%", s["examples evaluated"],
                             s["task_llm_calls"], f"{pct(r.best_test.mean)} {ci(r.best_test.ci_low, r.best_test.ci_high)}",
                             f"{r.wall_s:.0f}s"])
                if policy == "verify":
                    pairs += merged_pair(archive, r, config)
            if policy == "verify":
                checks = check_merges(archive, reports, config)
    out = Console(width=200)
    out.print(table("Functional dedup on a paraphrase-heavy APE campaign (same config, fresh archive each)",
                    ["task", "dedup", "proposals", "content dups", "functional dups", "rejected by verify",
                     "full evaluations", "avoided", "examples run", "task LLM calls", "best test [95% CI]", "wall"],
                    rows))
    for line in pairs:
        out.print(line, markup=False, highlight=False)
    out.print(table("Every merge re-checked on 20 validation inputs not used to merge",
                    ["task", "merged pairs", "pairs agreeing on all 20", "answers agreeing"], checks))


if __name__ == "__main__":
    main()
