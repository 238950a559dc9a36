"""agentopt as a library: tasks from records and files with named inputs and several answers,
metrics as code (their feedback, their failures, their contract), and ``optimize`` from Python."""

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeEndpoint, task_aware_responder
from processes import agentopt as cli
from test_input_hygiene import assert_refused, nothing_written

import agentopt
from agentopt.agents.runtime.errors import AgentoptError, ConfigError, LLMError
from agentopt.optimizer.tasks.errors import TaskError
from agentopt.agents.models.llm import Endpoint, LLMClient, MemoryCache, Sampling
from agentopt.optimizer.strategies.counters import Counters
from agentopt.optimizer.tasks import load_task
from agentopt.optimizer.strategies import language_grad
from agentopt.optimizer.tasks.metrics import MetricContractError, get_metric
from agentopt.optimizer.tasks.scoring import resolve_metric, score

WORDS = ["apple", "river", "stone", "cloud", "maple", "otter", "piano", "lemon", "tiger", "ocean",
         "amber", "cedar", "delta", "ember", "flint", "grove", "haven", "ivory", "jolly", "koala"]
ROWS = [{"question": w, "context": f"The word is {w}.", "answer": [w, w.upper() + "!"]} for w in WORDS]


def exact(example: agentopt.Example, prediction: str) -> float | tuple[float, str]:
    """Exact match on any acceptable answer, with feedback when wrong."""
    return 1.0 if prediction in example.targets else (0.0, f"expected {example.target!r}, got {prediction!r}")


def roles(url: str) -> agentopt.Models:
    fake = agentopt.Role(model="fake", base_url=url, max_attempts=1)
    return agentopt.Models(task=fake, proposer=fake.model_copy(update={"temperature": 0.9}))


SMALL_APE = agentopt.strategies.APE(n_subsamples=3, demos_per_subsample=3, samples_per_subsample=2, batch_size=3,
                                    pulls_per_round=3, racing_budget=30, mc_rounds=1, mc_top=2, mc_samples=2,
                                    mc_budget=12, top_k=2)


def run(task: agentopt.Task, url: str, db: Path, strategy: Any = SMALL_APE) -> agentopt.Result:
    return agentopt.optimize(task, seed=agentopt.PromptAgent(instruction="Answer.", template="{question}"),
                             strategy=strategy, models=roles(url), archive=f"sqlite:///{db}",
                             evaluation=agentopt.Evaluation(backend="threads", workers=2), progress=False)


# --- tasks --------------------------------------------------------------------------------------------
def test_records_with_named_inputs_and_several_answers() -> None:
    task = agentopt.Task.from_records(ROWS, inputs=["question", "context"], target="answer", metric=exact, name="w")
    example = task.train[0]
    assert set(example.input) == {"question", "context"} and list(example.input) == ["question", "context"]
    assert example.targets == (example.input["question"], example.input["question"].upper() + "!")
    assert example.text == f"question: {example.input['question']}\ncontext: {example.input['context']}"
    assert task.inputs == ("question", "context") and task.ref is None and task.metric.name.endswith("exact")
    assert task.score(example, example.target.upper() + "!").value == 1.0, "any acceptable answer scores"


