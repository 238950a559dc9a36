"""A chain's models are all agentopt's, or the chain is refused: a model reached where from_langchain
cannot replace it (a bound method, a callable object, a partial, a module attribute, one built inside
the function) is refused at the callback manager when it starts, so it never runs; that example is
stored as an error naming the step, in this process, on Ray workers and in exported packages."""

import functools
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import chain_guard_models
import pytest
from chain_guard_models import Foreign
from fakes import FakeEndpoint
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda

import agentopt
from agentopt.agents.runtime.errors import ConfigError
from agentopt.agents.models.gate import Endpoint
from agentopt.agents.models.llm import LLMClient, MemoryCache, Sampling
from agentopt.optimizer.engine.evaluation import Job, run_job

REFUSED = "calls Foreign, a model agentopt could not replace (it would run uncached, unbudgeted and outside the gate)"


def echo(body: dict[str, Any]) -> tuple[int, str]:
    """The task model: answers the last word of the user turn (proposers get the same, and it scores 1.0)."""
    words = body["messages"][-1]["content"].split()
    return 200, words[-1] if words else ""


@pytest.fixture
def endpoint() -> Any:
    served = FakeEndpoint(echo)
    yield served
    served.close()


def client(endpoint: FakeEndpoint) -> LLMClient:
    return LLMClient([Endpoint(base_url=endpoint.url, model="fake")], MemoryCache(), max_attempts=1)


def answered(step: Any) -> Any:
    """A chain whose own model step agentopt replaces, then ``step`` with a model of its own."""
    return (ChatPromptTemplate.from_messages([("human", "{word}")]) | FakeListChatModel(responses=["stand-in"])
            | StrOutputParser() | step)


class Asker:
    def __init__(self, model: Foreign) -> None:
        self.model = model

    def ask(self, text: str) -> str:
        return str(self.model.invoke(text).content)

    def __call__(self, text: str) -> str:
        return self.ask(text)


def _call(model: Foreign, text: str) -> str:
    return str(model.invoke(text).content)


def bound_method(models: list[Foreign]) -> tuple[Callable[[str], str], str]:
    models.append(Foreign(responses=["leaked"]))
    return Asker(models[0]).ask, "ask"


def callable_object(models: list[Foreign]) -> tuple[Callable[[str], str], str]:
    models.append(Foreign(responses=["leaked"]))
    return Asker(models[0]), "RunnableLambda"


def partial(models: list[Foreign]) -> tuple[Callable[[str], str], str]:
    models.append(Foreign(responses=["leaked"]))
    return functools.partial(_call, models[0]), "RunnableLambda"


def module_attribute(models: list[Foreign]) -> tuple[Callable[[str], str], str]:
    return lambda text: str(chain_guard_models.FOREIGN.invoke(text).content), "RunnableLambda"


def built_inside(models: list[Foreign]) -> tuple[Callable[[str], str], str]:
    def polish(text: str) -> str:
        models.append(Foreign(responses=["leaked"]))
        return str(models[-1].invoke(text).content)

    return polish, "polish"


@pytest.mark.parametrize("shape", [bound_method, callable_object, partial, module_attribute, built_inside])
def test_a_model_the_chain_reaches_around_agentopt_never_runs_and_fails_the_example_naming_the_step(
        endpoint: FakeEndpoint, shape: Callable[[list[Foreign]], tuple[Callable[[str], str], str]]) -> None:
    models: list[Foreign] = []
    step, name = shape(models)
    seed = agentopt.from_langchain(answered(step))  # out of sight of the closure walk: accepted
    before = chain_guard_models.FOREIGN.calls
    outcome = run_job(client(endpoint), Job(1, "val", "e1", {"word": "zebra"}, seed.payload(), "c"))
    assert outcome.output is None and outcome.error == f"ForeignModelError: step 3 ({name}) {REFUSED}; make the " \
                                                      "chat model a step of the chain itself", outcome.error
    assert all(m.calls == 0 for m in models) and chain_guard_models.FOREIGN.calls == before, "no foreign model ran"
    assert len(endpoint.requests) == 1, "the chain's own model step went through agentopt's client"


def test_a_chain_that_catches_the_refusal_still_fails_and_a_function_program_is_refused_its_own_model(
        endpoint: FakeEndpoint) -> None:
    def caught(text: str) -> str:
        try:
            return str(chain_guard_models.FOREIGN.invoke(text).content)
        except Exception:  # noqa: BLE001 - what a user's fallback would do
            return text

    before = chain_guard_models.FOREIGN.calls
    chain = agentopt.from_langchain(answered(RunnableLambda(caught)))
    outcome = run_job(client(endpoint), Job(1, "val", "e1", {"word": "zebra"}, chain.payload(), "c"))
    assert outcome.error is not None and outcome.error.startswith(f"ForeignModelError: step 3 (caught) {REFUSED}")
    function = agentopt.ProgramAgent(entry="chain_guard_models:own_model", params={"ask": "Say {word}."})
    outcome = run_job(client(endpoint), Job(1, "val", "e1", {"word": "zebra"}, function.payload(), "c"))
    assert outcome.error == ("ForeignModelError: program 'chain_guard_models:own_model' calls Foreign itself; "
                             "a program reaches a model only through chat")
    assert chain_guard_models.FOREIGN.calls == before and len(endpoint.requests) == 1, "only the adapter step"


