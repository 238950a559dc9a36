"""Agent symbolic learning: a graph agent trained by language loss, gradients and pipeline edits.

Zhou et al., "Symbolic Learning Enables Self-Evolving Agents". Each step runs the current pipeline
on a train minibatch (the trajectories are stored with the results), has the proposer judge the
failures (language loss), back-propagates them node by node (language gradients), rewrites the
prompts, and every ``pipeline_every`` steps lets the proposer pick one structural edit. The new
graph is scored on the same minibatch and kept only if the batch score does not drop; otherwise
the step is rolled back. Every candidate is stored with its parent and the loss and gradients that
produced it; refused edits and rollbacks are recorded as notes, never applied. A program seed (a
user's function or chain) is learned the same way without the pipeline step: it keeps no trace,
so each loss is every one of its texts' gradient.
"""

import random
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from pydantic import Field, field_validator

from agentopt.agents.graph import GraphAgent, GraphError
from agentopt.agents.prompt import PromptAgent
from agentopt.optimizer.strategies import language_grad as lg
from agentopt.optimizer.strategies import pool
from agentopt.optimizer.strategies.base import GeneratorStrategy, Params, Plan, Search, Trial, TrialResult, TunableAgent
from agentopt.optimizer.tasks import Example

PIPELINES = tuple(lg.seed_pipelines(""))


class SymbolicParams(Params):
    steps: int = Field(4, ge=1, description="optimisation steps (forward, loss, backward, update)")
    batch_size: int = Field(4, ge=1, description="train examples per step")
    pipeline: str | dict[str, Any] = Field(
        "plan_answer", description=f"seed pipeline: one of {', '.join(PIPELINES)}, or a graph agent payload")
    max_losses: int = Field(3, ge=1, description="failed examples judged and back-propagated per step")
    rewrite_samples: int = Field(2, ge=1, description="proposer samples per node rewrite until one is valid")
    pipeline_every: int = Field(2, ge=0, description="run the pipeline optimizer every k-th step (0: never)")
    dev_size: int | None = Field(None, ge=1, description="validation examples per accepted graph (default: all)")

    @field_validator("pipeline")
    @classmethod
    def _known(cls, pipeline: str | dict[str, Any]) -> str | dict[str, Any]:
        if isinstance(pipeline, str) and pipeline not in PIPELINES:
            raise ValueError(f"unknown pipeline {pipeline!r}; known: {', '.join(PIPELINES)}, or a graph payload")
        if isinstance(pipeline, dict):
            try:
                GraphAgent.build(**{k: v for k, v in pipeline.items() if k != "kind"})
            except GraphError as exc:
                raise ValueError(f"invalid pipeline: {exc}") from None
        return pipeline


