"""Program agents: a user's function or langchain-core chain, whose prompts the strategies optimise
without rewriting the program; on threads and on Ray workers, exported, handed back as a Runnable,
and every bad program refused in one line before anything is written."""

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import toy_program
from fakes import FakeEndpoint, task_aware_responder
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate, PromptTemplate
from langchain_core.runnables import RunnableLambda, RunnablePassthrough, RunnableSequence

import agentopt
from agentopt.agents.runtime.errors import ConfigError
from agentopt.archive.errors import ArchiveError
from agentopt.optimizer.engine.config import parse_config

WORDS = ["apple", "river", "stone", "cloud", "maple", "otter", "piano", "lemon", "tiger", "ocean",
         "amber", "cedar", "delta", "ember", "flint", "grove", "haven", "ivory", "jolly", "koala"]


def follower(body: dict[str, Any]) -> tuple[int, Any]:
    """Task calls answer the last word of the user turn when the system prompt says 'echo', else
    'wrong'; proposer prompts get the fixed menu of :func:`task_aware_responder`, and symbolic
    learning's loss and rewrite prompts get an instruction without placeholders."""
    messages = body.get("messages", [])
    last = messages[-1]["content"] if messages else ""
    if "input" in body or "What was the instruction?" in last or "scores higher" in last \
            or last.startswith("Generate a variation"):
        return task_aware_responder(body)
    if "The given answer is wrong" in last or "Improve this prompt template" in last:
        return 200, "Echo the last word."
    words = last.replace(".", " ").split()
    return 200, (words[-1] if words and "echo" in messages[0]["content"].lower() else "wrong")


@pytest.fixture
def endpoint() -> Any:
    served = FakeEndpoint(follower)
    yield served
    served.close()


def task(extra: list[dict[str, str]] = ()) -> agentopt.Task:  # type: ignore[assignment]
    rows = [{"word": w, "target": w, "split": ("train", "val", "test")[i % 3]} for i, w in enumerate(WORDS)]
    return agentopt.Task.from_records([*rows, *extra], inputs=["word"], name="echo")


def models(endpoint: FakeEndpoint) -> agentopt.Models:
    fake = agentopt.Role(model="fake", base_url=endpoint.url, max_attempts=1)
    return agentopt.Models(task=fake, proposer=fake)


def run(tmp_path: Path, endpoint: FakeEndpoint, seed: Any, strategy: Any, backend: str = "threads",
        the_task: agentopt.Task | None = None) -> agentopt.Result:
    return agentopt.optimize(the_task or task(), seed=seed, strategy=strategy, models=models(endpoint),
                             archive=str(tmp_path / "a.db"), progress=False,
                             evaluation=agentopt.Evaluation(backend=backend, workers=1))


