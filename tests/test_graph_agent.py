"""Graph agents: a validated DAG of prompt nodes and tools, traced, hashed by structure, runnable
under langchain; edits that would break the pipeline are refused with a reason."""

import json
from typing import Any

import pytest
from fakes import FakeEndpoint

from agentopt.agents.graph import GraphAgent, GraphError, Node
from agentopt.agents.graph_edits import apply_edit, parse_edit, rewrite
from agentopt.agents.kinds import agent_from_payload
from agentopt.agents.models.llm import Endpoint, LLMClient, MemoryCache, Sampling
from agentopt.agents.runtime.tools import calculator, python
from agentopt.optimizer.engine.evaluation import Job, run_job


def _reply(body: dict[str, Any]) -> tuple[int, str]:
    prompt = body["messages"][-1]["content"]
    if prompt.startswith("Write an expression"):
        return 200, "The expression is (12 + 30) * 2 ="
    if prompt.startswith("Write a program"):
        return 200, "```python\nresult = sum(range(10))\n```"
    return 200, "Answer: " + prompt.splitlines()[-1].split(": ")[-1] + "\nmore text"


@pytest.fixture
def llm() -> Any:
    endpoint = FakeEndpoint(_reply)
    yield LLMClient([Endpoint(base_url=endpoint.url, model="fake")], MemoryCache(), Sampling(max_tokens=64)), endpoint
    endpoint.close()


def pipeline() -> GraphAgent:
    return GraphAgent(nodes=(Node(name="expr", template="Write an expression for: {input}", tool="calculator"),
                             Node(name="answer", template="Question: {input}\nResult: {expr}")),
                      edges=(("expr", "answer"),), output="answer")


def test_nodes_run_in_order_with_a_trajectory_and_the_calculator(llm: Any) -> None:
    client, endpoint = llm
    output, trajectory = pipeline().run_traced("twelve plus thirty, doubled", client)
    assert output == "84"
    assert [s["node"] for s in trajectory] == ["expr", "answer"]
    assert trajectory[0]["reply"].startswith("The expression") and trajectory[0]["output"] == "84"
    assert trajectory[1]["inputs"] == {"expr": "84", "input": "twelve plus thirty, doubled"}
    assert trajectory[1]["prompt"] == "Question: twelve plus thirty, doubled\nResult: 84"
    assert len(endpoint.requests) == 2
    json.dumps(trajectory)  # stored in the archive as JSON


def test_python_tool_runs_in_the_sandbox(llm: Any) -> None:
    client, _ = llm
    agent = GraphAgent(nodes=(Node(name="code", template="Write a program for: {input}", tool="python"),),
                       output="code")
    assert agent.run("sum of 0..9", client) == "45"
    assert python("import socket\nsocket.socket()").error is not None
    assert python("print(6 * 7)").text == "42"


def test_calculator_finds_the_expression_and_refuses_anything_else() -> None:
    assert calculator("so 3 * (4 + 5) = ?").text == "27"
    assert calculator("1,000 + 250").text == "1250"
    assert calculator("7 / 2").text == "3.5"
    assert calculator("no numbers here").error == "no expression"
    assert calculator("2 ** 99999").error is not None
    assert calculator("__import__('os')").error is not None


def test_runnable_matches_run_and_the_payload_round_trips(llm: Any) -> None:
    client, _ = llm
    agent = pipeline()
    assert agent.as_runnable(client).invoke({"input": "x + 1"}) == agent.run("x + 1", client)
    assert agent.as_runnable(client).invoke("x + 1") == agent.run("x + 1", client)
    assert agent_from_payload(json.loads(json.dumps(agent.payload()))) == agent


def test_evaluation_stores_the_trajectory(llm: Any) -> None:
    client, _ = llm
    outcome = run_job(client, Job(1, "val", "e1", "one plus one", pipeline().payload(), "c"))
    assert outcome.output == "84" and outcome.trace is not None and len(outcome.trace) == 2