@pytest.mark.parametrize(("rows", "message"), [
    ([{"question": "a", "answer": "b"}, *ROWS], "row 0: field 'context' is missing"),
    ([*ROWS[:3], {"question": "x", "context": "y"}], "row 3: field 'answer' is missing"),
    ([*ROWS[:3], {"question": "x", "context": "y", "answer": []}], "row 3: field 'answer' is an empty list"),
    ([*ROWS[:3], {"question": "x", "context": math.nan, "answer": "z"}], "row 3: field 'context' must be a finite"),
    ([*ROWS[:3], dict(ROWS[1])], "row 3: repeats the input of row 1"),
])
def test_a_bad_record_is_one_line_naming_its_row(rows: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(TaskError, match=message.replace("(", r"\(")):
        agentopt.Task.from_records(rows, inputs=["question", "context"], target="answer")


def test_task_files_with_any_column_names(tmp_path: Path) -> None:
    jsonl = tmp_path / "qa.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    csv = tmp_path / "qa.csv"
    csv.write_text("q,ctx,gold,alias\n" + "".join(f"{w},The word is {w}.,{w},{'W' + w if i % 2 else ''}\n"
                                                  for i, w in enumerate(WORDS)))
    from_jsonl = agentopt.Task.from_file(jsonl, inputs=["question", "context"], target="answer")
    from_csv = agentopt.Task.from_file(csv, inputs=["q", "ctx"], target=["gold", "alias"])
    assert len(from_jsonl.train) == len(from_csv.train) == 8
    aliases = {e.target: e.aliases for s in ("train", "val", "test") for e in from_csv.split(s)}
    assert aliases["river"] == ("Wriver",) and aliases["apple"] == (), "a blank alias column is skipped"
    with pytest.raises(TaskError, match=r"qa.csv:1: CSV header lacks column\(s\) question"):
        agentopt.Task.from_file(csv, inputs=["question"], target="gold")


def test_a_hugging_face_dataset_is_a_task() -> None:
    datasets = pytest.importorskip("datasets")
    task = agentopt.Task.from_hf(datasets.Dataset.from_list(ROWS), inputs=["question", "context"], target="answer")
    assert len(task.train) + len(task.val) + len(task.test) == len(ROWS) and task.train[0].aliases
    with pytest.raises(TaskError, match="takes a datasets.Dataset"):
        agentopt.Task.from_hf(ROWS, inputs=["question"], target="answer")


# --- metrics ------------------------------------------------------------------------------------------
def test_builtin_metrics_take_the_best_acceptable_answer() -> None:
    example = agentopt.Example("x", "q", "New York", ("NYC", "the big apple"))
    for name, prediction, want in [("exact_match", "nyc.", 1.0), ("contains", "I love the Big Apple", 1.0),
                                   ("token_f1", "big apple", 0.8), ("exact_match", "Boston", 0.0)]:
        assert get_metric(name)(example, prediction).value == pytest.approx(want), name


@pytest.mark.parametrize("returned", [math.nan, "0.5", 7, -0.1, (0.5, 3), None])
def test_a_metric_returning_a_non_score_is_a_contract_error_naming_metric_and_example(returned: Any) -> None:
    metric = resolve_metric(lambda example, prediction: returned)
    with pytest.raises(MetricContractError, match=r"metric .*<lambda> returned .* on example e1"):
        score(metric, agentopt.Example("e1", "q", "a"), "a")


def test_a_metric_that_raises_fails_that_example_only() -> None:
    def broken(example: agentopt.Example, prediction: str) -> float:
        raise ValueError("no\nunit tests found")

    with pytest.raises(agentopt.MetricFailed, match=r"^metric .*broken failed: ValueError: no unit tests found$"):
        score(resolve_metric(broken), agentopt.Example("e1", "q", "a"), "a")


def test_a_metric_object_is_held_to_the_same_rules_as_a_function() -> None:
    class Registered:
        name = "registered"

        def __call__(self, example: agentopt.Example, prediction: str) -> float:
            if prediction == "boom":
                raise KeyError("boom")
            return math.nan

        def key(self, prediction: str) -> str:
            return prediction

    metric = agentopt.register_metric(Registered())
    assert resolve_metric("registered") is metric
    with pytest.raises(agentopt.MetricFailed, match="metric registered failed: KeyError: 'boom'"):
        score(metric, agentopt.Example("e1", "q", "a"), "boom")
    with pytest.raises(MetricContractError, match="metric registered returned nan"):
        score(metric, agentopt.Example("e1", "q", "a"), "a")


def test_module_function_metrics_and_their_import_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "my_metrics.py").write_text("def first_letter(example, prediction):\n"
                                            "    return float(prediction[:1] == example.target[:1])\n")
    monkeypatch.chdir(tmp_path)
    metric = resolve_metric("my_metrics:first_letter")
    assert score(metric, agentopt.Example("e", "q", "apple"), "avocado").value == 1.0
    for ref, message in [("nope_module:f", "cannot import nope_module (ModuleNotFoundError"),
                         ("my_metrics:missing", "my_metrics has no function 'missing'"), ("x:", "module:function")]:
        with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
            resolve_metric(ref)


