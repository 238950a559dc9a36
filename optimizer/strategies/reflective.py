"""Reflective evolution: children written from a parent's failures, parents drawn from a per-example
Pareto front, and merges of members with different ancestry.

After Agrawal et al., "GEPA: Reflective Prompt Evolution Can Outperform Reinforcement Learning". Every
member of the pool is scored example by example on a feedback set (validation). A member is on the
front when it is the best on some example, and parents are drawn from the front weighted by the
examples they win, so partial solutions that fix different examples all stay alive. Each iteration
runs the parent on a train minibatch and makes one child from what went wrong there:

- **text**: the proposer is shown one of the parent's texts (round-robin over them) and the
  minibatch's inputs, answers, targets, the metric's feedback and, for agents that keep one, the
  trace, and writes a better text;
- **demonstration**: for an example the parent failed, the train example most similar to it (never
  one of the minibatch) becomes a demonstration, added or swapped in. This needs no capable proposer,
  which matters because demonstrations are what move a small task model. An agent without a
  demonstration slot (a program, a chain, a graph) gets the worked example written into one of its
  texts instead, its template variables kept;
- **retrieve** (prompt agents): the parent picks its demonstrations per input, the ``k`` most similar
  of a pool (half of train; minibatches are drawn from the other half, or an example retrieved for
  itself would pass any gate), ``k`` tried anew each time; similar lexically, or by the embedder
  role's embeddings with ``retrieval: embedding``;
- **merge** (every ``merge_every`` iterations, when two front members descend from a common
  ancestor along different lines): each component one of them changed since that ancestor.

A child joins the pool only if it scores better than its parent on the same minibatch (GEPA's gate;
a merge must match the better of its two parents), and is then scored on the feedback set. Its notes
keep what it was shown and what changed, so the dashboard's lineage says why it exists. The search
is deterministic for a campaign seed, so a resume replays it against the archive for free.
"""

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field

from agentopt.agents.base import Agent, Demonstrated, Retrieving, Tunable
from agentopt.agents.models.budget import estimate_prompt_tokens
from agentopt.agents.prompt import Demo, Selector
from agentopt.agents.runtime.prompt_runtime import input_text, nearest
from agentopt.optimizer.strategies import pool
from agentopt.optimizer.strategies.base import (
    Answer,
    GeneratorStrategy,
    Params,
    Plan,
    Search,
    Trial,
    TrialResult,
    TunableAgent,
)
from agentopt.optimizer.strategies.proposals import instruct, propose, prose
from agentopt.optimizer.tasks import Example

REFLECT = """A system answered some inputs using this {what}:

{text}

Here is how it did:

{records}

Write a better {what} that would fix the wrong answers. Reply with the new {what} only, in one sentence."""
SHOWN = 300  # characters of an input, answer, feedback or trace shown to the proposer
EXAMPLES = "Examples:"  # where worked examples start in a text that has no demonstration slot

Mutation = Literal["text", "demo", "retrieve"]


class ReflectiveParams(Params):
    iterations: int = Field(200, ge=1, description="children proposed at most (a budget usually stops first)")
    minibatch: int = Field(4, ge=1, description="train examples a parent and its child are compared on")
    feedback_size: int | None = Field(None, ge=1, description="validation examples in the Pareto feedback set "
                                      "(default: all)")
    mutations: tuple[Mutation, ...] = Field(("retrieve", "demo", "text"), min_length=1,
                                            description="the mutation of each iteration, in turn")
    merge_every: int = Field(5, ge=0, description="every n-th iteration tries a merge (0: never)")
    max_demos: int = Field(3, ge=1, description="demonstrations a child keeps; beyond, a new one swaps one out")
    retrieval: Selector | None = Field(None, description="how a retrieving child compares inputs: lexical (no "
                                       "service) or embedding (the embedder role, models.embedder); default: "
                                       "as its parent does")
    proposer_workers: int = Field(1, ge=1)


@dataclass(frozen=True)
class Member:
    """A candidate in the pool: its per-example scores on the feedback set and its ancestry."""

    agent: Agent
    candidate_id: int
    scores: Mapping[str, float]
    ancestors: frozenset[int]  # pool indices of every member it descends from


def front(members: Sequence[Member]) -> dict[int, int]:
    """Pool index -> examples it is the best on, for the members no other member dominates (as good
    on every example and better on one). Examples nobody scores above 0 pick nobody."""
    ids = sorted({e for m in members for e in m.scores})
    best = {e: max(m.scores.get(e, 0.0) for m in members) for e in ids}

    def dominated(i: int) -> bool:
        mine = members[i].scores
        return any(all(o.scores.get(e, 0.0) >= mine.get(e, 0.0) for e in ids)
                   and any(o.scores.get(e, 0.0) > mine.get(e, 0.0) for e in ids)
                   for j, o in enumerate(members) if j != i)

    wins = {i: sum(best[e] > 0 and m.scores.get(e, 0.0) == best[e] for e in ids) for i, m in enumerate(members)}
    return {i: n for i, n in wins.items() if n and not dominated(i)}


