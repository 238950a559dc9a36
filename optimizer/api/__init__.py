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

The public names are written once, in the ``TYPE_CHECKING`` block at the end of this file, in the
two forms type checkers take as this module's exports (``from m import X as X``, and ``X = Y`` for a
name imported under another); mypy and IDEs read them as they are. At run time the first name looked
up parses that block (``ast``, once) into a map of name -> module, and each name then imports only its
own module. A hand-kept map beside the imports drifted from them; a ``.pyi`` stub read at run time
(lazy_loader's ``attach_stub``) would add a dependency and a file the package data must ship.
"""

import importlib
from functools import cache
from typing import TYPE_CHECKING, Any


@cache
def _where() -> dict[str, tuple[str, str]]:
    """Each public name's module and the attribute it is there, read from the ``TYPE_CHECKING`` block:
    on the first name looked up, so ``import agentopt`` alone parses nothing."""
    import ast
    from pathlib import Path

    tree = ast.parse(Path(__file__).read_text(encoding="utf-8"))
    [block] = [node for node in tree.body if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"]
    imported: dict[str, tuple[str, str]] = {}
    public: dict[str, tuple[str, str]] = {}
    for node in block.body:
        match node:
            case ast.ImportFrom(module=str(module), names=names):
                for alias in names:
                    imported[alias.asname or alias.name] = (module, alias.name)
                    if alias.asname == alias.name:
                        public[alias.name] = (module, alias.name)
            case ast.Assign(targets=[ast.Name(id=name)], value=ast.Name(id=source)):
                public[name] = imported[source]
    return public


def __getattr__(name: str) -> Any:
    if name == "__all__":
        return sorted(_where())
    if name not in _where():
        raise AttributeError(f"module 'agentopt' has no attribute {name!r}")
    module, attr = _where()[name]
    # a submodule of this package (``agentopt.strategies``) is imported, not looked up here again
    value = importlib.import_module(f"{module}.{attr}") if module == __name__ else getattr(
        importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(_where())


if TYPE_CHECKING:
    from agentopt import strategies as strategies
    from agentopt.agents.base import AgentKind as AgentKind
    from agentopt.agents.base import Checked as Checked
    from agentopt.agents.base import Demonstrated as Demonstrated
    from agentopt.agents.base import Rendered as Rendered
    from agentopt.agents.base import Retrieving as Retrieving
    from agentopt.agents.base import Tunable as Tunable
    from agentopt.agents.models.budget import RoleBudget as RoleBudget
    from agentopt.agents.code_agent import CodeAgent as CodeAgent
    from agentopt.agents.graph import GraphAgent as GraphAgent
    from agentopt.agents.graph import Node as Node
    from agentopt.agents.kinds import register_kind as register_kind
    from agentopt.agents.models.local_model import LocalModelServers as LocalModelServers
    from agentopt.agents.program import ProgramAgent as ProgramAgent
    from agentopt.agents.program import from_langchain as from_langchain
    from agentopt.agents.prompt import Demo as Demo
    from agentopt.agents.postprocess import PostProcess as PostProcess
    from agentopt.agents.prompt import PromptAgent as PromptAgent
    from agentopt.archive.facade import Archive as Archive
    from agentopt.optimizer.engine.budgets import estimate as estimate
    from agentopt.optimizer.engine.config import BudgetConfig, DedupConfig, EvaluationConfig, LocalModelConfig, RoleConfig
    from agentopt.optimizer.engine.config import CampaignConfig as CampaignConfig
    from agentopt.optimizer.engine.config import Models as Models
    from agentopt.optimizer.engine.config import load_config as load_config
    Budget = BudgetConfig
    Dedup = DedupConfig
    Evaluation = EvaluationConfig
    LocalModel = LocalModelConfig
    Role = RoleConfig
    from agentopt.library import Best as Best
    from agentopt.library import Result as Result
    from agentopt.library import dashboard_app as dashboard_app
    from agentopt.optimizer.engine.stored import export_agent as export_agent
    from agentopt.library import optimize as optimize
    from agentopt.library import report as report
    from agentopt.library import resume as resume
    from agentopt.library import run_config as run_config
    from agentopt.optimizer.frontends.status import Status as Status
    from agentopt.optimizer.frontends.status import compare_sweep as compare_sweep
    from agentopt.optimizer.frontends.status import status as status
    from agentopt.optimizer.frontends.status import sweep_cells as sweep_cells
    from agentopt.optimizer.frontends.status import sweep_status as sweep_status
    from agentopt.optimizer.strategies import register_strategy as register_strategy
    from agentopt.optimizer.engine.sweep import run_sweep as run_sweep
    from agentopt.optimizer.engine.sweep_config import load_sweep as load_sweep
    from agentopt.optimizer.engine.sweep_config import parse_sweep as parse_sweep
    from agentopt.optimizer.tasks import Example as Example
    from agentopt.optimizer.tasks import Metric as Metric
    from agentopt.optimizer.tasks import Score as Score
    from agentopt.optimizer.tasks import Task as Task
    from agentopt.optimizer.tasks import builtin_tasks as builtin_tasks
    from agentopt.optimizer.tasks import register_metric as register_metric
    from agentopt.optimizer.tasks.judge import LLMJudge as LLMJudge
    from agentopt.optimizer.tasks.metrics import MetricContractError as MetricContractError
    from agentopt.optimizer.tasks.metrics import MetricFailed as MetricFailed