def test_counters_are_typed_and_keep_their_summary_names() -> None:
    counters = Counters(functional_dedup="verify")
    counters.proposals += 2
    counters.reject("too short")
    counters.refuse_edit("prompt")
    shown = counters.as_dict()
    assert shown["proposals"] == 2 and shown["rejected: too short"] == 1 and shown["rejected prompt edits"] == 1
    assert shown["functional dedup"] == "verify" and "rollbacks" not in shown, "zero optional counters are left out"


# --- agents read named fields -------------------------------------------------------------------------
def test_prompt_agents_render_fields_with_or_without_a_template() -> None:
    fields = {"question": "Who?", "context": "Ann met Bob."}
    plain = agentopt.PromptAgent(instruction="Answer.", demos=(agentopt.Demo(input=fields, output="Bob"),))
    assert plain.messages(fields)[-1]["content"] == "question: Who?\ncontext: Ann met Bob."
    templated = plain.model_copy(update={"template": "{context}\nQ: {question}"})
    assert templated.messages(fields)[1]["content"] == "Ann met Bob.\nQ: Who?", "demos render through it too"
    assert "template" not in agentopt.PromptAgent(instruction="x").payload(), "old payloads hash as before"
    with pytest.raises(ValueError, match="not a plain field name"):
        agentopt.PromptAgent(instruction="x", template="{question.__class__}")


def test_code_and_graph_agents_receive_the_fields(fake_endpoint: FakeEndpoint) -> None:
    llm = LLMClient([Endpoint(model="fake", base_url=fake_endpoint.url)], MemoryCache(), Sampling(max_tokens=8))
    code = agentopt.CodeAgent(name="fields", code="def forward(task):\n"
                                                  "    first = task['question'] if isinstance(task, dict) else '-'\n"
                                                  "    return first + '|' + f'{task}'.replace('\\n', ';')")
    assert code.run({"question": "Who?", "context": "Ann"}, llm) == "Who?|question: Who?;context: Ann"
    assert code.run("plain text", llm) == "-|plain text", "a single input is still a string"
    graph = agentopt.GraphAgent.build(nodes=[{"name": "answer", "template": "Echo {question}"}], output="answer",
                                      inputs=("question",))
    with pytest.raises(Exception, match="dangling input"):
        agentopt.GraphAgent.build(nodes=[{"name": "answer", "template": "Echo {question}"}], output="answer")
    answer, [step] = graph.run_traced({"question": "Who?", "context": "Ann"}, llm)
    assert step["prompt"] == "Echo Who?"


# --- optimize() ---------------------------------------------------------------------------------------
def test_optimize_from_python_finds_the_echo_prompt_and_stores_feedback(tmp_path: Path,
                                                                       fake_endpoint: FakeEndpoint) -> None:
    task = agentopt.Task.from_records(ROWS, inputs=["question", "context"], target="answer", metric=exact, name="w")
    with run(task, fake_endpoint.url, tmp_path / "a.db") as result:
        assert "echo" in result.best.agent.instruction.lower()
        assert result.best.test.mean == 1.0 and result.seed_test.mean == 0.0
        assert result.best.run({"question": "zebra", "context": "The word is zebra."}) == "zebra"
        archive = agentopt.Archive(str(tmp_path / "a.db"))
        ranked = archive.top(3, task="w")
        assert ranked and all(isinstance(r.mean, float) for r in ranked)
        seed = archive.show(archive.top(50, task="w", strategy="seed")[0].candidate_id)
        wrong = [r for r in seed.results if r.score == 0.0]
        assert wrong and all(r.feedback == f"expected {task.example(r.example_id).target!r}, got 'wrong'"
                             for r in wrong), "the metric's feedback is stored beside its score"
        assert archive.campaign(result.campaign_id).config["task"]["inputs"] == ["question", "context"]
        package = result.export(tmp_path / "pkg")
        [agent] = package.glob("*/agent.json")
        assert json.loads(agent.read_text())["inputs"] == ["question", "context"]
        assert 'run({"question": ' in (package / "README.md").read_text(), "the card shows a multi-field call"
        assert result.report(tmp_path / "report").is_file()