def test_a_chain_that_starts_its_own_model_on_the_check_example_is_refused_before_anything_is_written(
        tmp_path: Path, endpoint: FakeEndpoint) -> None:
    before = chain_guard_models.FOREIGN.calls
    seed = agentopt.from_langchain(answered(RunnableLambda(lambda text: chain_guard_models.FOREIGN.invoke(text))),
                                   name="leaky")
    task = agentopt.Task.from_records([{"word": w, "target": w, "split": s} for w, s in
                                       [("apple", "train"), ("river", "val"), ("stone", "test")]], inputs=["word"])
    refused = rf"program 'session:leaky-\w+': step 3 \(RunnableLambda\) {re.escape(REFUSED)}"
    with pytest.raises(ConfigError, match=refused):
        agentopt.optimize(task, seed=seed, strategy="opro", models=agentopt.Models(
            task=agentopt.Role(model="fake", base_url=endpoint.url, max_attempts=1)),
            archive=str(tmp_path / "a.db"), progress=False)
    assert not (tmp_path / "a.db").exists() and not endpoint.requests
    assert chain_guard_models.FOREIGN.calls == before


@pytest.mark.cluster
def test_on_ray_workers_and_in_an_exported_package_only_the_example_that_starts_a_foreign_model_fails(
        tmp_path: Path, endpoint: FakeEndpoint) -> None:
    words = ["apple", "river", "stone", "cloud", "maple", "otter", "piano", "lemon", "tiger"]
    rows = [{"word": w, "target": w, "split": ("train", "val", "test")[i % 3]} for i, w in enumerate(words)]
    task = agentopt.Task.from_records([*rows, {"word": "boom", "target": "boom", "split": "test"}], inputs=["word"],
                                      name="echo")
    seed = agentopt.from_langchain(chain_guard_models.CHAIN)
    fake = agentopt.Role(model="fake", base_url=endpoint.url, max_attempts=1)
    with agentopt.optimize(task, seed=seed, strategy=agentopt.strategies.OPRO(steps=1, per_step=1),
                           models=agentopt.Models(task=fake, proposer=fake), archive=str(tmp_path / "a.db"),
                           progress=False, evaluation=agentopt.Evaluation(backend="ray", workers=1)) as result:
        assert result.best.test.mean == 1.0 and result.best.test.n_errors == 1
        shown = agentopt.Archive(str(tmp_path / "a.db")).show(result.best.candidate_id)
        package = result.export(tmp_path / "pkg")
    [boom] = [r for r in shown.results if r.example_id == task.test[-1].id]
    assert boom.output is None and boom.error is not None
    assert boom.error.startswith(f"ForeignModelError: step 1 (finish) {REFUSED}"), boom.error
    [module] = [p.parent.name for p in package.glob("*/agent.json")]
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": os.pathsep.join([str(package), str(Path(__file__).parent)]),
           "AGENTOPT_BASE_URL": endpoint.url}
    script = (f"import {module}, chain_guard_models\nprint({module}.run({{'word': 'zebra'}}))\n"
              f"try:\n    {module}.run({{'word': 'boom'}})\n"
              "except Exception as exc:\n    print(type(exc).__name__, exc)\nprint(chain_guard_models.FOREIGN.calls)\n")
    used = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=300)
    assert used.returncode == 0, used.stderr[-2000:]
    zebra, refused, calls = used.stdout.splitlines()
    assert zebra == "zebra" and refused.startswith(f"ForeignModelError step 1 (finish) {REFUSED}") and calls == "0"
    assert "ModelGuard" not in used.stderr, "the refusal is the error, not also a log line"


@pytest.mark.local_model
def test_a_chain_runs_on_the_real_model_through_agentopts_client_with_the_guard_on(local_model: Any) -> None:
    llm = LLMClient(local_model.endpoints, MemoryCache(), Sampling(max_tokens=8))
    seed = agentopt.from_langchain(ChatPromptTemplate.from_messages([("system", "Repeat the word."),
                                                                     ("human", "{word}")])
                                   | FakeListChatModel(responses=["stand-in"]) | StrOutputParser())
    outcome = run_job(llm, Job(1, "val", "e1", {"word": "zebra"}, seed.payload(), "c"))
    assert outcome.error is None and outcome.output and outcome.output != "stand-in", outcome
    assert outcome.usage["llm_calls"] == 1
