"""Candidate instructions from the proposer, shared by every strategy that searches a pool.

APE's forward generation (instructions induced from demonstration subsamples) and its Monte Carlo
paraphrases are the cheapest reliable proposals a small proposer makes, so APE, random search,
INSTINCT and the Optuna strategy all draw their instructions from here, validated and counted the
same way. A seed with several texts (a program's prompts, a graph's nodes) gets each instruction
in one of them, in turn, so every candidate differs from the seed in one text.
"""

import random
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import Field

from agentopt.agents.models.budget import estimate_prompt_tokens
from agentopt.agents.base import Demonstrated
from agentopt.agents.runtime.errors import LLMError
from agentopt.agents.models.llm import Completion
from agentopt.agents.prompt import Demo
from agentopt.agents.runtime.prompt_runtime import input_text
from agentopt.optimizer.strategies.base import Params, Plan, StrategyContext, TrialResult, TunableAgent
from agentopt.optimizer.strategies.proposals import (
    FORWARD_TEMPLATE,
    RESAMPLE_TEMPLATE,
    clean_instruction,
    format_pairs,
    instruct,
    propose,
    prose,
)
from agentopt.optimizer.tasks import Example


class PoolParams(Params):
    n_subsamples: int = Field(10, ge=1, description="demonstration subsamples shown to the proposer")
    demos_per_subsample: int = Field(5, ge=1)
    samples_per_subsample: int = Field(3, ge=1, description="proposer samples per subsample")
    candidate_demos: int = Field(0, ge=0, description="demonstrations each candidate keeps (0 = zero-shot, as in APE)")
    include_seed: bool = True
    seed_with_demos: bool = Field(True, description="also offer the seed instruction with each subsample's kept "
                                  "demonstrations, so a proposed instruction must beat a neutral one to win")
    proposer_workers: int = Field(2, ge=1)


@dataclass(frozen=True)
class Candidate:
    agent: TunableAgent
    rationale: str
    parents: tuple[int, ...] = ()


def retold(ctx: StrategyContext, agent: TunableAgent, name: str, instruction: str) -> TunableAgent | None:
    """``agent`` with text ``name`` telling ``instruction`` (see :func:`instruct`), or ``None``
    with the reason counted when the agent refuses the new text."""
    try:
        child: TunableAgent = agent.with_text(name, instruct(agent.texts()[name], instruction))  # same kind as agent
        return child
    except ValueError:
        ctx.stats.reject("refused by the agent")
        return None


def described(agent: TunableAgent) -> str:
    """An agent's texts (and demonstrations) as one text, for embeddings."""
    demos = agent.demos if isinstance(agent, Demonstrated) else ()
    return "\n\n".join([*(prose(t) for t in agent.texts().values()),
                         *(f"Input: {input_text(d.input)}\nOutput: {d.output}" for d in demos)])


def accept(ctx: StrategyContext, reply: Completion | LLMError, demos: Sequence[Example]) -> str | None:
    """The cleaned instruction in ``reply``, or ``None`` with the reason counted in the stats."""
    ctx.stats.proposals += 1
    if isinstance(reply, LLMError):
        ctx.stats.reject("proposer error")
        return None
    proposed = clean_instruction(reply, demos)
    if proposed.instruction is None:
        ctx.stats.reject(proposed.reason, reply.text)
    return proposed.instruction


