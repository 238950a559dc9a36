"""The LLM judge against the real bundled model: every judgement is a score or a stored error,
never a crash, and a repeated judgement is served from the cache."""

import pytest

from agentopt.agents.models.llm import LLMClient, MemoryCache, Sampling
from agentopt.agents.models.local_model import LocalModelServers
from agentopt.optimizer.tasks import Example
from agentopt.optimizer.tasks.judge import LLMJudge
from agentopt.optimizer.tasks.metrics import MetricFailed

pytestmark = pytest.mark.local_model


def test_the_bundled_model_judges_or_fails_cleanly(local_model: LocalModelServers) -> None:
    llm = LLMClient(local_model.endpoints, MemoryCache(), Sampling(max_tokens=12), role="judge")
    judge = LLMJudge("The candidate answer is correct when it names the same pet as the reference.").bind(llm)
    example = Example("e1", {"context": "Ann has a cat. Bob has a dog.", "question": "What pet does Bob have?"},
                      "dog", ("a dog",))
    outcomes = []
    for prediction in ("dog", "Bob has a dog.", "cat", "I do not know"):
        try:
            score = judge(example, prediction)
        except MetricFailed as exc:
            outcomes.append(str(exc))
            assert str(exc).startswith(("judge reply not understood", "judge call failed"))
        else:
            outcomes.append(score)
            assert 0.0 <= score.value <= 1.0 and score.feedback
    calls = llm.usage.calls
    try:
        judge(example, "cat")
    except MetricFailed:
        pass
    assert llm.usage.calls == calls and llm.usage.cache_hits >= 1, "the same judgement again is a cache hit"