class SymbolicLearning(GeneratorStrategy[SymbolicParams]):
    name = "symbolic"
    Params = SymbolicParams

    @classmethod
    def bounds(cls, p: SymbolicParams, train: Sequence[Example], n_val: int, probe_size: int) -> Plan:
        nodes = len(cls._seed(p, "").nodes) + (p.steps // p.pipeline_every if p.pipeline_every else 0)
        proposer = p.steps * (p.max_losses * (1 + nodes) + nodes * p.rewrite_samples + 1)
        dev = min(p.dev_size or n_val, n_val)
        examples = (p.steps + 1) * (dev + 2 * probe_size) + p.steps * 2 * p.batch_size
        return Plan(proposer, (3 * lg.SHOWN + len(lg.BACKWARD)) // 3, examples, calls_per_example=nodes)

    @staticmethod
    def _seed(p: SymbolicParams, instruction: str) -> GraphAgent:
        spec = p.pipeline if isinstance(p.pipeline, dict) else lg.seed_pipelines(instruction)[p.pipeline]
        return GraphAgent.build(**{k: v for k, v in spec.items() if k != "kind"})

    def baseline(self) -> TunableAgent:
        """What learning starts from: for a prompt seed, the seed pipeline built around its instruction
        with its answer post-processing; any other seed with texts (a graph, a program) as it is."""
        seed = self.ctx.seed_agent
        if isinstance(seed, PromptAgent):
            return self._seed(self.params, seed.instruction).model_copy(update={"postprocess": seed.postprocess})
        tunable: TunableAgent = seed  # accepts() admitted only a Tunable seed
        return tunable

    def search(self) -> Search:
        p, ctx = self.params, self.ctx
        rng = random.Random(ctx.seed)
        dev = pool.dev_ids(ctx, p.dev_size)
        current = self.baseline()
        [result] = yield [Trial(current, "val", dev, rationale="seed pipeline")]
        current_id = result.candidate_id
        for step in range(1, p.steps + 1):
            batch = tuple(e.id for e in rng.sample(ctx.train, min(p.batch_size, len(ctx.train))))
            [result] = yield [Trial(current, "train", batch, rationale=f"step {step}: forward")]
            before = pool.clean_score(result)  # None when an example failed
            losses, gradients = self._backward(current, result)
            if not gradients:
                ctx.record("step", {"step": step, "candidate_id": current_id, "batch_score": before,
                                    "outcome": "nothing to learn: no failed example with a usable loss"})
                continue
            update = lg.prompt_step(ctx.proposer, current, gradients, ctx.train, p.rewrite_samples)
            if p.pipeline_every and step % p.pipeline_every == 0 and isinstance(update.agent, GraphAgent):
                structural = lg.pipeline_step(ctx.proposer, update.agent, gradients, sample=step)
                update = lg.Update(structural.agent, update.applied + structural.applied,
                                   update.rejected + structural.rejected)
            for refused in update.rejected:
                ctx.stats.refuse_edit(refused["optimizer"])
                ctx.record("rejected_edit", {"step": step, "parent_id": current_id, **refused})
            if update.agent == current:
                ctx.record("step", {"step": step, "candidate_id": current_id, "batch_score": before,
                                    "outcome": "no valid update"})
                continue
            notes = {"loss": losses, "gradients": [asdict(g) for g in gradients], "edits": list(update.applied)}
            [tried] = yield [Trial(update.agent, "train", batch, (current_id,),
                                   f"step {step}: {'; '.join(update.applied)}", notes=notes)]
            after = pool.clean_score(tried)
            if after is None or before is not None and after < before:
                ctx.stats.rollbacks += 1
                ctx.record("rollback", {"step": step, "candidate_id": tried.candidate_id, "kept_id": current_id,
                                        "batch_score_before": before, "batch_score_after": after})
                continue
            yield [Trial(update.agent, "val", dev, (current_id,), f"step {step}: accepted")]
            current, current_id = update.agent, tried.candidate_id

    def _backward(self, agent: TunableAgent, result: TrialResult) -> tuple[dict[str, str], list[lg.Gradient]]:
        """A graph back-propagates each loss through its trace, node by node; an agent that keeps no
        trace (a program) hands the loss to each of its texts as that text's gradient."""
        traced = isinstance(agent, GraphAgent)
        answers = self.ctx.outputs(result.twin or result.candidate_id, "train")
        failed = [(e, answers[e.id]) for e in self.ctx.train if e.id in result.trial.example_ids
                  and e.id in answers and (answers[e.id].trace or not traced) and (answers[e.id].score or 0.0) < 1.0]
        losses, gradients = {}, []
        for example, answer in failed[: self.params.max_losses]:
            text = lg.loss(self.ctx.proposer, example, answer.output or "", answer.feedback)
            if text is None:
                self.ctx.stats.reject("loss")
                continue
            losses[example.id] = text
            if isinstance(agent, GraphAgent):
                gradients += lg.backward(self.ctx.proposer, agent, answer.trace or [], example.id, text)
            else:
                gradients += [lg.Gradient(name, example.id, text) for name in agent.texts()]
        return losses, gradients
