"""``agentopt export``: turn an archived prompt agent into a pip-installable package.

The package carries the agent as JSON plus agentopt's own rendering / post-processing module
(copied, not re-implemented), and reads endpoint, model and key from the environment: no secret
and no local path ends up inside it.
"""

import json
import re
import shutil
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from importlib.resources import files
from pathlib import Path
from string import Template
from typing import Any

from agentopt.agents import prompt_runtime
from agentopt.agents.errors import ArchiveError
from agentopt.archive.queries import show
from agentopt.archive.store import Archive

TEMPLATES = files("agentopt.archive").joinpath("export_template")


def _fill(name: str, **values: Any) -> str:
    return Template(TEMPLATES.joinpath(name).read_text(encoding="utf-8")).substitute(**values)


def _agentopt_version() -> str:
    try:
        return version("agentopt")
    except PackageNotFoundError:
        return "unknown"


def export_candidate(archive: Archive, candidate_id: int, out: Path) -> Path:
    """Write the package for ``candidate_id`` into ``out`` (created; must be empty if it exists)."""
    record = show(archive, candidate_id)
    if record["kind"] != "prompt":
        raise ArchiveError(f"candidate {candidate_id} is a {record['kind']} agent; only prompt agents export yet")
    if out.exists() and any(out.iterdir()):
        raise ArchiveError(f"output directory {out} is not empty")
    campaign = archive.campaign(record["campaign_id"])
    task_role = campaign.config.get("models", {}).get("task", {})
    model = task_role.get("model", "local")
    model_name = "smollm2-135m-instruct" if model == "local" else model
    slug = re.sub(r"[^a-z0-9]+", "_", record["task"].lower()).strip("_") or "task"
    package = f"agentopt_{slug}_{candidate_id}"
    dist = package.replace("_", "-")
    payload = record["payload"]
    sampling = {"temperature": task_role.get("temperature", 0.0), "max_tokens": task_role.get("max_tokens", 32)}

    pkg_dir = out / package
    pkg_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(prompt_runtime.__file__), pkg_dir / "prompt_runtime.py")
    (pkg_dir / "__init__.py").write_text(TEMPLATES.joinpath("package_init.py").read_text(encoding="utf-8"))
    (pkg_dir / "agent.json").write_text(json.dumps(
        {"payload": payload, "model": model_name, "sampling": sampling, "task": record["task"],
         "candidate_id": candidate_id, "campaign_id": record["campaign_id"]}, indent=2))

    evals = record["evaluations"]
    score_rows = "\n".join(
        f"| {split} | {100 * e['mean']:.1f} | [{100 * e['ci_low']:.1f}, {100 * e['ci_high']:.1f}] | {e['n']} | {e['n_errors']} |"
        for split, e in sorted(evals.items()) if e["mean"] is not None
    ) or "| - | not evaluated | | | |"
    example_input = payload["demos"][0]["input"] if payload.get("demos") else "your input"
    demos = "\n".join(f"- `{d['input']}` → `{d['output']}`" for d in payload.get("demos", []))
    task_info = campaign.config.get("task", {})
    (out / "pyproject.toml").write_text(_fill("pyproject.toml.tmpl", dist=dist, package=package,
                                              description=f"agentopt agent for task {record['task']}"))
    (out / "README.md").write_text(_fill(
        "README.md.tmpl", dist=dist, package=package, task=record["task"], description=task_info.get("description", ""),
        example_input=example_input, score_rows=score_rows, metric=task_info.get("metric", "unknown"),
        model=model_name, temperature=sampling["temperature"], max_tokens=sampling["max_tokens"],
        campaign_id=record["campaign_id"], candidate_id=candidate_id, strategy=record["strategy"],
        rationale=record["rationale"] or "-", parents=", ".join(map(str, record["parents"])) or "none",
        date=datetime.now(UTC).date().isoformat(), version=_agentopt_version(), instruction=payload["instruction"],
        n_demos=len(payload.get("demos", [])), demos=demos))
    return out