def merged(ancestor: Agent, a: Agent, b: Agent) -> Agent | None:
    """``a`` with each component (text, or the demonstrations) that ``b`` changed since ``ancestor``
    and ``a`` did not; ``None`` when that is ``a`` or ``b`` again, or the agent refuses it."""
    if not (isinstance(ancestor, Tunable) and isinstance(a, Tunable) and isinstance(b, Tunable)):
        return None
    child: Any = a
    try:
        for name, text in b.texts().items():
            if text != ancestor.texts().get(name) and a.texts().get(name) == ancestor.texts().get(name):
                child = child.with_text(name, text)
    except ValueError:
        return None
    if isinstance(child, Demonstrated) and isinstance(ancestor, Demonstrated) and isinstance(b, Demonstrated):
        if b.demos != ancestor.demos and child.demos == ancestor.demos:
            child = child.with_demos(b.demos)
    return None if child.canonical() in (a.canonical(), b.canonical()) else child


def _clip(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= SHOWN else text[: SHOWN - 3] + "..."


def record(example: Example, answer: Answer) -> dict[str, Any]:
    """What the proposer (and the child's notes) see of one minibatch example."""
    if answer.error:
        feedback = f"error: {answer.error}"
    else:
        feedback = answer.feedback or ("correct" if (answer.score or 0.0) >= 1.0 else
                                       f"wrong (score {answer.score or 0.0:.2f}); expected {example.target}")
    shown = {"example_id": example.id, "input": _clip(example.text), "answer": _clip(answer.output or ""),
             "target": _clip(example.target), "score": answer.score, "feedback": _clip(feedback)}
    if answer.trace:
        shown["trace"] = _clip("; ".join(f"{step.get('node', step.get('name', '?'))}: {step.get('output', '')}"
                                         for step in answer.trace))
    return shown


def reflection_prompt(what: str, text: str, shown: Sequence[Mapping[str, Any]]) -> str:
    records = "\n\n".join(
        f"Input: {r['input']}\nAnswer: {r['answer']}\nExpected: {r['target']}\nFeedback: {r['feedback']}"
        + (f"\nSteps: {r['trace']}" if "trace" in r else "") for r in shown)
    return REFLECT.format(what=what, text=text or "(empty)", records=records)


def with_example(agent: TunableAgent, name: str, example: Example) -> TunableAgent | None:
    """``agent`` with a worked example appended to the prose of its text ``name`` (under
    ``Examples:``), its variable lines kept; ``None`` when the agent refuses the text."""
    worked = f"Input: {' '.join(example.text.split())} Output: {example.target}"
    text = prose(agent.texts()[name])
    try:
        child: TunableAgent = agent.with_text(name, instruct(agent.texts()[name], "\n".join(  # same kind as agent
            [text if EXAMPLES in text else f"{text}\n{EXAMPLES}".strip(), worked])))
        return child
    except ValueError:
        return None


class Reflective(GeneratorStrategy[ReflectiveParams]):
    name = "reflective"
    Params = ReflectiveParams

    @classmethod
    def needs_embedder(cls, p: ReflectiveParams) -> bool:
        return p.retrieval == "embedding" and "retrieve" in p.mutations

    @classmethod
    def refuses(cls, p: ReflectiveParams, seed: Agent) -> str | None:
        if isinstance(seed, Demonstrated) or isinstance(seed, Tunable) and seed.texts():
            return None
        return (f"strategy {cls.name} mutates its seed's texts or demonstrations, and a {seed.kind} agent has "
                "neither; start it from a prompt, program or graph agent")

    @classmethod
    def bounds(cls, p: ReflectiveParams, train: Sequence[Example], n_val: int, probe_size: int) -> Plan:
        shown = [{"input": e.text[:SHOWN], "answer": "x " * 20, "target": e.target, "feedback": "x " * 20}
                 for e in train[: p.minibatch]]
        prompt = reflection_prompt("instruction", "x " * 40, shown)
        feedback = min(p.feedback_size or n_val, n_val)
        per_child = 3 * p.minibatch + feedback + 2 * probe_size  # parent(s) and child on the minibatch, then val
        return Plan(p.iterations, estimate_prompt_tokens([{"role": "user", "content": prompt}]),
                    feedback + p.iterations * per_child, p.max_demos * (2 if "retrieve" in p.mutations else 1))

    def search(self) -> Search:
        ctx, p = self.ctx, self.params
        rng = random.Random(ctx.seed)
        self.feedback = pool.dev_ids(ctx, p.feedback_size)
        self.members: list[Member] = []
        self.known = {ctx.seed_agent.canonical()}
        texts = list(ctx.seed_agent.texts()) if isinstance(ctx.seed_agent, Tunable) else []
        retrieving = isinstance(ctx.seed_agent, Retrieving) and "retrieve" in p.mutations
        mutations = [m for m in p.mutations if m == "demo" or m == "text" and texts or m == "retrieve" and retrieving]
        mutations = mutations or ["demo"]
        # With retrieval, half of train is the pool and minibatches come from the other half: an
        # example retrieved for itself would pass any gate.
        half = len(ctx.train) // 2 if retrieving else 0
        self.retrieval_pool = tuple(Demo(input=e.input, output=e.target) for e in ctx.train[:half])
        self.batches = ctx.train[half:]
        [first] = yield [Trial(ctx.seed_agent, "val", self.feedback, rationale="seed")]
        self._join(first, frozenset())
        turn = 0
        for iteration in range(1, p.iterations + 1):
            batch = tuple(rng.sample(self.batches, min(p.minibatch, len(self.batches))))
            if p.merge_every and iteration % p.merge_every == 0 and (pair := self._merge_pair(rng)):
                yield from self._merge(iteration, batch, *pair)
                continue
            parent = self._parent(rng)
            member = self.members[parent]
            [ran] = yield [Trial(member.agent, "train", tuple(e.id for e in batch), (member.candidate_id,),
                                 f"iteration {iteration}: parent on the minibatch")]
            answers = ctx.outputs(ran.twin or ran.candidate_id, "train")
            shown = [record(e, answers[e.id]) for e in batch if e.id in answers]
            if not shown or all((r["score"] or 0.0) >= 1.0 for r in shown):
                ctx.record("iteration", {"iteration": iteration, "parent_id": member.candidate_id,
                                         "outcome": "nothing to learn: the parent answered the whole minibatch"})
                continue
            kind = mutations[(iteration - 1) % len(mutations)]
            if kind == "text":
                name = texts[turn % len(texts)]
                turn += 1
                child, change = self._rewritten(member.agent, name, shown, batch, iteration)
            elif kind == "retrieve":
                child, change = self._retrieving(member.agent, rng)
            else:
                child, change = self._demonstrated(member.agent, shown, batch, texts, rng, turn)
            if child is None or child.canonical() in self.known:
                ctx.record("iteration", {"iteration": iteration, "parent_id": member.candidate_id, "mutation": kind,
                                         "outcome": change if child is None else f"repeats a known candidate: {change}"})
                continue
            self.known.add(child.canonical())
            notes = {"reflection": {"mutation": kind, "change": change, "parent_id": member.candidate_id,
                                    "shown": shown}}
            [tried] = yield [Trial(child, "train", ran.trial.example_ids, (member.candidate_id,),
                                   f"iteration {iteration}: {change}", notes=notes)]
            yield from self._gate(iteration, tried, [ran], parent, member.ancestors | {parent}, strict=True)

    # --- the pool --------------------------------------------------------------------------------
    def _join(self, result: TrialResult, ancestors: frozenset[int]) -> None:
        answers = self.ctx.outputs(result.twin or result.candidate_id, "val")  # a twin's answers are its own
        scores = {e: float(a.score) for e, a in answers.items() if e in self.feedback and a.score is not None}
        self.members.append(Member(result.trial.agent, result.candidate_id, scores, ancestors))

    def _parent(self, rng: random.Random) -> int:
        """A front member, drawn with probability proportional to the examples it wins; any member
        while nothing scores above 0 (the seed alone, at first)."""
        wins = front(self.members)
        if not wins:
            return rng.randrange(len(self.members))
        indices = sorted(wins)
        return rng.choices(indices, weights=[wins[i] for i in indices])[0]

    def _gate(self, iteration: int, tried: TrialResult, baselines: Sequence[TrialResult], parent: int,
              ancestors: frozenset[int], strict: bool) -> Search:
        """Score the child on the feedback set if it beats its parent (or, for a merge, matches the
        better parent) on the minibatch; otherwise record why not."""
        child_score = pool.clean_score(tried)
        to_beat = max((s for s in map(pool.clean_score, baselines) if s is not None), default=None)
        passed = child_score is not None and (to_beat is None or child_score > to_beat
                                              or not strict and child_score >= to_beat)
        if not passed:
            self.ctx.record("iteration", {"iteration": iteration, "candidate_id": tried.candidate_id,
                                          "parent_id": self.members[parent].candidate_id,
                                          "minibatch_parent": to_beat, "minibatch_child": child_score,
                                          "outcome": "rejected: not better than its parent on the minibatch"})
            return
        [scored] = yield [Trial(tried.trial.agent, "val", self.feedback, tried.trial.parents,
                                f"iteration {iteration}: passed the minibatch gate")]
        self._join(scored, ancestors)

    # --- mutations -------------------------------------------------------------------------------
    def _rewritten(self, agent: Agent, name: str, shown: Sequence[Mapping[str, Any]], batch: Sequence[Example],
                   iteration: int) -> tuple[Agent | None, str]:
        assert isinstance(agent, Tunable)
        what = "instruction" if name == "instruction" else f"prompt ({name})"
        prompt = reflection_prompt(what, prose(agent.texts()[name]), shown)
        [reply] = propose(self.ctx.proposer, [([{"role": "user", "content": prompt}], iteration)],
                          self.params.proposer_workers)
        text = pool.accept(self.ctx, reply, batch)
        if text is None:
            return None, "the proposer's text was refused"
        child = pool.retold(self.ctx, agent, name, text)
        return child, f"rewrote {name}: {text}"

    def _retrieving(self, agent: Agent, rng: random.Random) -> tuple[Agent | None, str]:
        """The parent picking a different number of worked examples per input from the pool."""
        assert isinstance(agent, Retrieving)
        options = [k for k in range(1, self.params.max_demos + 1) if k != agent.retrieve]
        if not options or not self.retrieval_pool:
            return None, "nothing to retrieve from"
        k = min(options, key=lambda k: (abs(k - 2), k)) if not agent.retrieve else rng.choice(options)
        child = agent.with_retrieval(self.retrieval_pool, k, self.params.retrieval)
        return child, (f"retrieves the {k} most similar of {len(self.retrieval_pool)} train examples per input "
                       f"({child.selector})")

    def _demonstrated(self, agent: Agent, shown: Sequence[Mapping[str, Any]], batch: Sequence[Example],
                      texts: Sequence[str], rng: random.Random, turn: int) -> tuple[Agent | None, str]:
        """The train example most like a failed one, as a demonstration (or written into a text)."""
        failed = [r for r in shown if (r["score"] or 0.0) < 1.0]
        target = rng.choice(failed)
        used = {e.id for e in batch}
        demos = agent.demos if isinstance(agent, Demonstrated) else ()
        shown_inputs = {input_text(d.input) for d in demos}
        options = [e for e in self.ctx.train if e.id not in used and e.text not in shown_inputs]
        rng.shuffle(options)  # examples equally similar to the failure (none at all, often) in a seeded order
        for example in (options[i] for i in nearest(target["input"], [e.text for e in options], len(options))):
            change = (f"demonstration for failed example {target['example_id']}: {_clip(example.text)} -> "
                      f"{example.target}")
            if isinstance(agent, Demonstrated):
                demo = Demo(input=example.input, output=example.target)
                out = rng.randrange(len(demos)) if len(demos) >= self.params.max_demos else len(demos)
                child, change = (agent.with_demos((*demos[:out], *demos[out + 1:], demo)),
                                 ("added " if out == len(demos) else "swapped in ") + change)
            else:
                assert isinstance(agent, Tunable)
                name = texts[turn % len(texts)]
                child, change = with_example(agent, name, example), f"wrote into {name} the " + change
            if child is not None and child.canonical() not in self.known:
                return child, change
        return None, "no train example left that makes a new child"

    def _merge_pair(self, rng: random.Random) -> tuple[int, int, int] | None:
        """Two front members on different lines from a common ancestor, and that ancestor."""
        wins = sorted(front(self.members))
        pairs = [(a, b) for a in wins for b in wins if a < b and a not in self.members[b].ancestors
                 and b not in self.members[a].ancestors]
        rng.shuffle(pairs)
        for a, b in pairs:
            common = (self.members[a].ancestors | {a}) & (self.members[b].ancestors | {b})
            if common:
                ancestor = max(common)
                child = merged(self.members[ancestor].agent, self.members[a].agent, self.members[b].agent)
                if child is not None and child.canonical() not in self.known:
                    return a, b, ancestor
        return None

    def _merge(self, iteration: int, batch: Sequence[Example], a: int, b: int, ancestor: int) -> Search:
        first, second = self.members[a], self.members[b]
        child = merged(self.members[ancestor].agent, first.agent, second.agent)
        assert child is not None
        self.known.add(child.canonical())
        ids = tuple(e.id for e in batch)
        parents = (first.candidate_id, second.candidate_id)
        notes = {"reflection": {"mutation": "merge", "parents": list(parents),
                                "ancestor_id": self.members[ancestor].candidate_id}}
        results = yield [Trial(first.agent, "train", ids, rationale=f"iteration {iteration}: merge parent"),
                         Trial(second.agent, "train", ids, rationale=f"iteration {iteration}: merge parent"),
                         Trial(child, "train", ids, parents, f"iteration {iteration}: merge of "
                               f"{parents[0]} and {parents[1]}", notes=notes)]
        yield from self._gate(iteration, results[2], results[:2], a,
                              first.ancestors | second.ancestors | {a, b}, strict=False)
