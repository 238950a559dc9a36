"""ADAS Meta Agent Search: a meta agent programs new code agents, one generation at a time.

Hu et al., "Automated Design of Agentic Systems". The meta agent (the proposer role) sees the
framework's source, an example task and a selected part of the archive (the top entries by fitness
plus a few others for diversity, never the whole archive), proposes an agent as JSON
(thought, name, code), reviews it twice (reflexion), and gets up to ``debug_turns`` chances to fix
code that fails on a couple of train examples. Beyond the reference code: generated code only ever
runs in the sandbox; a generation that never runs is kept in the archive with its errors and
counted, never lost; infrastructure errors are never scored as wrong answers; and fitness is the
median of the bootstrap distribution of the validation mean.
"""

import json
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import Field, field_validator

from agentopt.agents.base import Agent
from agentopt.agents.code_agent import CodeAgent
from agentopt.agents.runtime.code_framework import FRAMEWORK, SEED_AGENTS
from agentopt.agents.runtime.errors import LLMError
from agentopt.agents.models.llm import Message
from agentopt.agents.runtime.sandbox import Limits
from agentopt.archive.stats import bootstrap_median
from agentopt.optimizer.strategies import pool
from agentopt.optimizer.strategies.base import GeneratorStrategy, Params, Plan, Search, Subsearch, Trial, TrialResult
from agentopt.optimizer.tasks import Example

SYSTEM = "You are an expert machine learning researcher who designs LLM agents in Python."
PROPOSE = """Agents are Python functions `forward(task) -> str` written with this framework:

```python
{framework}
```

Example task:
{example}

Agents tried so far, with their fitness (validation accuracy, higher is better):

{archive}

Design a new agent that should do better than all of them. Reply with JSON only:
{{"thought": "<the idea and why it should work>", "name": "<short name>", "code": "<python source of forward>"}}"""
REFLECT = ("Review your proposal: is it new compared with the archive, is the code correct, and does it use only "
           "the framework's functions? Reply with the improved JSON in the same format.")
DEBUG = "Running your agent on an example failed with:\n{error}\nFix the code. Reply with the JSON in the same format."


