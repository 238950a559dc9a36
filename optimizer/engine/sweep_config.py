"""A sweep: one run config plus a ``matrix`` of tasks x strategies x seeds x model settings.

A sweep file is a campaign config (everything in it is the base of every campaign) with two more
sections::

    matrix:
      tasks: [larger_animal, antonyms]                 # default: the config's own tasks
      strategies: [ape, {name: opro, params: {steps: 3}, label: opro-3}]  # default: the config's strategy
      seeds: [0, 1, 2]                                 # default: the config's seed
      models: [{}, {task: {temperature: 0.7}}]         # optional: overrides of `models`, one arm each
    sweep:
      concurrency: 4                                   # campaigns at once
      budget: {task_calls: 20000}                      # for the whole sweep (per campaign: `budget`)

Each cell of the matrix becomes one campaign config of a single task, validated like any other, so
a mistake in any cell is one line naming the cell before anything runs. An *arm* is what is being
compared: the strategy with its params, plus the model settings when several are swept; tables name
it by the strategy's ``label`` when it has one.
"""

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from pydantic import Field, StrictInt, TypeAdapter, ValidationError, field_validator

from agentopt.agents.runtime.errors import ConfigError
from agentopt.optimizer.engine.config import (LOCAL, ROLES, BudgetConfig, CampaignConfig, Frozen, StrategyConfig,
                                       first_error, load_yaml, parse_config)
from agentopt.optimizer.tasks import Name

F = TypeVar("F", bound=Frozen)


class Arm(StrategyConfig):
    """A strategy of the matrix, with the name tables show it by (default: the name and its params)."""

    label: str | None = Field(None, min_length=1, max_length=60)


class Matrix(Frozen):
    tasks: tuple[Any, ...] | None = Field(None, description="task entries, as under `tasks` (default: the config's)")
    strategies: tuple[Arm, ...] | None = Field(None, description="strategies, a name or {name, params, label}")
    seeds: tuple[StrictInt, ...] | None = Field(None, description="search seeds (integers)")
    models: tuple[dict[str, Any], ...] | None = Field(None, description="overrides of `models`, one arm each")

    @field_validator("strategies", mode="before")
    @classmethod
    def _names(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return [{"name": v} if isinstance(v, str) else v for v in value]
        return value

    @field_validator("tasks", "strategies", "seeds", "models")
    @classmethod
    def _not_empty(cls, value: tuple[Any, ...] | None) -> tuple[Any, ...] | None:
        if value is not None and not value:
            raise ValueError("an empty list gives no campaigns; leave it out to use the config's own")
        return value


class SweepSettings(Frozen):
    concurrency: int = Field(4, ge=1, description="campaigns running at once")
    budget: BudgetConfig = Field(BudgetConfig(), description="limits for the whole sweep, over all its campaigns")


@dataclass(frozen=True)
class Cell:
    """One campaign of a sweep: ``key`` names it in the archive, so a resumed sweep finds it."""

    key: str
    task: str
    arm: str
    seed: int
    config: CampaignConfig


class Label(NamedTuple):
    """A cell as reports show it, without loading its task: what the archive stores for each cell."""

    key: str
    task: str
    arm: str
    seed: int


@dataclass(frozen=True)
class Sweep:
    name: str
    settings: SweepSettings
    cells: tuple[Cell, ...]
    source: dict[str, Any]  # the file's contents, stored with the sweep so `sweep resume` needs only the id

    def record(self) -> dict[str, Any]:
        """What the archive keeps: the source (a resume expands it again) and each cell's label."""
        return {"source": self.source, "cells": [Label(c.key, c.task, c.arm, c.seed)._asdict() for c in self.cells]}


def labels(record: dict[str, Any]) -> list[Label]:
    """The cells of a stored sweep (see :meth:`Sweep.record`), in matrix order."""
    return [Label(**cell) for cell in record["cells"]]


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        merged[key] = _merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) \
            else value
    return merged


def _arm(strategy: StrategyConfig, models: dict[str, Any] | None) -> str:
    label = getattr(strategy, "label", None) or strategy.name + (
        "(" + ", ".join(f"{k}={v}" for k, v in sorted(strategy.params.items())) + ")" if strategy.params else "")
    if models:
        label += " " + json.dumps(models, sort_keys=True, separators=(",", ":"))
    return label


