"""Canonical forms behind content hashes, one per agent kind.

Two candidates with the same canonical form behave identically, so the second is never stored or
evaluated. Prompts normalise their text (``PromptAgent.canonical``); code and graphs use the forms
below, so that reformatting, comments, docstrings or the order nodes were listed in never make a
"new" candidate.
"""

import ast
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


def code_canonical(source: str) -> str:
    """The code's AST without comments, docstrings or formatting, printed back as source.

    Code that does not parse keeps its text with whitespace collapsed: it still gets a stable
    hash, and it fails as an error when run.
    """
    try:
        return ast.unparse(_strip_docstrings(ast.parse(source)))
    except SyntaxError:
        return re.sub(r"\s+", " ", source).strip()


def graph_canonical(nodes: Mapping[str, Any], edges: Iterable[tuple[str, str]]) -> str:
    """Nodes sorted by name (each with its JSON-able spec) and edges sorted: listing order is irrelevant."""
    return json.dumps({"nodes": {name: nodes[name] for name in sorted(nodes)},
                       "edges": sorted({(a, b) for a, b in edges})}, sort_keys=True, ensure_ascii=False)
