"""agentopt as a library: tasks and metrics of your own in, a better agent out.

    import agentopt
    task = agentopt.Task.from_records(rows, inputs=["question", "context"], target="answer", metric=my_f1)
    result = agentopt.optimize(task, seed=agentopt.PromptAgent(instruction="Answer from the context."),
                               strategy=agentopt.strategies.APE(racing_budget=240),
                               budget=agentopt.Budget(task_calls=2000))
    result.best.run({"question": ..., "context": ...}); result.export("pkg/"); result.report("report/")
    agentopt.Archive("agentopt.db").top(10, task=task.name)

The ``agentopt`` command line and YAML configs build these same objects and run the same code.
Names are imported on first use: every ``agentopt.<subpackage>`` import (a Ray worker, the CLI)
runs this file first, and should not pay for the whole library.
"""

import importlib
from typing import TYPE_CHECKING, Any

_WHERE = {
    "CodeAgent": "agentopt.agents.code_agent", "GraphAgent": "agentopt.agents.graph", "Node": "agentopt.agents.graph",
    "RoleBudget": "agentopt.agents.budget", "AgentKind": "agentopt.agents.base",
    "register_kind": "agentopt.agents.kinds", "register_strategy": "agentopt.optimizer.strategies", "Demo": "agentopt.agents.prompt", "PostProcess": "agentopt.agents.prompt", "PromptAgent": "agentopt.agents.prompt",
    "ProgramAgent": "agentopt.agents.program", "from_langchain": "agentopt.agents.program",
    "Tunable": "agentopt.agents.base", "Demonstrated": "agentopt.agents.base", "Retrieving": "agentopt.agents.base", "Rendered": "agentopt.agents.base",
    "Checked": "agentopt.agents.base", "Archive": "agentopt.archive.facade",
    "Budget": "agentopt.optimizer.config:BudgetConfig", "CampaignConfig": "agentopt.optimizer.config",
    "Dedup": "agentopt.optimizer.config:DedupConfig", "Evaluation": "agentopt.optimizer.config:EvaluationConfig",
    "LocalModel": "agentopt.optimizer.config:LocalModelConfig", "Models": "agentopt.optimizer.config",
    "Role": "agentopt.optimizer.config:RoleConfig", "load_config": "agentopt.optimizer.config",
    "Best": "agentopt.optimizer.library", "Result": "agentopt.optimizer.library",
    "export_agent": "agentopt.optimizer.library", "optimize": "agentopt.optimizer.library",
    "resume": "agentopt.optimizer.library", "run_config": "agentopt.optimizer.library",
    "report": "agentopt.optimizer.library", "dashboard_app": "agentopt.optimizer.library", "status": "agentopt.optimizer.status", "Status": "agentopt.optimizer.status",
    "estimate": "agentopt.optimizer.budgets", "LocalModelServers": "agentopt.agents.local_model",
    "builtin_tasks": "agentopt.optimizer.tasks",
    "Example": "agentopt.optimizer.tasks", "Metric": "agentopt.optimizer.tasks", "Score": "agentopt.optimizer.tasks",
    "Task": "agentopt.optimizer.tasks", "register_metric": "agentopt.optimizer.tasks",
    "LLMJudge": "agentopt.optimizer.tasks.judge", "MetricFailed": "agentopt.optimizer.tasks.metrics",
    "MetricContractError": "agentopt.optimizer.tasks.metrics",
    "strategies": "agentopt.strategies",
    "load_sweep": "agentopt.optimizer.sweep_config", "parse_sweep": "agentopt.optimizer.sweep_config",
    "run_sweep": "agentopt.optimizer.sweep", "sweep_status": "agentopt.optimizer.status",
    "compare_sweep": "agentopt.optimizer.status", "sweep_cells": "agentopt.optimizer.status",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'agentopt' has no attribute {name!r}")
    module, _, attr = _WHERE[name].partition(":")
    value = importlib.import_module(module) if name == "strategies" else getattr(importlib.import_module(module),
                                                                                 attr or name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:
    from agentopt import strategies
    from agentopt.agents.base import AgentKind, Checked, Demonstrated, Rendered, Retrieving, Tunable
    from agentopt.agents.program import ProgramAgent, from_langchain
    from agentopt.agents.budget import RoleBudget
    from agentopt.agents.kinds import register_kind
    from agentopt.optimizer.strategies import register_strategy
    from agentopt.agents.code_agent import CodeAgent
    from agentopt.agents.graph import GraphAgent, Node
    from agentopt.agents.prompt import Demo, PostProcess, PromptAgent
    from agentopt.archive.facade import Archive
    from agentopt.optimizer.config import BudgetConfig as Budget
    from agentopt.optimizer.config import CampaignConfig, Models, load_config
    from agentopt.optimizer.config import DedupConfig as Dedup
    from agentopt.optimizer.config import EvaluationConfig as Evaluation
    from agentopt.optimizer.config import LocalModelConfig as LocalModel
    from agentopt.optimizer.config import RoleConfig as Role
    from agentopt.agents.local_model import LocalModelServers
    from agentopt.optimizer.budgets import estimate
    from agentopt.optimizer.library import (Best, Result, dashboard_app, export_agent, optimize, report, resume,
                                            run_config)
    from agentopt.optimizer.status import Status, compare_sweep, status, sweep_cells, sweep_status
    from agentopt.optimizer.sweep import run_sweep
    from agentopt.optimizer.sweep_config import load_sweep, parse_sweep
    from agentopt.optimizer.tasks import Example, Metric, Score, Task, builtin_tasks, register_metric
    from agentopt.optimizer.tasks.judge import LLMJudge
    from agentopt.optimizer.tasks.metrics import MetricContractError, MetricFailed
