"""The judge metric on a scripted fake judge: the prompt it sends, how it reads replies, its errors."""

from collections.abc import Iterator
from typing import Any

import pytest
from fakes import FakeEndpoint

from agentopt.agents.models.budget import Price, RoleBudget, Spend
from agentopt.agents.runtime.errors import BudgetExhausted, ConfigError, LLMError
from agentopt.agents.models.gate import Halted, LocalGate
from agentopt.agents.models.llm import Endpoint, LLMClient, MemoryCache
from agentopt.optimizer.tasks import Example
from agentopt.optimizer.tasks.judge import DEFAULT_RUBRIC, LLMJudge, parse_verdict
from agentopt.optimizer.tasks.metrics import Metric, MetricFailed, Score
from agentopt.optimizer.tasks.scoring import resolve_metric


def Ex(example_id: str, inputs: str | dict[str, str], targets: tuple[str, ...] = ("Paris",)) -> Example:  # noqa: N802
    return Example(example_id, inputs, targets[0], targets[1:])


@pytest.mark.parametrize(("reply", "value"), [
    ("Score: 7", 0.7), ("score:7", 0.7), ("Score: **8**", 0.8), ("Score: 8/10", 0.8), ("The score is 9.", 0.9),
    ("Score: 7.5", 0.75), ("7/10", 0.7), ("I give it 3 out of 10.", 0.3), ("10", 1.0), ("0", 0.0),
    ("8\nThe answer matches.", 0.8), ("yes", 1.0), ("Yes, it is.", 1.0), ("No.", 0.0), ("True", 1.0),
    ("Score: 4, the answer is correct", 0.4), ("Score: 11 or Score: 6", 0.6),
])
def test_parse_verdict_reads_many_reply_shapes(reply: str, value: float) -> None:
    assert parse_verdict(reply, 10) == pytest.approx(value)


@pytest.mark.parametrize("reply", [
    "Score: 11", "Score: -2", "", "   ", "gibberish", "asdf qwer", "11", "-3", "3/5", "2 + 2 = 4", "7th", "Score:",
    "The answer is correct.", "The answer is incorrect.", "This is not correct.", "Wrong answer.",
])
def test_parse_verdict_finds_no_verdict(reply: str) -> None:
    assert parse_verdict(reply, 10) is None


def test_parse_verdict_follows_the_scale() -> None:
    assert parse_verdict("Score: 4", 5) == 0.8 and parse_verdict("Score: 7", 5) is None
    assert parse_verdict("4/5", 5) == 0.8 and parse_verdict("4/10", 5) is None


@pytest.fixture
def judge_fake() -> Iterator[tuple[FakeEndpoint, list[str]]]:
    """A fake judge that answers from a list (the last reply repeats), and records what it was asked."""
    replies: list[str] = ["Score: 8"]
    endpoint = FakeEndpoint(lambda body: (200, replies.pop(0) if len(replies) > 1 else replies[0]))
    yield endpoint, replies
    endpoint.close()


def client(endpoint: FakeEndpoint, **kwargs: Any) -> LLMClient:
    return LLMClient([Endpoint(base_url=endpoint.url, model="fake")], MemoryCache(), timeout_s=5, max_attempts=1,
                     role="judge", **kwargs)


def test_a_bound_judge_scores_with_its_reply_as_feedback(judge_fake: tuple[FakeEndpoint, list[str]]) -> None:
    endpoint, replies = judge_fake
    replies[:] = ["  Score: 8\nClose to the reference.  "]
    judge = LLMJudge("Grade the capital city.").bind(client(endpoint))
    score = judge(Ex("e1", "What is the capital of France?", ("Paris", "paris, France")), "Paris.")
    assert score == Score(0.8, "Score: 8\nClose to the reference.")
    (request,) = endpoint.requests
    system, user = request["messages"]
    assert system["role"] == "system" and "strict grader" in system["content"]
    for part in ("Grade the capital city.", "What is the capital of France?", "- Paris", "- paris, France",
                 "\nParis.\n</answer-", '"Score: N"', "0 (wrong) to 10 (correct)"):
        assert part in user["content"]


