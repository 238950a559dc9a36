"""Instruction × demonstration-set search with Optuna TPE, in the manner of DSPy's MIPROv2.

Demo sets are bootstrapped from the task model's own correct answers on train (filled with labelled
examples when a small model gets too few right); instructions come from the shared proposal pool.
TPE (multivariate, constant liar so a batch of trials runs in parallel) scores each combination on
a validation minibatch, and every few trials the best-averaging combination is promoted to the
full validation split, which is what the campaign ranks on. The study is stored in the archive's
own database, so ``optuna-dashboard <db url>`` shows it next to everything else.
"""

import random
from collections import defaultdict
from collections.abc import Sequence
from typing import Annotated

import optuna
from pydantic import Field

from agentopt.agents.base import Demonstrated, Retrieving
from agentopt.agents.prompt import Demo
from agentopt.optimizer.strategies import pool
from agentopt.optimizer.strategies.base import GeneratorStrategy, Plan, Search, Subsearch, Trial, TunableAgent
from agentopt.optimizer.strategies.pool import PoolParams
from agentopt.optimizer.tasks import Example


class OptunaParams(PoolParams):
    n_trials: int = Field(20, ge=1, description="minibatch trials")
    batch: int = Field(2, ge=1, description="trials run in parallel (TPE's constant liar fills the gaps)")
    minibatch: int = Field(5, ge=1, description="validation examples per trial")
    promote_every: int = Field(6, ge=1, description="trials between promotions of the best combination to full val")
    demo_sets: int = Field(4, ge=0, description="bootstrapped demonstration sets (plus the seed's own)")
    demos_per_set: int = Field(2, ge=1)
    bootstrap_examples: int = Field(10, ge=1, description="train examples the seed answers to bootstrap demos")
    startup_trials: int = Field(6, ge=1, description="random trials before TPE takes over")
    retrieve: tuple[Annotated[int, Field(ge=0)], ...] = Field(
        (), description="demonstrations retrieved per input from train to choose among, 0 for none (a prompt "
                        "agent; empty: not searched)")


def study_name(campaign_id: str) -> str:
    return f"agentopt-{campaign_id or 'adhoc'}"


def study_storage(url: str) -> optuna.storages.RDBStorage:
    """Optuna's tables in the archive database; SQLite waits for the archive's writers, as ours do."""
    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)


