"""A user's two-template langchain-core chain optimised in place: OPRO and APE on ``pets`` and, held
out, ``colors`` (see ``fields_tasks``), three seeds each, on the bundled model.

The chain first copies the sentence that answers the question, then answers from it; its four
texts (each template's system and human message) are what the strategies rewrite (OPRO one text
per step, APE's proposals spread over the texts in turn). The winner and the seed chain are scored
on the same sealed test examples, so gains are paired (the bootstrap CI and sign test of
``multifield.py``, and its crossed estimate where seeds are pooled). Answers are scored by
``first_named`` (the first pet or color the answer names), not ``contains``: a chain that copies the
context, or lists every option, would contain the answer on every example.

    .venv/bin/python experiments/chain.py [--db /tmp/agentopt-chain.db] [--out experiments/results/chain.md]
"""

import argparse
import time
from pathlib import Path

from fields_tasks import TASKS
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnablePassthrough
from multifield import EVALUATION, MODELS, SEEDS, campaign_row, paired, pooled_rows, publish
from rich.console import Console

import agentopt

STRATEGIES = {"opro": agentopt.strategies.OPRO(steps=4, per_step=4, dev_size=12),
              "ape": agentopt.strategies.APE(n_subsamples=4, samples_per_subsample=2, racing_budget=48, mc_rounds=0,
                                             top_k=3)}
HEADERS = ["strategy", "task", "seed", "seed chain test", "best test", "gain [95% CI]",
           "p (sign test; all seeds: crossed t)", "texts changed", "task calls", "wall s"]


def user_chain() -> object:
    """The chain as a user writes it; the stand-in model is replaced by agentopt's task model."""
    model = FakeListChatModel(responses=["stand-in"])
    find = ChatPromptTemplate.from_messages([("system", "Copy the sentence that answers the question."),
                                             ("human", "{context}\nQuestion: {question}")])
    answer = ChatPromptTemplate.from_messages([("system", "Answer with one word."),
                                               ("human", "{evidence}\nQuestion: {question}")])
    return RunnablePassthrough.assign(evidence=find | model | StrOutputParser()) | answer | model | StrOutputParser()


def seed_id(archive: agentopt.Archive, result: agentopt.Result, seed: agentopt.ProgramAgent) -> int:
    return next(c.candidate_id for c in archive.top(1000, "test", campaign=result.campaign_id)
                if c.strategy == "seed" and c.payload == seed.payload())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="/tmp/agentopt-chain.db")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    archive = agentopt.Archive(args.db, create=True)
    seed = agentopt.from_langchain(user_chain(), name="find_then_answer")
    rows, pooled = [], {}
    for label, strategy in STRATEGIES.items():
        for name, make in TASKS.items():
            task = make()
            for random_seed in SEEDS:
                started = time.perf_counter()
                result = agentopt.optimize(task, seed=seed, strategy=strategy, models=MODELS, archive=archive,
                                           evaluation=EVALUATION, name=f"chain-{label}-{name}-{random_seed}",
                                           random_seed=random_seed, progress=False)
                pairs = paired(archive, seed_id(archive, result, seed), result.best.candidate_id)
                pooled.setdefault((label, name), []).append(pairs)
                changed = [k for k, v in result.best.agent.params.items() if seed.params[k] != v]
                rows.append([label, *campaign_row(name, random_seed, result, pairs, ", ".join(changed) or "none",
                                                  started)])
                Console(stderr=True).print(rows[-1])
                result.close()
    for label in STRATEGIES:
        rows += [[label, *row] for row in pooled_rows({name: pairs for (s, name), pairs in pooled.items() if s == label})]
    publish("A two-template langchain-core chain: seed chain vs the best found, on the sealed test split",
            "A user's two-template chain, optimised in place",
            "`.venv/bin/python experiments/chain.py`: `agentopt.from_langchain(chain)` with OPRO (4 steps of 4 "
            "proposals, 12 validation examples per query) and APE (8 proposals raced on 48 train examples, top 3 on "
            "validation) on the bundled SmolLM2-135M-Instruct as task and "
            "proposer model, 48 test examples per campaign, gains paired on the same examples. Each example "
            "costs two task-model calls (one per template).", HEADERS, rows, args.out)

if __name__ == "__main__":
    main()