def test_the_judge_is_a_metric_keyed_on_the_raw_prediction() -> None:
    judge = LLMJudge()
    assert isinstance(judge, Metric) and judge.name == "judge" and judge.rubric == DEFAULT_RUBRIC
    assert judge.key("  Paris. ") == "  Paris. "
    bound = judge.bind(object())  # type: ignore[arg-type]
    assert bound == judge and bound.llm is not None and judge.llm is None and "llm" not in repr(bound)


def test_a_single_reference_and_a_multi_field_input(judge_fake: tuple[FakeEndpoint, list[str]]) -> None:
    endpoint, _ = judge_fake
    judge = LLMJudge().bind(client(endpoint))
    judge(Ex("e2", {"question": "Capital of France?", "context": "Europe"}), "Paris")
    user = endpoint.requests[0]["messages"][1]["content"]
    assert "question: Capital of France?\ncontext: Europe" in user
    assert "Reference answer: Paris\n" in user and "Reference answers" not in user


def test_the_same_judgement_twice_is_one_call(judge_fake: tuple[FakeEndpoint, list[str]]) -> None:
    endpoint, _ = judge_fake
    llm = client(endpoint)
    judge = LLMJudge().bind(llm)
    example = Ex("e1", "What is the capital of France?")
    assert judge(example, "Paris") == judge(example, "Paris")
    assert len(endpoint.requests) == 1 and llm.usage.calls == 1 and llm.usage.cache_hits == 1
    judge(example, "Lyon")
    assert len(endpoint.requests) == 2


def test_an_unparseable_reply_is_an_error_not_a_zero(judge_fake: tuple[FakeEndpoint, list[str]]) -> None:
    endpoint, replies = judge_fake
    replies[:] = ["I think\nthe capital   of France is Paris " + "x" * 200]
    with pytest.raises(MetricFailed, match=r"^judge reply not understood: 'I think the capital of France is") as info:
        LLMJudge().bind(client(endpoint))(Ex("e1", "Capital?"), "Paris")
    assert "\n" not in str(info.value) and len(str(info.value)) < 130


def test_a_failed_judge_call_is_an_error(judge_fake: tuple[FakeEndpoint, list[str]]) -> None:
    endpoint, _ = judge_fake
    endpoint.responder = lambda body: (400, {"error": "bad request"})
    with pytest.raises(MetricFailed, match="^judge call failed: .*refused the request") as info:
        LLMJudge().bind(client(endpoint))(Ex("e1", "Capital?"), "Paris")
    assert not isinstance(info.value, LLMError)


def test_a_spent_budget_goes_through_unchanged(judge_fake: tuple[FakeEndpoint, list[str]]) -> None:
    endpoint, _ = judge_fake
    endpoints = [Endpoint(base_url=endpoint.url, model="fake")]
    gate = LocalGate(endpoints)
    gate.configure("judge", RoleBudget(calls=1), Price(), Spend())
    judge = LLMJudge().bind(client(endpoint, gate=gate))
    judge(Ex("e1", "Capital?"), "Paris")
    with pytest.raises(BudgetExhausted) as info:
        judge(Ex("e2", "Capital?"), "Lyon")
    assert not isinstance(info.value, MetricFailed)
    gate.halt("endpoint_down", "judge server died")
    with pytest.raises(Halted):
        judge(Ex("e3", "Capital?"), "Nice")
    assert len(endpoint.requests) == 1


def test_an_unbound_judge_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"needs a judge model \(models.judge\)"):
        LLMJudge()(Ex("e1", "Capital?"), "Paris")
    with pytest.raises(ConfigError):
        LLMJudge(scale=0)


def test_resolve_metric_builds_a_judge_with_the_rubric() -> None:
    metric = resolve_metric("judge", "my rubric")
    assert isinstance(metric, LLMJudge) and metric.rubric == "my rubric" and metric.llm is None
    assert resolve_metric("judge") == LLMJudge()