def test_opro_and_symbolic_learning_read_the_metrics_feedback(tmp_path: Path, fake_endpoint: FakeEndpoint) -> None:
    task = agentopt.Task.from_records(ROWS, inputs=["question", "context"], target="answer", metric=exact, name="w")
    run(task, fake_endpoint.url, tmp_path / "a.db", agentopt.strategies.OPRO(steps=2, per_step=2, dev_size=4))
    metas = [r["messages"][-1]["content"] for r in fake_endpoint.requests if "scores higher" in r["messages"][-1]["content"]]
    assert any("Feedback: expected " in m for m in metas[1:]), "the trajectory carries the grader's feedback"
    captured: list[str] = []

    class Judge:
        def chat(self, messages: list[dict[str, str]], sample: int = 0) -> Any:
            captured.append(messages[-1]["content"])
            raise LLMError("no reply needed")

    language_grad.loss(Judge(), task.train[0], "wrong", "expected 'apple', got 'wrong'")  # type: ignore[arg-type]
    assert "Grader's note: expected 'apple', got 'wrong'" in captured[0]


def test_a_metric_failing_on_one_example_is_an_error_there_and_the_campaign_goes_on(
        tmp_path: Path, fake_endpoint: FakeEndpoint) -> None:
    def picky(example: agentopt.Example, prediction: str) -> float:
        if example.target == "river":
            raise RuntimeError("cannot grade river")
        return float(prediction in example.targets)

    task = agentopt.Task.from_records(ROWS, inputs=["question", "context"], target="answer", metric=picky, name="w")
    result = run(task, fake_endpoint.url, tmp_path / "a.db")
    archive = agentopt.Archive(str(tmp_path / "a.db"))
    ids = {c.candidate_id for s in ("train", "val", "test") for c in archive.top(100, s, task="w")}
    river = [r for c in ids for r in archive.show(c).results if task.example(r.example_id).target == "river"]
    assert river and all(r.score is None and r.error is not None and r.error.startswith("metric ")
                         and r.error.endswith("picky failed: RuntimeError: cannot grade river") for r in river)
    assert result.stats["examples the metric could not score"] >= len(river)
    assert archive.campaign(result.campaign_id).status == "finished"


def test_a_metric_returning_nan_stops_before_a_call_or_at_the_first_bad_score(tmp_path: Path,
                                                                           fake_endpoint: FakeEndpoint) -> None:
    always = agentopt.Task.from_records(ROWS, inputs=["question", "context"], target="answer",
                                        metric=lambda e, p: math.nan, name="w")
    with pytest.raises(MetricContractError, match=r"metric .*<lambda> returned nan, outside \[0, 1\] on example train-"):
        run(always, fake_endpoint.url, tmp_path / "a.db")
    assert fake_endpoint.requests == [], "checked on a train answer before any model call"

    def nan_when_wrong(example: agentopt.Example, prediction: str) -> float:
        return 1.0 if prediction in example.targets else math.nan

    later = always.with_metric(nan_when_wrong)
    with pytest.raises(MetricContractError, match="nan_when_wrong returned nan, outside"):
        run(later, fake_endpoint.url, tmp_path / "b.db")
    [campaign] = agentopt.Archive(str(tmp_path / "b.db")).campaigns()
    assert campaign.status == "failed"


# --- the same objects from YAML -----------------------------------------------------------------------
def _yaml(tmp_path: Path, url: str, metric: str) -> Path:
    (tmp_path / "qa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    (tmp_path / "my_metrics.py").write_text(
        "def exact(example, prediction):\n"
        "    return 1.0 if prediction in example.targets else (0.0, 'expected ' + example.target)\n")
    role = {"model": "fake", "base_url": url, "max_attempts": 1}
    config = {"name": "y", "tasks": [{"path": "qa.jsonl", "inputs": ["question", "context"], "target": "answer",
                                      "metric": metric}],
              "seed_agent": {"instruction": "Answer.", "template": "{question}"},
              "models": {"task": role, "proposer": {**role, "temperature": 0.9}},
              "strategy": {"name": "ape", "params": SMALL_APE.params}, "evaluation": {"backend": "threads"}}
    (tmp_path / "c.yaml").write_text(json.dumps(config))
    return tmp_path / "c.yaml"


