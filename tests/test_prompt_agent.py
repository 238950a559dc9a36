from fakes import FakeEndpoint

from agentopt.agents import agent_from_payload
from agentopt.agents.models.llm import Completion, Endpoint, LLMClient, MemoryCache
from agentopt.agents.postprocess import PostProcess
from agentopt.agents.prompt import Demo, PromptAgent
from agentopt.agents.runtime.prompt_runtime import postprocess
from agentopt.archive.store import content_hash
from agentopt.optimizer.strategies.proposals import clean_instruction
from agentopt.optimizer.tasks import Example


def test_messages_put_instruction_first_and_demos_as_turns() -> None:
    agent = PromptAgent(instruction="Give the {plural}.", demos=(Demo(input="cat", output="cats"),))
    assert agent.messages("dog") == [
        {"role": "system", "content": "Give the {plural}."},
        {"role": "user", "content": "cat"},
        {"role": "assistant", "content": "cats"},
        {"role": "user", "content": "dog"},
    ]


def test_postprocess_keeps_the_answer_only() -> None:
    assert postprocess('Answer: "Elephant."\nBecause it is big.') == "Elephant"
    assert postprocess("\n\n  dogs  ") == "dogs"
    assert postprocess("a\nb", {"first_line": False}) == "a\nb"


def test_content_hash_ignores_case_and_whitespace_but_not_demos() -> None:
    a = PromptAgent(instruction="Give the  plural.")
    assert content_hash(a) == content_hash(PromptAgent(instruction=" give the plural. "))
    assert content_hash(a) != content_hash(a.model_copy(update={"demos": (Demo(input="x", output="y"),)}))
    assert content_hash(a) != content_hash(a.model_copy(update={"postprocess": PostProcess(first_line=False)}))


def test_payload_round_trip_and_runnable(fake_endpoint: FakeEndpoint) -> None:
    agent = PromptAgent(instruction="Echo the word.", demos=(Demo(input="a", output="a"),))
    assert agent_from_payload(agent.payload()) == agent
    llm = LLMClient([Endpoint(base_url=fake_endpoint.url, model="fake")], MemoryCache())
    runnable = agent.as_runnable(llm)
    assert runnable.invoke("otter") == "otter"
    assert runnable.invoke({"input": "maple"}) == "maple"
    assert runnable.batch(["x", "y"]) == ["x", "y"]


def reply(text: str, finish: str = "stop") -> Completion:
    return Completion(text, 1, 1, 0.0, finish)


def test_proposals_are_cleaned_or_rejected_with_a_reason() -> None:
    assert clean_instruction(reply("The instruction was to give the plural form. Then more.")).instruction == "Give the plural form."
    assert clean_instruction(reply("")).reason == "empty"
    assert clean_instruction(reply("Write the plural form of every noun that", "length")).reason == "truncated"
    assert clean_instruction(reply("Plural.")).reason == "too short"
    assert clean_instruction(reply("This instruction is about nouns.")).instruction is None
    demos = [Example("train-1", "elephant", "elephants")]
    assert clean_instruction(reply("Turn elephant into elephants."), demos).reason == "echoes the demonstrations"
    assert clean_instruction(reply("Input: cat Output: cats")).instruction is None
