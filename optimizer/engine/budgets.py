"""A campaign's budgets: the ledger it starts from, the share kept for the test split, and the
``--dry-run`` estimate.

The gate enforces the limits call by call; this module decides what the limits are. Spend is
read back from the archive (every paid call is stored with the campaign and role that paid), so a
resumed campaign continues from what was really spent, not from zero.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from agentopt.agents.models.budget import Price, RoleBudget, Spend, estimate_prompt_tokens, shrink
from agentopt.agents.models.gate import EndpointHealth
from agentopt.agents.base import Agent, Demonstrated, Rendered, Tunable
from agentopt.agents.prompt import Demo
from agentopt.agents.runtime.prompt_runtime import Inputs, input_text
from agentopt.archive.records import Paid
from agentopt.archive.store import Archive
from agentopt.optimizer.engine.config import ROLES, BudgetConfig, CampaignConfig, stored_config
from agentopt.optimizer.tasks import Example, Task
from agentopt.optimizer.tasks.judge import LLMJudge


class GateControl(Protocol):
    """The control half of a gate (:class:`~agentopt.agents.models.gate.LocalGate` or the Ray one)."""

    def configure(self, role: str, budget: RoleBudget, price: Price, spent: Spend, campaign: str | None = None) -> None: ...

    def set_deadline(self, deadline: float | None, campaign: str | None = None) -> None: ...

    def spent(self, role: str, campaign: str | None = None) -> Spend: ...

    def stopped(self, campaign: str | None = None) -> str | None: ...

    def finish(self, campaign: str) -> None: ...

    def health(self) -> dict[str, EndpointHealth]: ...

    def halt(self, reason: str, detail: str) -> None: ...


def _messages(agent: Agent, inputs: Inputs) -> list[dict[str, str]]:
    """What ``agent`` sends for ``inputs``: its own rendering, or (a program) its texts and the input
    as one message, which counts each prompt once."""
    if isinstance(agent, Rendered):
        return agent.messages(inputs)
    texts = agent.texts().values() if isinstance(agent, Tunable) else ()
    return [{"role": "user", "content": "\n".join([*texts, input_text(inputs)])}]


def with_demos(agent: Agent, examples: Sequence[Example]) -> Agent:
    """``agent`` showing ``examples`` as demonstrations (its own when there are none), if it shows any."""
    if not isinstance(agent, Demonstrated):
        return agent
    shown: Agent = agent.with_demos(tuple(Demo(input=e.input, output=e.target) for e in examples) or agent.demos)
    return shown  # with_demos answers an agent of the same kind


def example_cost(agent: Agent, examples: Sequence[Example], max_tokens: int, price: Price) -> Spend:
    """Upper-bound cost of running ``agent`` once on each example (one call per example)."""
    prompt = sum(estimate_prompt_tokens(_messages(agent, e.input)) for e in examples)
    return Spend(len(examples), prompt, max_tokens * len(examples), price.cost(prompt, max_tokens * len(examples)))


def judge_cost(config: CampaignConfig, task: Task, examples: int) -> Spend:
    """Upper-bound cost of the judge grading ``examples`` answers (none when the metric is not a judge)."""
    if not isinstance(task.metric, LLMJudge) or not examples:
        return Spend()
    shown = task.test[: config.evaluation.test_size] or task.train
    per_call = sum(estimate_prompt_tokens(task.metric.messages(e, e.target)) for e in shown) / len(shown)
    prompt, completion = round(per_call * examples), config.models.judge.max_tokens * examples
    return Spend(examples, prompt, completion, config.price("judge").cost(prompt, completion))


def test_examples(config: CampaignConfig, task: Task) -> int:
    """Answers the final test scoring produces: the seed's and each finalist's."""
    return len(task.test[: config.evaluation.test_size]) * (1 + config.evaluation.test_top)


@dataclass
class CampaignBudget:
    """Sets the gate's limits for one campaign: the search's share first, then the whole budget.
    The share kept for the final test scoring is the task role's (``test_reserve``) and, when a
    judge grades the answers, the judge role's (``judge_reserve``)."""

    gate: GateControl
    config: BudgetConfig
    prices: dict[str, Price]
    test_reserve: Spend = Spend()
    judge_reserve: Spend = Spend()
    campaign_id: str | None = None  # whose ledgers on the gate: set by begin

    def begin(self, archive: Archive, campaign_id: str, active_s: float, now: float) -> None:
        self.campaign_id = campaign_id
        spent = archive.spend(campaign_id)
        reserves = {"task": self.test_reserve, "judge": self.judge_reserve}
        for role in ROLES:
            price = self.prices[role]
            budget = getattr(self.config, role)
            if role in reserves and self.config.reserve_test:
                budget = shrink(budget, reserves[role])
            self.gate.configure(role, budget, price, spend_of(spent.get(role), price), campaign_id)
        wall = self.config.wall_time_s
        self.gate.set_deadline(None if wall is None else now + max(wall - active_s, 0), campaign_id)

    def final_phase(self) -> None:
        """Release the reserves: the final test scoring may use the whole task and judge budgets
        (and is no longer held by a sweep's total)."""
        if self.campaign_id is not None:
            self.gate.finish(self.campaign_id)
        for role in ("task", "judge"):
            self.gate.configure(role, getattr(self.config, role), self.prices[role],
                                self.gate.spent(role, self.campaign_id), self.campaign_id)

    def report(self) -> dict[str, Any]:
        """Spend against every limit, per role (for the summary and ``agentopt status``)."""
        return {role: {"spent": _as_dict(self.gate.spent(role, self.campaign_id)), "limits": getattr(self.config, role).model_dump()}
                for role in ROLES}


