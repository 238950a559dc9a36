"""Language loss, back-propagation and the two optimizers of agent symbolic learning.

The shape mirrors PyTorch: :func:`loss` judges one output, :func:`backward` walks the trajectory
from the output node to the first node turning the loss into one gradient per node (and a
requirement handed to the node's inputs), and :func:`prompt_step` / :func:`pipeline_step` apply the
gradients to a copy of the graph. Nothing is mutated: each step returns a new graph plus the
edits it refused, each with its reason, so the caller can record them.

Every prompt is short and concrete because the bundled 135M model is also the proposer; every
proposal is validated (variables kept, no truncation, no training strings copied in) before it can
cost a task-model call.
"""

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from agentopt.agents.runtime.errors import LLMError
from agentopt.agents.graph import GraphAgent, GraphError
from agentopt.agents.runtime.graph_runtime import INPUT, Step
from agentopt.agents.graph_edits import AddNode, Edit, RemoveNode, SetTool, apply_edit, parse_edit
from agentopt.agents.runtime.prompt_runtime import template_fields
from agentopt.agents.models.llm import LLMClient
from agentopt.optimizer.strategies.base import TunableAgent
from agentopt.optimizer.tasks import Example

LOSS = """Question: {input}
Expected answer: {target}
Given answer: {output}{note}
The given answer is wrong. In one or two sentences, say what should have been different."""
BACKWARD = """One step of a pipeline got this prompt:
{prompt}
It replied:
{output}
Problem seen later in the pipeline: {requirement}
Reply in two lines:
Suggestion: <how this step's prompt should change>
Requirement: <what this step needs from its inputs>"""
REWRITE = """Improve this prompt template using the feedback.
Template:
{template}
Feedback:
{feedback}
Keep the placeholders {placeholders} exactly as written. Reply with the new template only."""
PIPELINE = """A pipeline runs these steps in order:
{steps}
Problems seen:
{feedback}
Which change would help most?
{menu}
Reply with the option number only."""
SHOWN = 600  # characters of a prompt or output shown to the proposer
RAMBLE = 3  # a rewrite longer than this many times its template (and 400 characters) is refused


@dataclass(frozen=True)
class Gradient:
    """A suggestion for one node, from one example's loss."""

    node: str
    example_id: str
    text: str


T = TypeVar("T", bound=TunableAgent)


@dataclass(frozen=True)
class Update(Generic[T]):
    """A step's result: the new agent, what changed, and each refused edit with its reason."""

    agent: T
    applied: tuple[str, ...] = ()
    rejected: tuple[dict[str, Any], ...] = field(default_factory=tuple)


def _clip(text: str) -> str:
    return text if len(text) <= SHOWN else text[: SHOWN - 3] + "..."


def _ask(llm: LLMClient, content: str, sample: int) -> str | None:
    """One proposer call; ``None`` for an empty, truncated or failed reply (never a half-proposal)."""
    try:
        reply = llm.chat([{"role": "user", "content": content}], sample=sample)
    except LLMError:
        return None
    text = reply.text.strip()
    return text if text and reply.finish_reason != "length" else None


def loss(llm: LLMClient, example: Example, output: str, feedback: str | None = None) -> str | None:
    """The judge's account of what was wrong with ``output``; the metric's own feedback, when it
    gives one, is shown to it as the grader's note (an exact reason beats a guess)."""
    note = f"\nGrader's note: {_clip(feedback)}" if feedback else ""
    return _ask(llm, LOSS.format(input=_clip(example.text), target=example.target, output=_clip(output), note=note), 0)


def _field(text: str, name: str) -> str | None:
    """A labelled field of the reply; a small model that echoes the ``<placeholder>`` gave none."""
    found = re.search(rf"{name}\s*:\s*(.+?)(?=\n\s*\w+\s*:|\Z)", text, re.IGNORECASE | re.DOTALL)
    value = found.group(1).strip() if found else None
    return None if value is None or re.fullmatch(r"<[^<>]*>", value) else value


