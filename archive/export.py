"""``agentopt export``: turn any archived agent (prompt, code or graph) into a pip-installable package.

The package carries the agent as JSON, agentopt's own runtime modules (copied, not re-implemented:
rendering, post-processing, the graph executor, the code framework and the sandbox), the test
examples recorded when the agent was scored, and a card of what it achieved and costs. Endpoint,
model and key come from the environment: no secret and no local path ends up inside it.
"""

import json
import os
import re
import shlex
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from importlib.resources import files
from pathlib import Path
from string import Template
from types import ModuleType
from typing import Any

import networkx as nx

from agentopt.agents.runtime import code_framework, errors, graph_runtime, prompt_runtime, sandbox, tools, wire
from agentopt.agents.kinds import kind_of
from agentopt.agents.models.budget import Price
from agentopt.agents.runtime.errors import ConfigError
from agentopt.archive.errors import ArchiveError
from agentopt.agents.models.local_model import LOCAL_MODEL_NAME
from agentopt.archive.models import Campaign, Result
from agentopt.agents.runtime.prompt_runtime import Inputs
from agentopt.archive.queries import CandidateRecord, lineage, show
from agentopt.archive.store import Archive

TEMPLATES = files("agentopt.archive").joinpath("export_template")
RUNTIME = (errors, sandbox, tools, prompt_runtime, graph_runtime, code_framework, wire)
"""Modules copied verbatim into ``<package>/_agentopt/``, with the agent kind's own runtime module;
their imports are relative, so they run there as they do here. The sandbox's other files (its
parent-side modules and the child runner's) travel with it, as ``sandbox.FILES`` lists them."""

Lookup = Callable[[str], tuple[Inputs, str]]
"""example id -> (input, target): the archive stores outputs, the task holds the inputs."""


@dataclass(frozen=True)
class Names:
    package: str  # import name
    dist: str  # distribution and console-script name


def names(task: str, candidate_id: int) -> Names:
    slug = re.sub(r"[^a-z0-9]+", "_", task.lower()).strip("_") or "task"
    package = f"agentopt_{slug}_{candidate_id}"
    return Names(package, package.replace("_", "-"))


def _fill(name: str, **values: Any) -> str:
    return Template(TEMPLATES.joinpath(name).read_text(encoding="utf-8")).substitute(**values)


def _agentopt_version() -> str:
    try:
        return version("agentopt")
    except PackageNotFoundError:
        return "unknown"


def _model(role: dict[str, Any]) -> str:
    model = role.get("model", "local")
    return LOCAL_MODEL_NAME if model == "local" else model


def regression_examples(record: CandidateRecord, split: str, lookup: Lookup) -> list[dict[str, Any]]:
    """The candidate's scored examples of ``split`` with their inputs: what the package's regression test replays."""
    found = []
    for result in record.results:
        if result.split != split or result.error is not None:
            continue
        try:
            inputs, target = lookup(result.example_id)
        except KeyError:
            raise ArchiveError(f"{split} example {result.example_id!r} of candidate {record.id} is not in "
                               f"task {record.task!r} any more; export needs the data the agent was scored on") \
                from None
        found.append({"example_id": result.example_id, "input": inputs, "target": target,
                      "output": result.output, "score": result.score})
    return found


def _shown(inputs: Inputs | None) -> dict[str, str]:
    """An example input as the card's commands write it: shell-quoted, and as a Python literal."""
    value: Inputs = "your input" if inputs is None else inputs
    text = value if isinstance(value, str) else json.dumps(dict(value), ensure_ascii=False)
    return {"cli_input": shlex.quote(text), "py_input": json.dumps(value, ensure_ascii=False)}


def cost_line(results: list[Result], price: Price) -> str:
    """What one answer costs, from scored examples' usage: requests, tokens and, if priced, dollars."""
    used = [r for r in results if r.error is None]
    if not used:
        return "not measured"
    requests = sum(r.llm_calls + r.cache_hits for r in used) / len(used)
    tokens = sum(r.footprint_tokens for r in used) / len(used)
    paid = [r for r in used if r.llm_calls]
    prompt_share = sum(r.prompt_tokens for r in paid) / max(1, sum(r.prompt_tokens + r.completion_tokens for r in paid))
    usd = price.cost(tokens * prompt_share, tokens * (1 - prompt_share))
    money = f"${usd:.6f} at the campaign's prices" if usd else "$0 (local or unpriced model)"
    return f"{requests:.1f} LLM requests and {tokens:.0f} tokens per answer (mean of {len(used)} examples); {money}"


def lineage_lines(archive: Archive, candidate_id: int) -> str:
    graph = lineage(archive, candidate_id)
    lines = []
    for node in nx.lexicographical_topological_sort(graph):
        data = graph.nodes[node]
        val = f", val {100 * data['val_score']:.1f}%" if "val_score" in data else ""
        lines.append(f"- #{node} `{data.get('strategy', '?')}`{val}: {data.get('rationale') or '-'} — {data.get('label', '')}")
    return "\n".join(lines)


def _vendor(target: Path, kind_runtime: ModuleType) -> None:
    target.mkdir()
    (target / "__init__.py").write_text(f'"""agentopt {_agentopt_version()} runtime, copied by `agentopt export`."""\n')
    for module in {*RUNTIME, kind_runtime}:
        if module.__file__ is None:
            raise ArchiveError(f"cannot vendor {module.__name__}: it was not loaded from a source file")
        shutil.copyfile(module.__file__, target / Path(module.__file__).name)
    for path in sandbox.FILES:
        shutil.copyfile(path, target / path.name)


