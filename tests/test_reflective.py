"""Reflective evolution (``optimizer/strategies/reflective.py``) against the scripted endpoint: the
Pareto front and merge as pure functions, the loop finding what only failures reveal, notes that say
why each child exists, a free replay, and per-input retrieved demonstrations."""

import json
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeEndpoint, demo_responder, embedding
from sqlalchemy import select
from test_campaign import config

import agentopt
from agentopt.agents.runtime.errors import ConfigError
from agentopt.agents.kinds import label
from agentopt.agents.models.llm import Endpoint, LLMClient, MemoryCache
from agentopt.agents.program import ProgramAgent
from agentopt.agents.prompt import Demo, PromptAgent
from agentopt.agents.runtime.prompt_runtime import answer, nearest
from agentopt.archive.models import LLMCall, Note, Result
from agentopt.archive.store import Archive, ExampleOutcome, database_url
from agentopt.optimizer.engine.budgets import estimate
from agentopt.optimizer.engine.config import parse_config
from agentopt.optimizer.engine.evaluation import Job, run_job
from agentopt.optimizer.engine.runner import run_campaigns
from agentopt.optimizer.strategies.reflective import Member, front, merged, with_example
from agentopt.optimizer.tasks import Example, load_task
from agentopt.optimizer.engine.ui import SilentReporter

RIGHT = "Repeat the word you are given, exactly."


def member(scores: dict[str, float], ancestors: frozenset[int] = frozenset()) -> Member:
    return Member(PromptAgent(), 0, scores, ancestors)


def test_front_keeps_every_member_best_somewhere_weighted_by_its_wins() -> None:
    members = [member({"a": 1, "b": 0, "c": 0}),   # best on a
               member({"a": 0, "b": 1, "c": 1}),   # best on b and c
               member({"a": 0, "b": 1, "c": 0}),   # dominated by the one above
               member({"a": 0, "b": 0, "c": 0})]   # best nowhere
    assert front(members) == {0: 1, 1: 2}
    assert front([member({"a": 0}), member({"a": 0})]) == {}, "nobody is best on an example nobody solves"


def test_merge_takes_what_each_line_changed_since_the_common_ancestor() -> None:
    ancestor = PromptAgent(instruction="Answer.")
    better_text = ancestor.with_instruction("Answer with one word.")
    with_demos = ancestor.with_demos((Demo(input="x", output="y"),))
    child = merged(ancestor, better_text, with_demos)
    assert isinstance(child, PromptAgent)
    assert child.instruction == "Answer with one word." and child.demos == with_demos.demos
    assert merged(ancestor, better_text, better_text.with_instruction("Answer.")) is None, \
        "nothing new: the second line only went back to the ancestor"


def test_worked_examples_go_into_a_text_keeping_its_variables() -> None:
    program = ProgramAgent(entry="toy_program:two_prompts", params={"style": "Say the word.", "ask": "The word is {word}."})
    once = with_example(program, "ask", Example("1", "apple", "apple"))
    twice = with_example(once, "ask", Example("2", {"word": "pear {x}"}, "pear"))  # type: ignore[arg-type]
    assert twice is not None
    assert twice.params["ask"] == ("Examples:\nInput: apple Output: apple\nInput: word: pear {{x}} Output: pear\n"
                                   "The word is {word}.")
    assert twice.params["ask"].format(word="fig").endswith("The word is fig.")


def feedback_responder(body: dict[str, Any]) -> tuple[int, str]:
    """The task model repeats its input only when told to repeat it, and otherwise answers 'wrong'.
    The proposer writes the right instruction only when it is shown a wrong answer next to what was
    expected (a reflection prompt); asked to induce an instruction from pairs or to vary one (APE),
    it writes plausible but useless ones."""
    last = body["messages"][-1]["content"]
    if "Expected:" in last and "Feedback:" in last and "Answer: wrong" in last:
        return 200, RIGHT
    if "What was the instruction?" in last:
        return 200, ["Say a word.", "Give an answer for each input.", "Reply with a short word."][body.get("seed", 0) % 3]
    if last.startswith("Generate a variation"):
        return 200, "Answer with a word."
    return 200, last if "repeat" in body["messages"][0]["content"].lower() else "wrong"


REFLECTIVE = {"minibatch": 3, "mutations": ["text"], "merge_every": 0, "iterations": 6}
APE = {"n_subsamples": 3, "demos_per_subsample": 3, "samples_per_subsample": 2, "batch_size": 2,
       "pulls_per_round": 2, "racing_budget": 12, "mc_rounds": 1, "mc_budget": 12, "top_k": 2}


def _campaign(tmp_path: Path, url: str, task: Path, name: str, params: dict[str, Any],
              **overrides: Any) -> tuple[Any, Archive]:
    archive = Archive(database_url(str(tmp_path / f"{name}.db")))
    data = config(task, url, strategy={"name": name, "params": params}, budget={"task_calls": 120}, **overrides)
    [report] = run_campaigns(parse_config(data), archive, SilentReporter())
    return report, archive