def _unlabelled(reply: str, name: str) -> str | None:
    """The field, or the whole reply when the model wrote no such label (but not when the label is
    there with an echoed ``<placeholder>``: that reply says nothing)."""
    if re.search(rf"{name}\s*:", reply, re.IGNORECASE):
        return _field(reply, name)
    return reply


def backward(llm: LLMClient, agent: GraphAgent, trajectory: Sequence[Step], example_id: str,
             loss_text: str) -> list[Gradient]:
    """Gradients from the output node back to the first node. A node's requirement is what its
    readers asked of it (the loss, for the output node); a reply without the two fields is used
    whole as both, so a rambling small model still passes something upstream."""
    graph, steps = agent.graph(), {s["node"]: s for s in trajectory}
    asked: dict[str, list[str]] = {agent.output: [loss_text]}
    gradients = []
    for name in reversed(agent.order()):
        if name not in steps or not asked.get(name):
            continue
        step = steps[name]
        reply = _ask(llm, BACKWARD.format(prompt=_clip(step["prompt"]), output=_clip(step["reply"]),
                                          requirement=" ".join(asked[name])), 0)
        if not reply:
            continue
        suggestion = _unlabelled(reply, "suggestion")
        if not suggestion:
            continue
        gradients.append(Gradient(name, example_id, suggestion))
        for pred in graph.predecessors(name):
            asked.setdefault(pred, []).append(_unlabelled(reply, "requirement") or suggestion)
    return gradients


def _template_reply(text: str) -> str:
    """The template in a reply: a fenced block, or what follows a ``Template:`` label (up to a
    ``Feedback:`` the model may have echoed), or the whole reply."""
    fenced = re.search(r"```\w*\n(.*?)```", text, re.DOTALL)
    labelled = re.search(r"template\s*:\s*(.*?)(?:\n\s*feedback\s*:|\Z)", text, re.IGNORECASE | re.DOTALL)
    found = fenced or labelled
    return (found.group(1) if found else text).strip().strip("\"'`").strip()


def _copies_training(template: str, train: Sequence[Example]) -> bool:
    lowered = template.lower()
    return any(len(e.text) > 3 and e.text.lower() in lowered for e in train)


def prompt_step(llm: LLMClient, agent: T, gradients: Sequence[Gradient], train: Sequence[Example],
                samples: int = 2) -> Update[T]:
    """Rewrite each text (a graph's node, a program's prompt) that has gradients; a rewrite that
    loses or invents a variable, is truncated, or copies a training input into the prompt is
    refused and the text kept."""
    applied, rejected = [], []
    for name, old in agent.texts().items():
        feedback = [g.text for g in gradients if g.node == name]
        if not feedback:
            continue
        placeholders = ", ".join("{" + v + "}" for v in sorted(set(template_fields(old))))
        content = REWRITE.format(template=old, feedback="\n".join(f"- {_clip(f)}" for f in feedback[:3]),
                                 placeholders=placeholders)
        for sample in range(samples):
            reply = _ask(llm, content, sample)
            template = _template_reply(reply) if reply else ""
            try:
                if not template:
                    raise ValueError("the proposer gave no usable template (empty, truncated or failed)")
                if _copies_training(template, train):
                    raise ValueError("the rewrite copies a training input into the prompt")
                if len(template) > max(RAMBLE * len(old), 400):
                    raise ValueError(f"the rewrite rambles: {len(template)} characters for a "
                                     f"{len(old)}-character template")
                agent = agent.with_text(name, template)
            except ValueError as exc:
                rejected.append({"optimizer": "prompt", "node": name, "proposal": template, "reason": str(exc)})
                continue
            applied.append(f"rewrote node {name}")
            break
    return Update(agent, tuple(applied), tuple(rejected))


