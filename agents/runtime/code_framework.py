"""The agent-building framework code agents are written in, and the hand-designed seed agents.

A code agent is a function ``forward(task) -> str`` built from LLM-call blocks: ``ask`` sends
one prompt with a role and a temperature and returns the named output fields it asked for. Fields
are requested as ``field: value`` lines and parsed leniently, because a small model rarely returns
valid JSON. ``FRAMEWORK`` is executed in the sandbox in front of every agent's code (its ``call_llm``
is the sandbox's proxy to the parent), and is shown verbatim to the meta agent, so the API it
programs against is exactly the one that runs.

Imports are relative and standard-library only: ``agentopt export`` copies this module (with the
sandbox) into packages, so a shipped code agent runs the same framework under the same confinement.
"""

from collections.abc import Callable, Mapping
from typing import Any

from .errors import AgentRunError
from .sandbox import Limits, run_sandboxed


FRAMEWORK = '''
import collections
import re


class Fields(dict):
    """The task of a multi-field problem: a dict of named inputs (task["question"]) that reads as
    "name: value" lines wherever it is used as text (f"{task}", str(task), ask(task))."""

    def __str__(self):
        return "\\n".join(f"{name}: {value}" for name, value in self.items())

    def __format__(self, spec):
        return format(str(self), spec)


def ask(prompt, fields=("answer",), instruction="", role="a helpful assistant", temperature=0.0, sample=0):
    """One LLM call. Returns {field: text} for each requested field ("" when the reply lacks it).
    Use a different `sample` to draw several different replies to the same prompt at temperature > 0."""
    wanted = "\\n".join(f"{f}: <{f}>" for f in fields)
    user = (instruction + "\\n\\n" if instruction else "") + str(prompt) + "\\n\\nReply with these lines:\\n" + wanted
    messages = [{"role": "system", "content": f"You are {role}."}, {"role": "user", "content": user}]
    return parse_fields(call_llm(messages, temperature=temperature, sample=sample), fields)


def parse_fields(reply, fields):
    """Lenient `field: value` parsing; the last field falls back to the reply's last line."""
    found, current = {}, None
    names = {f.lower(): f for f in fields}
    for line in reply.splitlines():
        label = re.match(r"^\\W*([A-Za-z_][A-Za-z_ ]{0,30}?)\\W*:\\s*(.*)$", line)
        if label:
            current = names.get(label.group(1).strip().lower())
            if current:
                found[current] = label.group(2).strip()
        elif current and line.strip():
            found[current] = (found[current] + "\\n" + line).strip("\\n")
    lines = [line.strip() for line in reply.splitlines() if line.strip()]
    if not found.get(fields[-1]) and lines:
        found[fields[-1]] = lines[-1]
    return {f: found.get(f, "") for f in fields}


def majority(answers):
    """The most common answer, compared case- and space-insensitively; the first one on a tie."""
    keys = [" ".join(a.lower().split()) for a in answers]
    best = collections.Counter(keys).most_common(1)[0][0]
    return answers[keys.index(best)]
'''



ENTRY = '''

def _agentopt_forward(task):
    return forward(Fields(task) if isinstance(task, dict) else task)
'''
"""Calls the agent's ``forward`` with a multi-field input as :class:`Fields` (JSON brings a dict)."""


def run_agent_code(code: str, inputs: str | Mapping[str, str], chat: Callable[..., str],
                   limits: Limits = Limits()) -> str:
    """Run ``forward(task)`` in the sandbox: ``task`` is the input text or, on a multi-field task, a
    ``Fields`` dict. Its LLM calls come back to ``chat(messages, sample=..., **sampling)`` in this
    process, so the key and the cache never reach the agent; whatever goes wrong in the agent is
    raised as :class:`AgentRunError` with the sandbox's reason."""
    def handler(request: dict[str, Any]) -> str:
        params = {k: v for k, v in request.items() if k not in ("messages", "sample")}
        return chat(request["messages"], sample=int(request.get("sample", 0)), **params)  # the role bounds them

    task = inputs if isinstance(inputs, str) else dict(inputs)
    result = run_sandboxed(FRAMEWORK + "\n" + code + ENTRY, "_agentopt_forward", [task], handler, limits)
    if not result.ok:
        raise AgentRunError(result.error or f"{result.kind}: the agent failed")
    return "" if result.value is None else str(result.value)