@pytest.mark.cluster
def test_a_function_program_is_optimised_on_ray_workers_and_exported_depending_on_its_module(
        tmp_path: Path, endpoint: FakeEndpoint) -> None:
    seed = agentopt.ProgramAgent(entry="toy_program:two_prompts", params=toy_program.PARAMS)
    strategy = agentopt.strategies.APE(n_subsamples=2, samples_per_subsample=2, racing_budget=12, mc_rounds=0)
    with run(tmp_path, endpoint, seed, strategy, backend="ray") as result:
        assert result.seed_test.mean == 0.0
        assert result.best.test.mean == 1.0 and "echo" in result.best.agent.params["style"].lower()
        assert result.best.agent.params["ask"] == "The word is {word}.", "each candidate changes one text"
        assert result.best.run({"word": "zebra"}) == "zebra"
        shown = agentopt.Archive(str(tmp_path / "a.db")).show(result.best.candidate_id)
        assert shown.rationale == "forward generation from demonstrations (style)" and shown.kind == "program"
        package = result.export(tmp_path / "pkg")
    card = (package / "README.md").read_text()
    assert "Program `toy_program:two_prompts`" in card and "must be installed or on `PYTHONPATH`" in card
    [module] = [p.parent.name for p in package.glob("*/agent.json")]
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": os.pathsep.join([str(package), str(Path(__file__).parent)]),
           "AGENTOPT_BASE_URL": endpoint.url}
    used = subprocess.run([sys.executable, "-c", f"import {module}; print({module}.run({{'word': 'zebra'}}))"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert used.returncode == 0 and used.stdout == "zebra\n", used.stderr[-2000:]


def test_a_program_that_raises_on_one_example_has_that_example_stored_as_an_error(
        tmp_path: Path, endpoint: FakeEndpoint) -> None:
    seed = agentopt.ProgramAgent(entry="toy_program:two_prompts", params=toy_program.PARAMS)
    the_task = task([{"word": "boom", "target": "boom", "split": "test"}])
    with run(tmp_path, endpoint, seed, agentopt.strategies.OPRO(steps=1, per_step=2), the_task=the_task) as result:
        assert result.best.test.mean == 1.0 and result.best.test.n_errors == 1
        shown = agentopt.Archive(str(tmp_path / "a.db")).show(result.best.candidate_id)
    [boom] = [r for r in shown.results if r.example_id == the_task.test[-1].id]
    assert boom.output is None and boom.error == "RuntimeError: the program cannot take this input"


@pytest.mark.cluster
def test_a_chain_from_this_session_runs_on_ray_and_comes_back_as_the_same_kind_of_runnable(
        tmp_path: Path, endpoint: FakeEndpoint) -> None:
    chain = (
        {"hint": ChatPromptTemplate.from_messages([("system", "Give a hint."), ("human", "{word}")])
         | FakeListChatModel(responses=["never called"]) | StrOutputParser(), "word": RunnablePassthrough()}
        | ChatPromptTemplate.from_messages([("system", "Say it."), ("human", "Hint: {hint}\nWord: {word}")])
        | FakeListChatModel(responses=["never called"]) | StrOutputParser())
    seed = agentopt.from_langchain(chain, name="hinted")
    assert seed.entry.startswith("session:hinted-")
    assert list(seed.params) == ["p1.system", "p1.human", "p2.system", "p2.human"]
    strategy = agentopt.strategies.OPRO(steps=3, per_step=2, proposer_workers=1)
    with run(tmp_path, endpoint, seed, strategy, backend="ray") as result:
        assert result.seed_test.mean == 0.0 and result.best.test.mean == 1.0
        texts = result.best.agent.params
        assert texts["p2.human"] == "Hint: {hint}\nWord: {word}" and "echo" in texts["p2.system"].lower()
        optimised = result.best.as_langchain()
        assert isinstance(optimised, RunnableSequence)
        assert optimised.invoke("zebra") == "zebra"
        assert optimised.batch(["tulip", "heron"]) == ["tulip", "heron"]
        with pytest.raises(ArchiveError, match="lives only in the Python session that optimised it"):
            result.export(tmp_path / "pkg")
    assert chain.steps[1].messages[0].prompt.template == "Say it.", "the user's chain is never mutated"


def test_an_importable_chain_is_searched_by_optuna_one_categorical_per_template(
        tmp_path: Path, endpoint: FakeEndpoint) -> None:
    seed = agentopt.from_langchain(toy_program.CHAIN)
    assert seed.entry == "toy_program:CHAIN" and seed == agentopt.from_langchain("toy_program:CHAIN")
    assert list(seed.params) == ["p1.human", "p2.system", "p2.human"]
    strategy = agentopt.strategies.Optuna(n_subsamples=4, samples_per_subsample=2, n_trials=8, startup_trials=4,
                                          promote_every=4)
    with run(tmp_path, endpoint, seed, strategy) as result:
        assert result.best.test.mean == 1.0
        assert result.best.as_langchain().invoke("zebra") == "zebra"


def test_symbolic_learning_rewrites_a_programs_prompts_and_refuses_a_rewrite_that_loses_a_variable(
        tmp_path: Path, endpoint: FakeEndpoint) -> None:
    seed = agentopt.ProgramAgent(entry="toy_program:two_prompts", params=toy_program.PARAMS)
    strategy = agentopt.strategies.SymbolicLearning(steps=2, batch_size=3, max_losses=1, rewrite_samples=1)
    with run(tmp_path, endpoint, seed, strategy) as result:
        assert result.best.agent.params == {"style": "Echo the last word.", "ask": "The word is {word}."}
        assert result.best.test.mean == 1.0
        refused = [n.data for n in agentopt.Archive(str(tmp_path / "a.db")).notes(result.campaign_id,
                                                                                   kind="rejected_edit")]
    assert any(r["node"] == "ask" and "loses the variable {word}" in r["reason"] for r in refused)


def test_bad_programs_are_one_line_config_errors_before_anything_is_written(
        tmp_path: Path, endpoint: FakeEndpoint) -> None:
    db = tmp_path / "a.db"
    cases = [
        (agentopt.ProgramAgent(entry="no_such_module:f", params={"a": "x"}), "does not import"),
        (agentopt.ProgramAgent(entry="toy_program:CHAIN", params={"p1.system": "x"}),
         "params do not match its prompt templates; missing p1.human, p2.human, p2.system"),
    ]
    cases.append((agentopt.from_langchain(PromptTemplate.from_template("Say {question}")
                                          | FakeListChatModel(responses=["x"])), "reads a field the task does not have"))
    for seed, message in cases:
        with pytest.raises(ConfigError, match=message):
            run(tmp_path, endpoint, seed, "ape")
    code = agentopt.CodeAgent(name="c", code="def forward(task):\n    return task\n")
    with pytest.raises(ConfigError, match="strategy opro rewrites its seed's texts, and a code agent has none"):
        run(tmp_path, endpoint, code, "opro")
    assert not db.exists() and not endpoint.requests
    with pytest.raises(ConfigError, match="write the program as module:function"):
        parse_config({"tasks": ["antonyms"], "seed_agent": {"kind": "program", "entry": "nocolon", "params": {"a": "b"}}})
    yaml_seed = {"kind": "program", "entry": "toy_program:two_prompts", "params": toy_program.PARAMS}
    assert parse_config({"tasks": ["antonyms"], "seed_agent": yaml_seed}).seed_agent.agent().entry == yaml_seed["entry"]


def test_chains_agentopt_cannot_run_as_written_are_refused_naming_the_step() -> None:
    model = FakeListChatModel(responses=["x"])
    hidden = ChatPromptTemplate.from_messages([("human", "{q}")]) | RunnableLambda(lambda value: model.invoke(value))
    with pytest.raises(ConfigError, match=r"step 1 \(RunnableLambda\) calls a model agentopt cannot replace"):
        agentopt.from_langchain(hidden)
    with pytest.raises(ConfigError, match="no prompt template"):
        agentopt.from_langchain(RunnableLambda(lambda value: value) | model)
    with pytest.raises(ConfigError, match="no chat model step"):
        agentopt.from_langchain(ChatPromptTemplate.from_messages([("human", "{q}")]))
    with pytest.raises(ConfigError, match="jinja2; agentopt optimises f-string templates"):
        agentopt.from_langchain(PromptTemplate.from_template("{{ q }}", template_format="jinja2") | model)
    with pytest.raises(ConfigError, match="step 1 binds stop to its model"):
        agentopt.from_langchain(PromptTemplate.from_template("{q}") | model.bind(stop=["\n"]))
    seed = agentopt.from_langchain(PromptTemplate.from_template("Answer {q}") | model)
    with pytest.raises(ValueError, match="invents the variable {x} of p1"):
        seed.with_text("p1", "Answer {q} {x}")
    wrapped = agentopt.from_langchain(PromptTemplate.from_template("Answer {q}").with_retry()
                                      | model.with_fallbacks([FakeListChatModel(responses=["y"])]))
    assert wrapped.params == {"p1": "Answer {q}"}, "retries and fallbacks are walked into, their models replaced"