def menu(agent: GraphAgent) -> list[Edit]:
    """The edits offered to a small proposer, which can pick a number far more reliably than it can
    write a JSON edit: tool switches, a planning step before any node, removal of a node (the
    output node too, when one node feeds it: that node's output becomes the answer)."""
    options: list[Edit] = []
    for node in agent.nodes:
        tools = [t for t in ("calculator", "python", None) if t != node.tool]
        options += [SetTool(op="set_tool", name=node.name, tool=t) for t in tools]
    taken = {n.name for n in agent.nodes}
    plan = next(f"plan{i}" for i in range(len(taken) + 1) if f"plan{i}" not in taken)
    options += [AddNode(op="add_node", name=plan, template="Make a short plan to solve this: {input}", before=n.name)
                for n in agent.nodes]
    graph = agent.graph()
    options += [RemoveNode(op="remove_node", name=n.name) for n in agent.nodes
                if n.name != agent.output or graph.in_degree(n.name) == 1]
    return options


def describe(edit: Edit) -> str:
    match edit:
        case SetTool(name=name, tool=tool):
            return f"give step {name} the {tool} tool" if tool else f"take the tool away from step {name}"
        case AddNode(name=name, before=before):
            return f"add a planning step {name} before step {before}"
        case RemoveNode(name=name):
            return f"remove step {name}"
    return json.dumps(edit.model_dump())


def _choice(reply: str, options: Sequence[Edit]) -> Edit:
    """A JSON edit if the reply holds one (stronger proposers), else the numbered option."""
    block = re.search(r"\{.*\}", reply, re.DOTALL)
    if block:
        try:
            return parse_edit(json.loads(block.group(0)))
        except json.JSONDecodeError:
            pass
    number = re.search(r"\d+", reply)
    if number is None or not 1 <= int(number.group(0)) <= len(options):
        raise GraphError(f"the reply names no option between 1 and {len(options)}: {reply[:80]!r}")
    return options[int(number.group(0)) - 1]


def pipeline_step(llm: LLMClient, agent: GraphAgent, gradients: Sequence[Gradient], sample: int = 0) -> Update[GraphAgent]:
    """One structural edit chosen by the proposer, applied only if the result is a valid pipeline."""
    options = menu(agent)
    steps = "\n".join(f"- {n.name}" + (f" (tool: {n.tool})" if n.tool else "") + f": {_clip(n.template)}"
                      for n in (agent.node(name) for name in agent.order()))
    feedback = "\n".join(f"- {g.node}: {_clip(g.text)}" for g in gradients[:4]) or "- the answers are wrong"
    content = PIPELINE.format(steps=steps, feedback=feedback,
                              menu="\n".join(f"{i}. {describe(e)}" for i, e in enumerate(options, 1)))
    reply = _ask(llm, content, sample)
    try:
        if reply is None:
            raise GraphError("the proposer gave no usable reply (empty, truncated or failed)")
        edit = _choice(reply, options)
        return Update(apply_edit(agent, edit), (describe(edit),))
    except GraphError as exc:
        return Update(agent, (), ({"optimizer": "pipeline", "proposal": reply or "", "reason": str(exc)},))


def seed_pipelines(instruction: str) -> Mapping[str, dict[str, Any]]:
    """Starting graphs built around a task's seed instruction (braces escaped: it is prose)."""
    text = instruction.replace("{", "{{").replace("}", "}}")
    return {
        "single": {"nodes": [{"name": "answer", "template": f"{text}\n\n{{{INPUT}}}"}], "output": "answer"},
        "plan_answer": {
            "nodes": [{"name": "plan", "template": f"{text}\nThink briefly about how to solve this: {{{INPUT}}}"},
                      {"name": "answer", "template": f"{text}\nInput: {{{INPUT}}}\nNotes: {{plan}}\n"
                                                     "Reply with the answer only."}],
            "edges": [["plan", "answer"]], "output": "answer"},
        "calculator": {
            "nodes": [{"name": "expr", "tool": "calculator", "max_tokens": 64,
                       "template": f"Write one arithmetic expression that computes the answer to: {{{INPUT}}}"},
                      {"name": "answer", "template": f"{text}\nQuestion: {{{INPUT}}}\nCalculator result: {{expr}}\n"
                                                     "Reply with the final answer only."}],
            "edges": [["expr", "answer"]], "output": "answer"},
    }