def test_reflection_finds_what_only_the_failures_show_and_ape_does_not(tmp_path: Path, echo_task_file: Path) -> None:
    endpoint = FakeEndpoint(feedback_responder)
    try:
        found, archive = _campaign(tmp_path, endpoint.url, echo_task_file, "reflective", REFLECTIVE)
        ape, _ = _campaign(tmp_path, endpoint.url, echo_task_file, "ape", APE)
        calls = len(endpoint.requests)
        again, _ = _campaign(tmp_path, endpoint.url, echo_task_file, "reflective", REFLECTIVE)
    finally:
        endpoint.close()
    assert found.best_agent["instruction"] == RIGHT and found.best_test.mean == 1.0
    assert found.stats["proposals"] <= 2, "the first reflection on a failure writes it"
    assert ape.best_test.mean == 0.0 and ape.stats["proposals"] >= 6, "APE never sees a failure"
    assert found.stats["task_llm_calls"] <= 120 and ape.stats["task_llm_calls"] <= 120
    bound = estimate(parse_config(config(echo_task_file, "http://unused/v1", strategy={
        "name": "reflective", "params": REFLECTIVE})), load_task(str(echo_task_file)))
    assert found.stats["task_llm_calls"] <= bound["task_role"]["calls"]
    assert found.stats["proposer_llm_calls"] <= bound["proposer"]["calls"]
    assert len(endpoint.requests) == calls and again.best_agent == found.best_agent, \
        "a second run replays the search from the archive without a call"
    with archive.session() as s:
        notes = [json.loads(n) if isinstance(n, str) else n for n in
                 s.scalars(select(Note.data).where(Note.kind == "reflection", Note.candidate_id == found.best_candidate_id))]
    [note] = notes
    assert note["mutation"] == "text" and note["change"] == f"rewrote instruction: {RIGHT}"
    assert note["shown"] and all(r["answer"] == "wrong" and r["target"] == r["input"] and "expected" in r["feedback"]
                                 for r in note["shown"])