def spend_of(row: Paid | None, price: Price) -> Spend:
    """What an archived ledger row costs at ``price``."""
    paid = row or Paid(0, 0, 0)
    return Spend(paid.calls, paid.prompt_tokens, paid.completion_tokens,
                 price.cost(paid.prompt_tokens, paid.completion_tokens, paid.cached_tokens), paid.cached_tokens)


def ledger(archive: Archive, campaign_id: str, prices: dict[str, Price]) -> dict[str, dict[str, float]]:
    """What each role of a campaign has paid for, from the archive alone; ``cached_tokens`` and
    ``prompt_saved_s`` say what the endpoints' prompt caches took off the bill and the clock."""
    spent = archive.spend(campaign_id)
    paid = {role: spent.get(role, Paid(0, 0, 0)) for role in ROLES}
    return {role: {**_as_dict(spend_of(row, prices[role])), "cached_tokens": row.cached_tokens,
                   "prompt_saved_s": round(row.prompt_saved_s, 1)} for role, row in paid.items()}


def stored_ledger(archive: Archive, campaign_id: str,
                  config: CampaignConfig | None = None) -> dict[str, dict[str, float]]:
    """What each role of a stored campaign has paid, priced at the prices its config (``config``,
    or the stored one) set."""
    return ledger(archive, campaign_id, role_prices(config or stored_config(archive, campaign_id)))


def _as_dict(spend: Spend) -> dict[str, float]:
    return {"calls": int(spend.calls), "tokens": int(spend.tokens), "usd": round(spend.usd, 6)}


def role_prices(config: CampaignConfig) -> dict[str, Price]:
    return {role: config.price(role) for role in ROLES}


def test_reserve(config: CampaignConfig, task: Task, seed_agent: Agent) -> Spend:
    """What scoring the seed and the ``test_top`` finalists on the test split should cost; a finalist
    may carry up to ``candidate_demos`` demonstrations, so its prompt is estimated with that many,
    and an agent that makes several calls per example (code, graph) is counted at its plan's most."""
    # imported here and in estimate, not with the module: every strategy comes with it (the LLM client, optuna,
    # numpy), and the dashboard imports this module for its ledger
    from agentopt.optimizer.strategies import STRATEGIES

    test = task.test[: config.evaluation.test_size]
    plan = STRATEGIES[config.strategy.name].plan(config.strategy.params, task.train,
                                                 len(task.val[: config.evaluation.val_size]), config.dedup.probe_size)
    demos = max(config.strategy.params.get("candidate_demos", 0), plan.candidate_demos if plan else 0)
    winner = with_demos(seed_agent, task.train[:demos])
    price, max_tokens = config.price("task"), config.models.task.max_tokens
    finalists = example_cost(winner, test, max_tokens, price).scaled(config.evaluation.test_top)
    return (example_cost(seed_agent, test, max_tokens, price) + finalists).scaled(plan.calls_per_example if plan else 1)


def estimate(config: CampaignConfig, task: Task) -> dict[str, Any]:
    """Upper bounds on one campaign's calls, tokens and cost before anything runs (``--dry-run``).

    The cache can only make the real figures lower. A strategy that cannot bound its work says so
    (``None``)."""
    from agentopt.optimizer.strategies import STRATEGIES

    seed = config.seed_agent.agent()
    strategy = STRATEGIES[config.strategy.name]
    val = task.val[: config.evaluation.val_size]
    plan = strategy.plan(config.strategy.params, task.train, len(val), config.dedup.probe_size)
    reserve = test_reserve(config, task, seed)
    rows: dict[str, Any] = {"task": task.name, "strategy": config.strategy.name}
    if plan is None:
        return {**rows, "proposer": None, "task_role": None, "judge": None, "test_reserve": _as_dict(reserve)}
    candidate = with_demos(seed, task.train[: plan.candidate_demos])
    per_example = example_cost(candidate, task.train[:20], config.models.task.max_tokens, config.price("task"))
    per_example = per_example.scaled(1 / max(len(task.train[:20]), 1))
    searched = per_example.scaled(plan.task_examples * plan.calls_per_example)
    prompt = plan.proposer_calls * plan.proposer_prompt_tokens
    completion = plan.proposer_calls * config.models.proposer.max_tokens
    proposer = Spend(plan.proposer_calls, prompt, completion, config.price("proposer").cost(prompt, completion))
    judge = judge_cost(config, task, plan.task_examples + test_examples(config, task))
    return {**rows, "proposer": _as_dict(proposer), "task_role": _as_dict(searched + reserve),
            "judge": _as_dict(judge) if judge.calls else None, "test_reserve": _as_dict(reserve)}