@pytest.mark.slow
def test_a_yaml_task_entry_with_a_module_function_metric(tmp_path: Path, fake_endpoint: FakeEndpoint) -> None:
    config = _yaml(tmp_path, fake_endpoint.url, "my_metrics:exact")
    done = cli("run", config.name, "--db", "a.db", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    [report] = json.loads(done.stdout)
    assert report["best_test"]["mean"] == 1.0 and report["task"] == "qa"
    resumed = cli("resume", report["campaign_id"], "--db", "a.db", cwd=tmp_path)
    assert resumed.returncode == 0 and "already finished" in resumed.stdout


def test_a_metric_that_does_not_import_is_one_line_before_anything_is_written(tmp_path: Path) -> None:
    config = _yaml(tmp_path, "http://127.0.0.1:9/v1", "my_metrics:nope")
    with nothing_written(tmp_path):
        assert_refused(cli("run", config.name, "--db", "a.db", cwd=tmp_path), "my_metrics has no function 'nope'")


@pytest.mark.slow
def test_a_campaign_of_a_python_task_resumes_only_from_python(tmp_path: Path, fake_endpoint: FakeEndpoint) -> None:
    task = agentopt.Task.from_records(ROWS, inputs=["question", "context"], target="answer", metric=exact, name="w")
    result = run(task, fake_endpoint.url, tmp_path / "a.db")
    agentopt.Archive(str(tmp_path / "a.db")).finish_campaign(result.campaign_id, "interrupted", {})
    refused = cli("resume", result.campaign_id, "--db", str(tmp_path / "a.db"))
    assert refused.returncode == 2 and "was built in Python" in refused.stderr
    again = agentopt.resume(result.campaign_id, task, archive=f"sqlite:///{tmp_path / 'a.db'}", progress=False)
    assert again.best.candidate_id == result.best.candidate_id



def judging_responder(body: dict[str, Any]) -> tuple[int, str | dict[str, Any]]:
    """The echo fake, plus a judge that gives 10 when the candidate answer is the first reference."""
    system = body["messages"][0]["content"]
    if system.startswith("You are a strict grader"):
        user = body["messages"][-1]["content"]
        reference = user.split("\n- ")[1].split("\n")[0] if "\n- " in user else user.split("Reference answer: ")[1]
        candidate = re.search(r"\n<(answer-[0-9a-f]{16})>\n(.*)\n</\1>\n", user, re.S).group(2)
        return 200, "Score: 10" if candidate == reference else "Score: 0"
    return task_aware_responder(body)


def judged_run(tmp_path: Path, judge_calls: int) -> tuple[agentopt.Result, FakeEndpoint]:
    """APE on the echo task graded by the scripted judge, with a judge budget of ``judge_calls``."""
    endpoint = FakeEndpoint(judging_responder)
    try:
        task = agentopt.Task.from_records(ROWS, inputs=["question", "context"], target="answer",
                                          metric=agentopt.LLMJudge("Same word?"), name="w")
        fake = agentopt.Role(model="fake", base_url=endpoint.url, max_attempts=1)
        result = agentopt.optimize(task, seed=agentopt.PromptAgent(instruction="Answer.", template="{question}"),
                                   strategy=SMALL_APE, models=roles(endpoint.url).model_copy(update={"judge": fake}),
                                   archive=str(tmp_path / "a.db"), evaluation=agentopt.Evaluation(backend="threads"),
                                   budget=agentopt.Budget(judge_calls=judge_calls), progress=False)
    finally:
        endpoint.close()
    return result, endpoint


def test_a_judged_campaign_pays_its_judge_calls_on_the_judge_role(tmp_path: Path) -> None:
    result, endpoint = judged_run(tmp_path, 400)
    assert result.best.test.mean == 1.0 and result.seed_test.mean == 0.0 and "echo" in result.best.agent.instruction.lower()
    archive = agentopt.Archive(str(tmp_path / "a.db"))
    judged = archive.spend(result.campaign_id)["judge"][0]
    graded = [r for r in endpoint.requests if r["messages"][0]["content"].startswith("You are a strict grader")]
    assert judged == len({json.dumps(r["messages"]) for r in graded}) > 0, "each distinct judgement paid once"
    assert result.stats["budget"]["judge"]["limits"]["calls"] == 400
    wrong = [r for r in archive.show(result.best.candidate_id).results] + [
        r for c in archive.top(50, "test", task="w", strategy="seed") for r in archive.show(c.candidate_id).results]
    assert {r.feedback for r in wrong if r.score == 0.0} == {"Score: 0"}, "the judge's reply is the feedback"


def test_a_judge_without_a_reachable_judge_model_fails_before_anything_is_written(tmp_path: Path,
                                                                               fake_endpoint: FakeEndpoint) -> None:
    task = agentopt.Task.from_records(ROWS, inputs=["question"], target="answer", metric="judge", name="w")
    models = roles(fake_endpoint.url).model_copy(update={"judge": agentopt.Role(model="x", base_url="http://127.0.0.1:9/v1",
                                                                                max_attempts=1, timeout_s=2)})
    with nothing_written(tmp_path), pytest.raises(AgentoptError, match="127.0.0.1:9"):
        agentopt.optimize(task, models=models, archive=f"sqlite:///{tmp_path / 'a.db'}", progress=False,
                          evaluation=agentopt.Evaluation(backend="threads"))


def test_a_file_task_keeps_its_columns_and_seed_for_a_resume(tmp_path: Path) -> None:
    path = tmp_path / "qa.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    task = agentopt.Task.from_file(path, inputs=["question", "context"], target="answer", metric="contains", seed=3)
    again = load_task(task.ref, seed=task.seed)  # what resume and export do
    assert (again.train, again.test, again.metric_name, again.seed) == (task.train, task.test, "contains", 3)
    assert agentopt.Task.from_file(path, inputs=["question"], target="answer", metric=exact).ref is None, \
        "a function cannot be stored: such a task is passed again"
    with pytest.raises(ConfigError, match="task_seed=1 differs from the seed task 'qa' was split with"):
        agentopt.optimize(task, task_seed=1)


def test_budget_shorthand_and_its_conflicts() -> None:
    assert agentopt.Budget(task_calls=5, judge_usd=1.5).judge.usd == 1.5
    with pytest.raises(ValueError, match="either as task=... or as task_"):
        agentopt.Budget(task_calls=5, task={"calls": 3})


def test_a_seed_template_reading_a_missing_field_is_refused_before_any_call(tmp_path: Path,
                                                                          fake_endpoint: FakeEndpoint) -> None:
    task = agentopt.Task.from_records(ROWS, inputs=["question", "context"], target="answer", name="w")
    with pytest.raises(ConfigError, match=r"seed_agent.template: the template reads \{answer\}"):
        agentopt.optimize(task, seed=agentopt.PromptAgent(instruction="x", template="{answer}"),
                          models=roles(fake_endpoint.url), archive=str(tmp_path / "a.db"), progress=False)
    assert fake_endpoint.requests == [] and not (tmp_path / "a.db").exists()
    with pytest.raises(TaskError, match="'input' means the whole input"):
        agentopt.Task.from_records(ROWS, inputs=["question", "input"], target="answer")


def test_a_judge_budget_spent_mid_search_leaves_answers_unscored_and_the_test_reserve_intact(tmp_path: Path) -> None:
    result, _ = judged_run(tmp_path, 24)
    assert result.summary.stopped_by is not None and "judge" in result.summary.stopped_by
    archive = agentopt.Archive(str(tmp_path / "a.db"))
    ids = {c.candidate_id for s in ("train", "val", "test") for c in archive.top(100, s, task="w")}
    errors = [r.error for c in ids for r in archive.show(c).results if r.error]
    assert any(e.startswith("not scored: ") for e in errors), errors
    assert result.seed_test.n == 8, "the judge's share for the final test scoring was kept"