def test_canonical_form_ignores_listing_order_and_whitespace() -> None:
    agent = pipeline()
    shuffled = GraphAgent(nodes=tuple(reversed([n.model_copy(update={"template": n.template.replace(" ", "  ")})
                                                for n in agent.nodes])), edges=agent.edges, output="answer")
    assert agent.canonical() == shuffled.canonical()
    assert agent.canonical() != apply_edit(agent, parse_edit({"op": "set_tool", "name": "expr", "tool": None})) \
        .canonical()


A, B = Node(name="a", template="{input}"), Node(name="b", template="{a}")


@pytest.mark.parametrize(("nodes", "edges", "output", "reason"), [
    ((Node(name="a", template="{b}"), B), (("a", "b"), ("b", "a")), "b", "cycle"),
    ((A, B), (), "b", r"dangling input \{a\}"),
    ((A, Node(name="b", template="{input}")), (("a", "b"),), "b", r"lost template variable \{a\}"),
    ((A, B), (("a", "b"), ("c", "b")), "b", "does not exist"),
    ((A, B), (("a", "b"),), "a", "never reaches the output"),
    ((A, Node(name="a", template="{input}!")), (), "a", "duplicate node"),
])
def test_invalid_graphs_are_refused_with_the_reason(nodes: tuple[Node, ...], edges: tuple[tuple[str, str], ...],
                                                     output: str, reason: str) -> None:
    with pytest.raises(GraphError, match=reason):
        GraphAgent.build(nodes=nodes, edges=edges, output=output)


@pytest.mark.parametrize(("edit", "reason"), [
    ({"op": "add_edge", "source": "answer", "target": "expr"}, "cycle"),
    ({"op": "edit_node", "name": "answer", "template": "Q: {input} {notes}"}, r"dangling input \{notes\}"),
    ({"op": "edit_node", "name": "answer", "template": "Q: {input}"}, r"lost template variable \{expr\}"),
    ({"op": "add_node", "name": "check", "template": "{answer}", "before": "expr"}, "cycle"),
    ({"op": "remove_edge", "source": "input", "target": "expr"}, "no edge"),
    ({"op": "set_tool", "name": "expr", "tool": "shell"}, "not an edit"),
    ({"op": "teleport"}, "not an edit"),
])
def test_invalid_edits_are_refused_and_change_nothing(edit: dict[str, Any], reason: str) -> None:
    agent = pipeline()
    before = agent.payload()
    with pytest.raises(GraphError, match=reason):
        apply_edit(agent, parse_edit(edit))
    assert agent.payload() == before


def test_valid_edits_keep_edges_and_variables_in_step() -> None:
    agent = pipeline()
    grown = apply_edit(agent, parse_edit({"op": "add_node", "name": "plan", "template": "Plan for: {input}",
                                          "before": "expr"}))
    assert ("plan", "expr") in grown.edges and "{plan}" in grown.node("expr").template
    shrunk = apply_edit(grown, parse_edit({"op": "remove_node", "name": "expr"}))
    assert {n.name for n in shrunk.nodes} == {"plan", "answer"} and ("plan", "answer") in shrunk.edges
    assert "{plan}" in shrunk.node("answer").template
    single = apply_edit(agent, parse_edit({"op": "remove_node", "name": "expr"}))
    assert single.edges == () and single.node("answer").template == "Question: {input}\nResult: {input}"


def test_a_rewrite_must_keep_exactly_the_template_variables() -> None:
    agent = pipeline()
    assert rewrite(agent, "answer", "Given {input} and the result {expr}, reply with the number.") != agent
    with pytest.raises(GraphError, match=r"lost template variable \{input\}"):
        rewrite(agent, "answer", "Reply with {expr} only.")
    with pytest.raises(GraphError, match=r"dangling input \{hint\}"):
        rewrite(agent, "answer", "{input} {expr} {hint}")
    with pytest.raises(GraphError, match="does not parse"):
        rewrite(agent, "answer", "{input} {expr} {")
