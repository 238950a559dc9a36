"""OPRO: the proposer sees the (instruction, score) trajectory, sorted ascending, and writes better ones.

Yang et al., "Large Language Models as Optimizers". The meta-prompt is kept short and concrete
(a 135M proposer loses the thread in long ones); every proposal passes the same validation as
APE's, and the trajectory holds only instructions scored without infrastructure errors.
"""

import random
from collections.abc import Sequence

from pydantic import Field

from agentopt.agents.models.budget import estimate_prompt_tokens
from agentopt.agents.models.llm import Message
from agentopt.agents.base import Tunable
from agentopt.optimizer.strategies import pool
from agentopt.optimizer.strategies.base import GeneratorStrategy, Params, Plan, Search, Trial, TrialResult, TunableAgent
from agentopt.optimizer.strategies.proposals import format_pairs, propose, prose
from agentopt.optimizer.tasks import Example

META_TEMPLATE = (
    "Here are instructions with their scores out of 100, from worst to best:\n\n{trajectory}\n\n"
    "Here is how the task goes:\n\n{exemplars}\n\n"
    "Write a new instruction for this task that is different from the ones above and scores higher. "
    "Reply with the instruction only, in one sentence."
)

FEEDBACK_CHARS = 120  # per instruction: a 135M proposer loses the thread in a long meta-prompt


class OPROParams(Params):
    steps: int = Field(5, ge=1, description="optimisation steps")
    per_step: int = Field(8, ge=1, description="instructions asked for in each step")
    max_trajectory: int = Field(20, ge=1, description="best instructions shown in the meta-prompt")
    exemplars: int = Field(3, ge=0, description="task examples shown in the meta-prompt")
    dev_size: int | None = Field(None, ge=1, description="validation examples per query (default: all)")
    proposer_workers: int = Field(2, ge=1)


class OPRO(GeneratorStrategy[OPROParams]):
    name = "opro"
    Params = OPROParams

    @classmethod
    def bounds(cls, p: OPROParams, train: Sequence[Example], n_val: int, probe_size: int) -> Plan:
        proposals = p.steps * p.per_step
        meta = META_TEMPLATE.format(trajectory="Instruction: " + "x " * 20 + "\nScore: 100\n" * p.max_trajectory,
                                    exemplars=format_pairs(list(train[: p.exemplars])))
        dev = min(p.dev_size or n_val, n_val)
        return Plan(proposals, estimate_prompt_tokens([{"role": "user", "content": meta}]),
                    (1 + proposals) * (dev + 2 * probe_size))

    def search(self) -> Search:
        """With several texts (a program's prompts), step ``k`` optimises text ``k mod n`` of the best
        agent so far, its trajectory showing that text of every scored agent: coordinate ascent."""
        rng = random.Random(self.ctx.seed)
        dev = pool.dev_ids(self.ctx, self.params.dev_size)
        self.scored: dict[str, tuple[float, int, TunableAgent]] = {}  # canonical form -> (score, candidate id, agent)
        self._answered_by: dict[int, int] = {}  # candidate id -> whose answers it has (its twin's, if merged)
        known = {self.ctx.seed_agent.canonical()}
        names = list(self.ctx.seed_agent.texts())
        [first] = yield [Trial(self.ctx.seed_agent, "val", dev, rationale="seed")]
        self._record(first)
        for step in range(self.params.steps):
            name = names[step % len(names)]
            exemplars = rng.sample(self.ctx.train, min(self.params.exemplars, len(self.ctx.train)))
            prompt = self._meta_prompt(name, exemplars)
            requests = [(prompt, 100 * step + j) for j in range(self.params.per_step)]
            replies = propose(self.ctx.proposer, requests, self.params.proposer_workers)
            best = max(self.scored.values(), key=lambda s: s[:2]) if self.scored else None
            base, parents = (best[2], (best[1],)) if best else (self.ctx.seed_agent, ())
            retold = (pool.retold(self.ctx, base, name, text) for text in
                      (pool.accept(self.ctx, r, exemplars) for r in replies) if text)
            fresh = pool.unique(self.ctx, [pool.Candidate(agent, f"OPRO step {step + 1}", parents)
                                           for agent in retold if agent is not None], known)
            if fresh:
                results = yield [Trial(c.agent, "val", dev, c.parents, c.rationale) for c in fresh]
                for result in results:
                    self._record(result)

    def _record(self, result: TrialResult) -> None:
        score, agent = pool.clean_score(result), result.trial.agent
        if score is not None and isinstance(agent, Tunable):
            self.scored[agent.canonical()] = (score, result.candidate_id, agent)
            self._answered_by[result.candidate_id] = result.twin or result.candidate_id

    def _feedback(self, candidate_id: int) -> str:
        """The metric's feedback on one of the candidate's imperfect answers, when the metric gives
        feedback: what the grader said is a more useful signal than the score alone."""
        answers = self.ctx.outputs(self._answered_by.get(candidate_id, candidate_id), "val")
        notes = [a.feedback for a in answers.values()
                 if a.feedback and (a.score or 0.0) < 1.0]
        return f"\nFeedback: {' '.join(min(notes, key=len).split())[:FEEDBACK_CHARS]}" if notes else ""

    def _meta_prompt(self, name: str, exemplars: Sequence[Example]) -> list[Message]:
        shown: dict[str, tuple[float, int]] = {}  # the text's prose -> its best (score, candidate id)
        for score, candidate_id, agent in self.scored.values():
            text = prose(agent.texts()[name]) or "(none)"
            if text not in shown or score > shown[text][0]:
                shown[text] = (score, candidate_id)
        best = sorted(shown.items(), key=lambda kv: kv[1][0])[-self.params.max_trajectory:]
        trajectory = "\n\n".join(f"Instruction: {text}\nScore: {round(100 * s)}" + self._feedback(candidate_id)
                                   for text, (s, candidate_id) in best)
        content = META_TEMPLATE.format(trajectory=trajectory, exemplars=format_pairs(exemplars))
        return [{"role": "user", "content": content}]