def generate(ctx: StrategyContext, rng: random.Random, p: PoolParams) -> list[Candidate]:
    """The seed, forward-generated instructions and (optionally) the seed with their demonstrations,
    without content duplicates, in a deterministic order."""
    subsamples = [rng.sample(ctx.train, min(p.demos_per_subsample, len(ctx.train))) for _ in range(p.n_subsamples)]
    requests = [([{"role": "user", "content": FORWARD_TEMPLATE.format(pairs=format_pairs(demos))}],
                 i * p.samples_per_subsample + j)
                for i, demos in enumerate(subsamples) for j in range(p.samples_per_subsample)]
    replies = propose(ctx.proposer, requests, p.proposer_workers)
    seed, names = ctx.seed_agent, list(ctx.seed_agent.texts())
    demonstrated = isinstance(seed, Demonstrated)
    kept = [tuple(Demo(input=e.input, output=e.target) for e in demos[: p.candidate_demos]) for demos in subsamples]
    pool = [Candidate(seed, "seed")] if p.include_seed else []
    for n, reply in enumerate(replies):
        instruction = accept(ctx, reply, subsamples[n // p.samples_per_subsample])
        name = names[n % len(names)]
        agent = retold(ctx, seed, name, instruction) if instruction else None
        if agent is not None:
            if demonstrated:
                assert isinstance(agent, Demonstrated)  # with_text keeps the seed's kind
                agent = agent.with_demos(kept[n // p.samples_per_subsample])
            pool.append(Candidate(agent, "forward generation from demonstrations"
                                  + (f" ({name})" if len(names) > 1 else "")))
    if demonstrated and p.candidate_demos and p.seed_with_demos:
        pool += [Candidate(seed.with_demos(demos), "seed instruction with demonstrations") for demos in kept]
    return unique(ctx, pool)


def paraphrase(ctx: StrategyContext, parents: Sequence[tuple[TunableAgent, int]], samples: int, round_no: int,
               workers: int) -> list[Candidate]:
    """Variations that keep each parent's meaning (APE's iterative Monte Carlo step); sample ``j``
    varies the parent's ``j``-th text that has prose to vary."""
    targets = []
    for agent, parent_id in parents:
        texts = [(name, prose(text)) for name, text in agent.texts().items() if prose(text)]
        targets += [(agent, parent_id, *texts[j % len(texts)]) for j in range(samples) if texts]
    requests = [([{"role": "user", "content": RESAMPLE_TEMPLATE.format(instruction=text)}],
                 1000 * (round_no + 1) + j % samples) for j, (_, _, _, text) in enumerate(targets)]
    replies = propose(ctx.proposer, requests, workers)
    out = []
    for (agent, parent_id, name, _), reply in zip(targets, replies, strict=True):
        instruction = accept(ctx, reply, [])
        varied = retold(ctx, agent, name, instruction) if instruction else None
        if varied is not None:
            out.append(Candidate(varied, f"paraphrase, round {round_no + 1}", (parent_id,)))
    return out


def unique(ctx: StrategyContext, pool: Sequence[Candidate], known: set[str] | None = None) -> list[Candidate]:
    """Drop content duplicates (of each other, and of ``known`` canonical forms, which is updated)."""
    seen = known if known is not None else set()
    out = []
    for candidate in pool:
        key = candidate.agent.canonical()
        if key in seen:
            ctx.stats.content_duplicates += 1
        else:
            seen.add(key)
            out.append(candidate)
    return out


def dev_ids(ctx: StrategyContext, dev_size: int | None) -> tuple[str, ...]:
    """The validation examples a query is scored on (INSTINCT's "dev set")."""
    return tuple(e.id for e in ctx.val[:dev_size])


def clean_score(result: TrialResult) -> float | None:
    """A trial's mean, or ``None`` when infrastructure errors make it partial: never ranked then."""
    summary = result.summary
    return summary.mean if summary.n_errors == 0 and summary.n and summary.mean is not None else None


def plan(p: PoolParams, train: Sequence[Example], n_val: int, probe_size: int, queries: int,
         dev_size: int | None, extra_proposals: int = 0) -> Plan:
    """Bounds for a strategy that draws a pool and scores ``queries`` candidates on the dev set."""
    prompt = estimate_prompt_tokens([{"role": "user", "content": FORWARD_TEMPLATE.format(
        pairs=format_pairs(list(train[: p.demos_per_subsample])))}])
    dev = min(dev_size or n_val, n_val)
    return Plan(p.n_subsamples * p.samples_per_subsample + extra_proposals, prompt,
                queries * (dev + 2 * probe_size), p.candidate_demos)