class OptunaSearch(GeneratorStrategy[OptunaParams]):
    name = "optuna"
    Params = OptunaParams

    @classmethod
    def bounds(cls, p: OptunaParams, train: Sequence[Example], n_val: int, probe_size: int) -> Plan:
        base = pool.plan(p, train, n_val, probe_size, 0, None)
        promotions = p.n_trials // p.promote_every + 1
        examples = (p.bootstrap_examples + p.n_trials * (p.minibatch + 2 * probe_size)
                    + promotions * n_val + 2 * probe_size)
        return Plan(base.proposer_calls, base.proposer_prompt_tokens, examples,
                    p.demos_per_set + max(p.retrieve, default=0))

    def search(self) -> Search:
        """One categorical per text of the seed (``instruction`` for a prompt agent, each prompt of a
        program), choosing among the values the pool proposed for it, plus the demo set for an agent
        that shows demonstrations and, with ``retrieve``, how many it retrieves per input from train
        (trials score on validation, so no example is retrieved for itself)."""
        p = self.params
        rng = random.Random(self.ctx.seed)
        seed: TunableAgent = self.ctx.seed_agent
        candidates = pool.generate(self.ctx, rng, p)
        values = {name: list(dict.fromkeys(c.agent.texts()[name] for c in candidates)) for name in seed.texts()}
        demo_sets = (yield from self._bootstrap(rng)) if isinstance(seed, Demonstrated) else []
        retrieve = list(dict.fromkeys(p.retrieve)) if isinstance(seed, Retrieving) else []
        train_pool = tuple(Demo(input=e.input, output=e.target) for e in self.ctx.train)
        study = self._study()
        val = [e.id for e in self.ctx.val]
        minibatch_scores: dict[str, list[float]] = defaultdict(list)
        agents: dict[str, TunableAgent] = {}
        promoted: set[str] = set()
        done = 0
        while done < p.n_trials:
            asked = [study.ask() for _ in range(min(p.batch, p.n_trials - done))]
            trials = []
            for t in asked:
                agent = seed
                for name, options in values.items():
                    agent = agent.with_text(name, options[t.suggest_categorical(name, list(range(len(options))))])
                if demo_sets:
                    assert isinstance(agent, Demonstrated)  # with_text keeps the seed's kind
                    agent = agent.with_demos(demo_sets[t.suggest_categorical("demo_set", list(range(len(demo_sets))))])
                if retrieve and isinstance(agent, Retrieving) and (k := t.suggest_categorical("retrieve", retrieve)):
                    agent = agent.with_retrieval(train_pool, k)
                agents[agent.canonical()] = agent
                ids = tuple(rng.sample(val, min(p.minibatch, len(val))))
                trials.append(Trial(agent, "val", ids, rationale=f"optuna trial {t.number}"))
            results = yield trials
            for t, result in zip(asked, results, strict=True):
                t.set_user_attr("candidate_id", result.candidate_id)
                score = pool.clean_score(result)
                if score is None:
                    study.tell(t, state=optuna.trial.TrialState.FAIL)
                else:
                    study.tell(t, score)
                    minibatch_scores[result.trial.agent.canonical()].append(score)
            before, done = done, done + len(asked)
            if done // p.promote_every > before // p.promote_every or done >= p.n_trials:
                yield from self._promote(minibatch_scores, agents, promoted, tuple(val))

    def _bootstrap(self, rng: random.Random) -> Subsearch[list[tuple[Demo, ...]]]:
        """Demo sets: the seed's own demos, then sets of the task model's correct answers on train."""
        p = self.params
        seed_demos = self.ctx.seed_agent.demos
        if not p.demo_sets:
            return [seed_demos]
        boot = rng.sample(self.ctx.train, min(p.bootstrap_examples, len(self.ctx.train)))
        [result] = yield [Trial(self.ctx.seed_agent, "train", tuple(e.id for e in boot), rationale="seed")]
        answers = self.ctx.outputs(result.twin or result.candidate_id, "train")
        correct = [Demo(input=e.input, output=answers[e.id].output or "") for e in boot
                   if e.id in answers and answers[e.id].score == 1.0 and answers[e.id].output]
        self.ctx.stats.bootstrapped_demonstrations = len(correct)
        labelled = [Demo(input=e.input, output=e.target) for e in self.ctx.train if e not in boot]
        sets = [seed_demos]
        for _ in range(p.demo_sets):
            own = rng.sample(correct, min(p.demos_per_set, len(correct)))
            fill = rng.sample(labelled, min(p.demos_per_set - len(own), len(labelled)))
            sets.append(tuple(own + fill))
        return list(dict.fromkeys(sets))

    def _study(self) -> optuna.Study:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        name = study_name(self.ctx.campaign_id)
        storage = study_storage(self.ctx.study_storage) if self.ctx.study_storage else None
        if storage is not None:
            try:  # a resumed campaign replays its search from the start, so the study does too
                optuna.delete_study(study_name=name, storage=storage)
            except KeyError:
                pass
        sampler = optuna.samplers.TPESampler(multivariate=True, constant_liar=True, seed=self.ctx.seed,
                                             n_startup_trials=self.params.startup_trials)
        return optuna.create_study(study_name=name, storage=storage, sampler=sampler, direction="maximize")

    def _promote(self, scores: dict[str, list[float]], agents: dict[str, TunableAgent], promoted: set[str],
                 val: tuple[str, ...]) -> Search:
        waiting = [k for k in scores if k not in promoted]
        if not waiting:
            return
        best = max(waiting, key=lambda k: (sum(scores[k]) / len(scores[k]), len(scores[k])))
        promoted.add(best)
        yield [Trial(agents[best], "val", val, rationale="promoted to full validation")]