def _nearest_folder(out: Path) -> Path:
    """``out`` if it is a folder, else its nearest existing ancestor; refuses a file on the way."""
    here = next(p for p in (out.absolute(), *out.absolute().parents) if p.exists())
    if not here.is_dir():
        raise ConfigError(f"cannot write {out}: {'it' if here == out.absolute() else here} is a file, not a folder")
    return here


@contextmanager
def staged_output(out: Path, empty: bool) -> Iterator[Path]:
    """A fresh folder to write into; its files reach ``out`` only once the body has succeeded.

    The staging folder lies in ``out`` or its nearest existing ancestor, so it is on the same file
    system and the final step is a rename; ``out``'s missing parents are made only then. A failure
    (bad data, a full disk, Ctrl-C) removes it, so ``out`` is never left half-written or half-made.
    ``empty`` refuses an ``out`` that already holds something; otherwise its files of the same name
    are replaced.
    """
    where = _nearest_folder(out)
    if empty and where == out.absolute() and any(out.iterdir()):
        raise ArchiveError(f"output directory {out} is not empty")
    staging = where / f".{out.name}.{uuid.uuid4().hex[:8]}.partial"
    try:
        staging.mkdir()
    except OSError as exc:
        raise ConfigError(f"cannot write {out}: cannot make a folder in {where} ({exc.strerror})") from None
    try:
        yield staging
        if where == out.absolute():
            for entry in staging.iterdir():
                os.replace(entry, out / entry.name)
            staging.rmdir()
        else:
            out.parent.mkdir(parents=True, exist_ok=True)
            staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def export_candidate(archive: Archive, candidate_id: int, out: Path, lookup: Lookup) -> Path:
    """Write the package for ``candidate_id`` into ``out`` (created; must be empty if it exists)."""
    record = show(archive, candidate_id)
    split = next((s for s in ("test", "val") if any(r.split == s and r.error is None for r in record.results)), None)
    if split is None:
        raise ArchiveError(f"candidate {candidate_id} has no scored test or validation example, so there is nothing "
                           "to put on its card or replay; pick one from `agentopt archive top`")
    kind = kind_of(record.payload)
    if problem := kind.unexportable(record.payload):
        raise ArchiveError(f"candidate {candidate_id} cannot be exported: {problem}")
    campaign = archive.campaign(record.campaign_id)
    task_role = campaign.config.get("models", {}).get("task", {})
    sampling = {"temperature": task_role.get("temperature", 0.0), "max_tokens": task_role.get("max_tokens", 32),
                "top_p": 1.0, "stop": []}
    examples = regression_examples(record, split, lookup)
    name = names(record.task, candidate_id)
    readme = card(archive, record, campaign, name, examples, split, sampling)

    with staged_output(out, empty=True) as folder:
        package = folder / name.package
        package.mkdir()
        _vendor(package / "_agentopt", kind.runtime)
        for template, target in (("package_init.py", "__init__.py"), ("regression.py", "regression.py")):
            (package / target).write_text(TEMPLATES.joinpath(template).read_text(encoding="utf-8"))
        fields = campaign.config.get("task", {}).get("inputs", ["input"])
        (package / "agent.json").write_text(json.dumps(
            {"payload": record.payload, "runtime": Path(kind.runtime.__file__ or "").stem, "model": _model(task_role),
             "embedder": _model(campaign.config.get("models", {}).get("embedder", {})), "sampling": sampling,
             "task": record.task, "inputs": [] if fields == ["input"] else fields,
             "candidate_id": candidate_id,
             "campaign_id": record.campaign_id}, indent=2))
        (package / "regression.json").write_text(json.dumps(examples, indent=2))
        (folder / "tests").mkdir()
        (folder / "tests" / "test_regression.py").write_text(_fill("test_regression.py.tmpl", package=name.package))
        (folder / "pyproject.toml").write_text(_fill(
            "pyproject.toml.tmpl", dist=name.dist, package=name.package,
            description=f"agentopt {record.payload['kind']} agent for task {record.task}"))
        (folder / "README.md").write_text(readme)
    return out


def card(archive: Archive, record: CandidateRecord, campaign: Campaign, name: Names, examples: list[dict[str, Any]],
         split: str, sampling: dict[str, Any]) -> str:
    """The package's README: how to call it, then the evaluation card."""
    config, payload = campaign.config, record.payload
    models = config.get("models", {})
    task_role = models.get("task", {})
    score_rows = "\n".join(
        f"| {s} | {100 * e.mean:.1f} | [{100 * (e.ci_low or 0):.1f}, {100 * (e.ci_high or 0):.1f}] | {e.n} | {e.n_errors} |"
        for s, e in sorted(record.evaluations.items()) if s in ("val", "test") and e.mean is not None
    ) or "| - | not evaluated | | | |"
    task_info = config.get("task", {})
    price = Price(**config.get("prices", {}).get(task_role.get("model", "local"), {}))
    return _fill(
        "README.md.tmpl", dist=name.dist, package=name.package, task=record.task, kind=payload["kind"],
        description=task_info.get("description", ""), **_shown(examples[0]["input"] if examples else None),
        score_rows=score_rows, metric=task_info.get("metric", "unknown"),
        cost=cost_line(archive.results(record.id, split), price), model=_model(task_role),
        temperature=sampling["temperature"], max_tokens=sampling["max_tokens"], proposer=_model(models.get("proposer", {})),
        campaign_id=record.campaign_id, campaign_date=campaign.created_at.date().isoformat(),
        candidate_id=record.id, strategy=record.strategy, lineage=lineage_lines(archive, record.id),
        n_regression=len(examples), regression_split=split, date=datetime.now(UTC).date().isoformat(),
        version=_agentopt_version(), agent=kind_of(payload).describe(payload))