def answer(payload: Mapping[str, Any], inputs: str | Mapping[str, str], chat: Callable[..., str]) -> str:
    """A code agent's answer, its code run in the sandbox (what exported packages call)."""
    return run_agent_code(payload["code"], inputs, chat)


SEED_AGENTS: dict[str, tuple[str, str]] = {
    "chain_of_thought": ("Reason step by step before answering.", '''
def forward(task):
    return ask(task, ("thinking", "answer"), "Think step by step, then give the answer.")["answer"]
'''),
    "self_consistency": ("Sample several reasoning paths at a higher temperature and take the majority answer.", '''
def forward(task):
    answers = [ask(task, ("thinking", "answer"), "Think step by step, then give the answer.",
                   temperature=0.8, sample=i)["answer"] for i in range(5)]
    return majority(answers)
'''),
    "self_refine": ("Answer, let a critic check the answer, and revise it from the feedback.", '''
def forward(task):
    answer = ask(task, ("thinking", "answer"), "Think step by step, then give the answer.")["answer"]
    for round_no in range(2):
        review = ask(f"Task: {task}\\nProposed answer: {answer}", ("feedback", "correct"),
                     "Check the proposed answer. Say correct: yes if it is right, otherwise no.", role="a strict critic")
        if review["correct"].lower().startswith("yes"):
            break
        answer = ask(f"{task}\\nPrevious answer: {answer}\\nFeedback: {review['feedback']}", ("thinking", "answer"),
                     "Give a better answer using the feedback.", sample=round_no + 1)["answer"]
    return answer
'''),
    "debate": ("Two debaters with different roles argue over two rounds; a judge gives the final answer.", '''
def forward(task):
    roles = ["a careful mathematician", "a sceptical reviewer"]
    answers = {}
    for round_no in range(2):
        others = "\\n".join(f"{r}: {a}" for r, a in answers.items())
        for role in roles:
            context = task if not others else f"{task}\\nAnswers so far:\\n{others}"
            answers[role] = ask(context, ("thinking", "answer"), "Consider the other answers, then give yours.",
                                role=role, temperature=0.5, sample=round_no)["answer"]
    summary = "\\n".join(f"{r}: {a}" for r, a in answers.items())
    return ask(f"{task}\\nDebate:\\n{summary}", ("thinking", "answer"), "Decide the final answer.",
               role="a fair judge")["answer"]
'''),
    "step_back": ("First name the principles involved, then solve the task with them.", '''
def forward(task):
    principles = ask(task, ("principles",), "What principles or concepts does this task involve? List them.")
    return ask(f"{task}\\nPrinciples: {principles['principles']}", ("thinking", "answer"),
               "Use the principles to solve the task step by step.")["answer"]
'''),
    "quality_diversity": ("Generate several different answers, then pick the best of them.", '''
def forward(task):
    answers = []
    for i in range(3):
        tried = "; ".join(answers)
        prompt = task if not tried else f"{task}\\nAnswers tried so far: {tried}\\nTry a different approach."
        answers.append(ask(prompt, ("thinking", "answer"), "Think step by step, then give the answer.",
                           temperature=0.8, sample=i)["answer"])
    listed = "\\n".join(f"{n + 1}. {a}" for n, a in enumerate(answers))
    return ask(f"{task}\\nCandidate answers:\\n{listed}", ("thinking", "answer"),
               "Which candidate answer is correct? Give that answer.")["answer"]
'''),
    "role_assignment": ("Route the task to the expert role best suited to it, then let that expert answer.", '''
def forward(task):
    experts = {"math": "a math expert", "language": "a linguist", "general": "a helpful assistant"}
    choice = ask(task, ("expert",), "Which expert should answer this: math, language or general?")["expert"].lower()
    role = next((r for key, r in experts.items() if key in choice), experts["general"])
    return ask(task, ("thinking", "answer"), "Think step by step, then give the answer.", role=role)["answer"]
'''),
}
