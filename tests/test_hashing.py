"""Content hashes per agent kind: what counts as the same candidate before any call is made."""

from agentopt.agents.prompt import Demo, PromptAgent
from agentopt.agents.hashing import code_canonical, graph_canonical
from agentopt.archive.store import content_hash

CODE = '''
def forward(self, task):
    """Think step by step."""
    # first pass
    answer = self.llm(task,   temperature=0.0)
    return answer
'''
SAME_CODE = "def forward(self, task):\n    answer = self.llm(task, temperature=0.0)  # reformatted\n    return answer\n"


def test_prompts_hash_by_normalised_text_and_everything_else() -> None:
    base = PromptAgent(instruction="Give the antonym.")
    assert content_hash(base) == content_hash(PromptAgent(instruction="  give the ANTONYM. "))
    assert content_hash(base) != content_hash(PromptAgent(instruction="Give the synonym."))
    with_demo = base.model_copy(update={"demos": (Demo(input="hot", output="cold"),)})
    assert content_hash(base) != content_hash(with_demo), "demonstrations are part of the prompt"


def test_code_hashes_by_ast_without_comments_docstrings_or_formatting() -> None:
    assert code_canonical(CODE) == code_canonical(SAME_CODE)
    assert code_canonical(CODE) != code_canonical(SAME_CODE.replace("0.0", "0.7"))
    assert code_canonical("def f(:\n  pass") == code_canonical("def f(:   pass"), "unparsable code still hashes"


def test_graphs_hash_by_sorted_nodes_and_edges() -> None:
    nodes = {"draft": {"role": "writer"}, "check": {"role": "critic"}}
    reordered = {"check": {"role": "critic"}, "draft": {"role": "writer"}}
    assert graph_canonical(nodes, [("draft", "check"), ("check", "draft")]) == \
        graph_canonical(reordered, [("check", "draft"), ("draft", "check")])
    assert graph_canonical(nodes, [("draft", "check")]) != graph_canonical(nodes, [("check", "draft")])