class ADASParams(Params):
    generations: int = Field(5, ge=1, description="agents the meta agent designs")
    seeds: tuple[str, ...] = Field(tuple(SEED_AGENTS), description="hand-designed agents the archive starts with")
    archive_top: int = Field(3, ge=1, description="best archive entries shown to the meta agent")
    archive_diverse: int = Field(2, ge=0, description="other archive entries shown, at random")
    reflexions: int = Field(2, ge=0)
    debug_turns: int = Field(3, ge=0, description="chances to fix an agent that fails on the debug examples")
    debug_examples: int = Field(2, ge=1, description="train examples a new agent must run without error")
    dev_size: int | None = Field(None, ge=1, description="validation examples per agent (default: all)")
    meta_max_tokens: int = Field(1024, ge=64, description="reply length for the meta agent")

    @field_validator("seeds")
    @classmethod
    def _known_seeds(cls, seeds: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [s for s in seeds if s not in SEED_AGENTS]
        if unknown:
            raise ValueError(f"unknown seed agent {unknown[0]!r}; known: {', '.join(SEED_AGENTS)}")
        return seeds


@dataclass(frozen=True)
class Entry:
    agent: CodeAgent
    candidate_id: int
    fitness: float


class MetaAgentSearch(GeneratorStrategy[ADASParams]):
    name = "adas"
    Params = ADASParams

    @classmethod
    def refuses(cls, p: ADASParams, seed: Agent) -> str | None:
        """Any seed: the search writes code agents of its own; the seed is only the baseline."""
        return None

    @classmethod
    def bounds(cls, p: ADASParams, train: Sequence[Example], n_val: int, probe_size: int) -> Plan:
        dev = min(p.dev_size or n_val, n_val)
        meta_calls = p.generations * (1 + p.reflexions + p.debug_turns)
        examples = (len(p.seeds) + p.generations) * (dev + 2 * probe_size) + p.generations * (p.debug_turns + 1) \
            * p.debug_examples
        prompt = len(FRAMEWORK + PROPOSE) // 3 + (p.archive_top + p.archive_diverse) * 250
        return Plan(meta_calls, prompt, examples, calls_per_example=Limits().max_llm_calls)

    def search(self) -> Search:
        p = self.params
        rng = random.Random(self.ctx.seed)
        dev = pool.dev_ids(self.ctx, p.dev_size)
        seeds = [CodeAgent(name=n, thought=SEED_AGENTS[n][0], code=SEED_AGENTS[n][1]) for n in p.seeds]
        results = yield [Trial(a, "val", dev, rationale=f"seed agent {a.name}") for a in seeds]
        archive = [e for e in map(self._entry, results) if e is not None]
        for generation in range(p.generations):
            messages = self._propose_messages(archive, rng)
            agent = self._ask(messages, 100 * generation)
            for turn in range(p.reflexions):
                if agent is not None:
                    messages += [{"role": "assistant", "content": agent.model_dump_json()},
                                 {"role": "user", "content": REFLECT}]
                    agent = self._ask(messages, 100 * generation + 1 + turn) or agent
            parents = tuple(e.candidate_id for e in archive[: p.archive_top])
            agent = yield from self._debugged(agent, messages, parents, generation)
            if agent is not None:
                [result] = yield [Trial(agent, "val", dev, parents, f"generation {generation + 1}: {agent.thought}")]
                entry = self._entry(result)
                if entry is not None:
                    archive.append(entry)
            archive.sort(key=lambda e: e.fitness, reverse=True)

    def _debugged(self, agent: CodeAgent | None, messages: list[Message], parents: tuple[int, ...],
                  generation: int) -> Subsearch[CodeAgent | None]:
        """Run the agent on a few train examples; feed errors back up to ``debug_turns`` times. A
        generation that never runs stays in the archive with its errors and is counted as failed."""
        ids = tuple(e.id for e in self.ctx.train[: self.params.debug_examples])
        for turn in range(self.params.debug_turns + 1):
            if agent is None:
                break
            [result] = yield [Trial(agent, "train", ids, parents, f"generation {generation + 1}, debug run {turn}")]
            errors = [a.error for a in self.ctx.outputs(result.twin or result.candidate_id, "train").values()
                      if a.error]
            if not errors:
                return agent
            messages += [{"role": "assistant", "content": agent.model_dump_json()},
                         {"role": "user", "content": DEBUG.format(error=errors[0])}]
            agent = self._ask(messages, 100 * generation + 10 + turn) if turn < self.params.debug_turns else None
        self.ctx.stats.failed_generations += 1
        return None

    def _entry(self, result: TrialResult) -> Entry | None:
        if result.summary.n_errors or not result.summary.n or not isinstance(result.trial.agent, CodeAgent):
            return None
        answers = self.ctx.outputs(result.twin or result.candidate_id, "val")
        scores = [answers[i].score for i in result.trial.example_ids if i in answers]
        return Entry(result.trial.agent, result.candidate_id,
                     bootstrap_median([s for s in scores if s is not None]))

    def _propose_messages(self, archive: Sequence[Entry], rng: random.Random) -> list[Message]:
        top = list(archive[: self.params.archive_top])
        rest = list(archive[self.params.archive_top:])
        shown = top + rng.sample(rest, min(self.params.archive_diverse, len(rest)))
        listed = "\n\n".join(f"Name: {e.agent.name}\nThought: {e.agent.thought}\nFitness: {e.fitness:.2f}\n"
                             f"Code:\n{e.agent.code.strip()}" for e in shown) or "(none yet)"
        example = self.ctx.train[0]
        content = PROPOSE.format(framework=FRAMEWORK.strip(), example=f"{example.text}\nAnswer: {example.target}",
                                 archive=listed)
        return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": content}]

    def _ask(self, messages: list[Message], sample: int) -> CodeAgent | None:
        """One meta-agent call, parsed into an agent; ``None`` (reason counted) when unusable."""
        self.ctx.stats.proposals += 1
        try:
            reply = self.ctx.proposer.resampled(max_tokens=self.params.meta_max_tokens).chat(messages, sample=sample)
        except LLMError:
            self.ctx.stats.reject("proposer error")
            return None
        agent, reason = parse_proposal(reply.text)
        if agent is None:
            self.ctx.stats.reject(reason)
        return agent


def parse_proposal(text: str) -> tuple[CodeAgent | None, str]:
    """The agent in a meta-agent reply: a JSON object, or failing that a Python code block."""
    data: dict[str, Any] = {}
    block = re.search(r"\{.*\}", text, re.DOTALL)
    if block:
        try:
            loaded = json.loads(block.group(0))
            data = loaded if isinstance(loaded, dict) else {}
        except json.JSONDecodeError:
            data = {}
    code = data.get("code") if isinstance(data.get("code"), str) else None
    if code is None:
        fenced = re.search(r"```(?:python)?\n(.*?)```", text, re.DOTALL)
        code = fenced.group(1) if fenced else None
    if not code or "def forward(" not in code:
        return None, "no forward function in the proposal"
    name = str(data.get("name") or "generated").strip()[:80] or "generated"
    return CodeAgent(name=name, thought=str(data.get("thought") or "")[:2000], code=code), "ok"