def _task_name(entry: Any) -> str:
    if isinstance(entry, str):
        return Path(entry).stem if entry.endswith((".jsonl", ".csv")) else entry
    return str(entry.get("name") or Path(str(entry.get("path", "task"))).stem) if isinstance(entry, dict) else str(entry)


def _section(model: type[F], value: object, name: str, source: str) -> F:
    try:
        return model.model_validate(value or {})
    except ValidationError as exc:
        joint = "." if exc.errors()[0]["loc"] else ": "
        raise ConfigError(f"{source}: {name}{joint}{first_error(exc)}") from None


def _priced(settings: SweepSettings, config: CampaignConfig, where: str) -> None:
    """A dollar limit on the whole sweep needs a price for every model a cell pays for."""
    for role in ROLES:
        model = getattr(config.models, role).model
        if getattr(settings.budget, role).usd is not None and model != LOCAL and model not in config.prices:
            raise ConfigError(f"{where}: sweep.budget.{role}.usd needs a price for model {model!r} under prices")


def parse_sweep(data: object, source: str = "sweep") -> Sweep:
    """The sweep's cells, each a validated campaign config; a bad matrix or cell is one line."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of settings at the top level")
    base = {k: v for k, v in data.items() if k not in ("matrix", "sweep")}
    if "matrix" not in data:
        raise ConfigError(f"{source}: a sweep needs a matrix (tasks, strategies, seeds, models); "
                          "a single campaign is `agentopt run`")
    matrix = _section(Matrix, data["matrix"], "matrix", source)
    settings = _section(SweepSettings, data.get("sweep"), "sweep", source)
    if not any((matrix.tasks, matrix.strategies, matrix.seeds, matrix.models)):
        raise ConfigError(f"{source}: matrix: empty; list tasks, strategies, seeds or models to sweep over")
    tasks = list(matrix.tasks or base.get("tasks") or [])
    if not tasks:
        raise ConfigError(f"{source}: matrix.tasks: no tasks (give them here or under tasks)")
    strategies = list(matrix.strategies or [_section(StrategyConfig, base.get("strategy"), "strategy", source)])
    seeds = list(matrix.seeds or [base.get("seed", 0)])  # validated with each cell's config
    variants: list[dict[str, Any] | None] = list(matrix.models or [None])
    try:  # each cell's name has a label after it, so the sweep's own name is checked here
        name = TypeAdapter(Name).validate_python(str(base.get("name", "sweep")))
    except ValidationError as exc:
        raise ConfigError(f"{source}: name: {first_error(exc)}") from None
    arms = [_arm(strategy, None) for strategy in strategies]
    if len(set(arms)) != len(arms):
        raise ConfigError(f"{source}: matrix.strategies: two strategies are both called "
                          f"{next(a for a in arms if arms.count(a) > 1)!r}; give them different labels")
    cells = []
    for task in tasks:
        for strategy in strategies:
            chosen = strategy.model_dump(include={"name", "params"})  # the label only names the arm
            for variant in variants:
                arm = _arm(strategy, variant if len(variants) > 1 else None)
                for seed in seeds:
                    label = f"{_task_name(task)} / {arm} / seed {seed}"
                    cell = {**base, "name": f"{name}: {label}"[:200], "tasks": [task], "seed": seed,
                            "strategy": chosen}
                    if variant:
                        cell["models"] = _merge(base.get("models") or {}, variant)
                    try:
                        config = parse_config(cell, f"{source}: cell {label}")
                    except ConfigError as exc:
                        raise ConfigError(str(exc)) from None
                    key = hashlib.sha256(json.dumps([task, chosen, variant, seed], sort_keys=True,
                                                    default=str).encode()).hexdigest()[:16]
                    cells.append(Cell(key, _task_name(task), arm, config.seed, config))
                    _priced(settings, config, f"{source}: cell {label}")
    keys = [c.key for c in cells]
    if len(set(keys)) != len(keys):
        raise ConfigError(f"{source}: matrix lists the same cell twice")
    return Sweep(name, settings, tuple(cells), data)


def load_sweep(path: str | Path) -> Sweep:
    path = Path(path)
    return parse_sweep(load_yaml(path), str(path))