def test_demonstrations_from_failures_need_no_capable_proposer(tmp_path: Path, echo_task_file: Path) -> None:
    endpoint = FakeEndpoint(demo_responder)
    try:
        fixed, _ = _campaign(tmp_path, endpoint.url, echo_task_file, "reflective",
                             {"minibatch": 3, "iterations": 4, "max_demos": 2, "mutations": ["demo"]})
        (tmp_path / "r").mkdir()
        retrieved, archive = _campaign(tmp_path / "r", endpoint.url, echo_task_file, "reflective",
                                       {"minibatch": 3, "iterations": 4, "mutations": ["retrieve"]},
                                       dedup={"functional": "off"})  # its probe inputs are train examples too
    finally:
        endpoint.close()
    assert fixed.best_test.mean == 1.0 and fixed.seed_test.mean == 0.0
    assert 1 <= len(fixed.best_agent["demos"]) <= 2
    assert all(d["input"] == d["output"] for d in fixed.best_agent["demos"])
    assert retrieved.best_test.mean == 1.0 and retrieved.best_agent["retrieve"] == 2
    pool = {d["input"] for d in retrieved.best_agent["demo_pool"]}
    task = load_task(str(echo_task_file))
    assert pool == {e.input for e in task.train[: len(task.train) // 2]}, "half of train, never val or test"
    with archive.session() as s:
        minibatches = set(s.scalars(select(Result.example_id).where(Result.split == "train")))
    assert minibatches and not minibatches & {e.id for e in task.train[: len(task.train) // 2]}, \
        "minibatches never hold an example the agent could retrieve for itself"


def test_a_seed_with_nothing_to_mutate_is_refused_before_anything_runs(tmp_path: Path) -> None:
    code = agentopt.CodeAgent(name="c", code="def forward(task):\n    return task\n")
    with pytest.raises(ConfigError, match="strategy reflective mutates its seed's texts or demonstrations, and a "
                                          "code agent has neither"):
        agentopt.optimize("antonyms", seed=code, strategy=agentopt.strategies.Reflective(),
                          archive=f"sqlite:///{tmp_path / 'a.db'}")
    assert not (tmp_path / "a.db").exists()


def test_retrieved_demonstrations_are_the_nearest_per_input_and_ship_in_the_payload() -> None:
    pool = (Demo(input="gravel", output="g"), Demo(input="apple", output="a"), Demo(input="grape", output="g"))
    agent = PromptAgent().with_retrieval(pool, 1)
    assert nearest("grapes", [d.input for d in pool], 2) == [2, 0]
    assert [m["content"] for m in agent.messages("apples")][1:3] == ["apple", "a"]
    seen: list[Any] = []
    answer(agent.payload(), "grapes", lambda messages: seen.append(messages) or "g")
    assert seen[0][1] == {"role": "user", "content": "grape"}, "the exported runtime retrieves the same way"
    assert "demo_pool" not in PromptAgent().payload(), "agents without a pool hash as before"
    assert "(+1 of 3 retrieved)" in label(agent.payload())


def test_retrieval_by_embeddings_compares_by_cosine_and_needs_an_embedder() -> None:
    pool = (Demo(input="gravel", output="g"), Demo(input="apple", output="a"), Demo(input="grape", output="g"))
    vectors = {"fruit": (1.0, 0.0), "gravel": (0.0, 1.0), "apple": (0.9, 0.1), "grape": (0.6, 0.4)}
    agent = PromptAgent().with_retrieval(pool, 2, "embedding")
    assert nearest("fruit", [d.input for d in pool], 2, vectors.__getitem__) == [1, 2], "not the lexical order"
    assert [m["content"] for m in agent.messages("fruit", vectors.__getitem__)][1:5] == ["apple", "a", "grape", "g"]
    with pytest.raises(ValueError, match="picks its demonstrations by embeddings, and no embedder was given"):
        answer(agent.payload(), "fruit", lambda messages: "a")
    assert agent.messages("grapes") == PromptAgent().with_retrieval(pool, 2).messages("grapes"), \
        "with no embedder at hand (a budget estimate), the lexical picks stand in"
    assert agent.payload()["selector"] == "embedding"
    assert "selector" not in PromptAgent().with_retrieval(pool, 2).payload(), "lexical agents hash as before"
    assert agent.with_retrieval(pool, 1).selector == "embedding", "a new k keeps the selector"


def embedding_demo_responder(body: dict[str, Any]) -> tuple[int, str | dict[str, Any]]:
    return (200, embedding(body["input"][0])) if "input" in body else demo_responder(body)


def test_retrieval_by_embeddings_embeds_through_the_embedder_role_once_per_text(tmp_path: Path,
                                                                                 echo_task_file: Path) -> None:
    endpoint = FakeEndpoint(embedding_demo_responder)
    archive = Archive(database_url(str(tmp_path / "a.db")))
    data = config(echo_task_file, endpoint.url, budget={"task_calls": 120}, dedup={"functional": "off"},
                  strategy={"name": "reflective", "params": {"minibatch": 3, "iterations": 4, "mutations": ["retrieve"],
                                                             "retrieval": "embedding"}})
    data["models"]["embedder"] = {"model": "fake-embedder", "base_url": endpoint.url}
    data["evaluation"] |= {"workers": 1, "concurrency": 1}  # two calls at once may both miss the cache on a text
    try:
        [report] = run_campaigns(parse_config(data), archive, SilentReporter())
    finally:
        endpoint.close()
    assert report.best_test.mean == 1.0 and report.best_agent["selector"] == "embedding"
    embedded = [r["input"][0] for r in endpoint.requests if "input" in r]
    assert embedded and all(r["model"] == "fake-embedder" for r in endpoint.requests if "input" in r)
    assert len(embedded) == len(set(embedded)), "each text is embedded once: the call cache serves the rest"
    with archive.session() as s:
        roles = set(s.scalars(select(LLMCall.role)))
    assert "embedder" in roles


def test_a_seed_retrieving_by_embeddings_runs_from_python_and_its_children_keep_the_selector(
        tmp_path: Path, echo_task_file: Path) -> None:
    endpoint = FakeEndpoint(embedding_demo_responder)
    task = load_task(str(echo_task_file))
    fake = agentopt.Role(model="fake", base_url=endpoint.url, max_attempts=1)
    seed = PromptAgent(instruction="Say a word.", retrieve=1, selector="embedding",
                       demo_pool=tuple(Demo(input=e.input, output=e.target) for e in task.train[:3]))
    try:
        with agentopt.optimize(task, seed=seed, models=agentopt.Models(task=fake, proposer=fake, embedder=fake),
                               strategy=agentopt.strategies.Reflective(minibatch=3, iterations=3, mutations=("retrieve",)),
                               archive=f"sqlite:///{tmp_path / 'a.db'}", progress=False,
                               evaluation=agentopt.Evaluation(backend="threads", workers=1, concurrency=1)) as result:
            assert result.seed_test.mean == 1.0, "the seed answered through the embedder (a worked example shown)"
            assert result.best.agent.selector == "embedding", "a child retrieves as its parent does"
            before = len(endpoint.requests)
            assert result.best.run("zebra") == "zebra"
            assert any("input" in r for r in endpoint.requests[before:]), "best.run embeds a new input"
    finally:
        endpoint.close()
    assert all(r["model"] == "fake" for r in endpoint.requests)


def test_an_embedder_that_refuses_fails_the_example_as_an_llm_failure() -> None:
    def refuse_embeddings(body: dict[str, Any]) -> tuple[int, str | dict[str, Any]]:
        return (400, {"error": {"message": "no embeddings here"}}) if "input" in body else (200, "pear")

    endpoint = FakeEndpoint(refuse_embeddings)
    try:
        llm = LLMClient([Endpoint(base_url=endpoint.url, model="fake")], MemoryCache(), max_attempts=1)
        agent = PromptAgent(retrieve=1, selector="embedding", demo_pool=(Demo(input="pear", output="pear"),))
        outcome = run_job(llm.with_embedder(llm), Job(1, "test", "e1", "plum", agent.payload()))
    finally:
        endpoint.close()
    assert isinstance(outcome, ExampleOutcome) and outcome.error and outcome.output is None
    assert outcome.usage["failed"] == 1 and outcome.usage["refused"] == 1, \
        "counted against the health limits, and not retried as if another try could help"
