"""Tools a graph node can hand its LLM reply to: a calculator and sandboxed Python.

A tool never raises for what the model wrote: a reply it cannot use comes back as a
``ToolOutput`` with an error, which the node passes on as text (downstream nodes and the language
loss can see what went wrong), so a tool failure is the agent's behaviour, not a lost example.

Standard library only, imports relative: ``agentopt export`` copies this module into packages.
"""

import ast
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from .sandbox import Limits, run_sandboxed

ToolName = Literal["calculator", "python"]

_BINARY: dict[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
_UNARY: dict[type[ast.unaryop], Callable[[float], float]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_EXPRESSION = re.compile(r"[\d.\s+\-*/()%]+")
MAX_EXPONENT = 64
PYTHON_LIMITS = Limits(cpu_s=5.0, wall_s=15.0, memory_mb=256, max_llm_calls=1)
_WRAPPER = "\n\ndef _agentopt_tool():\n    return globals().get('result')\n"


@dataclass(frozen=True)
class ToolOutput:
    text: str
    error: str | None = None


def _evaluate(node: ast.AST) -> float:
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > MAX_EXPONENT:
            raise ValueError(f"exponent {right} is too large")
        return _BINARY[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_evaluate(node.operand))
    raise ValueError(f"unsupported syntax {type(node).__name__}")


def _number(value: float) -> str:
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return f"{value:.6f}".rstrip("0")


def calculator(reply: str) -> ToolOutput:
    """Evaluate the longest arithmetic expression in the reply (the last one on a tie).

    Small models wrap expressions in prose ("The total is 3 * (4 + 5) ="), so the expression is
    found rather than demanded; only numbers, + - * / // % ** and parentheses are ever evaluated.
    """
    text = reply.replace("×", "*").replace("÷", "/").replace("^", "**")
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)
    found = [m.strip() for m in _EXPRESSION.findall(text) if re.search(r"\d", m)]
    if not found:
        return ToolOutput(f"[calculator error: no arithmetic expression in {reply[:80]!r}]", "no expression")
    expression = max(reversed(found), key=len).strip(" .")
    try:
        return ToolOutput(_number(_evaluate(ast.parse(expression, mode="eval"))))
    except (SyntaxError, ValueError, ZeroDivisionError, OverflowError, TypeError) as exc:
        return ToolOutput(f"[calculator error: {exc} in {expression!r}]", str(exc))


def _result_of_last_expression(code: str) -> str:
    """``x * 2`` on its own line becomes ``result = x * 2``: models often end with the expression
    they mean, as in a notebook. Code that does not parse is left for the sandbox to report."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return code
    if tree.body and isinstance(tree.body[-1], ast.Expr) and not isinstance(tree.body[-1].value, ast.Call):
        tree.body[-1] = ast.Assign(targets=[ast.Name("result", ast.Store())], value=tree.body[-1].value)
        return ast.unparse(ast.fix_missing_locations(tree))
    return code


def python(reply: str) -> ToolOutput:
    """Run the reply's code (its first fenced block, or all of it) in the sandbox.

    The node's output is the program's ``result`` variable, or failing that the last line it
    printed. The code gets no LLM access and the sandbox's tight limits.
    """
    fenced = re.search(r"```(?:python|py)?\s*\n(.*?)```", reply, re.DOTALL)
    code = _result_of_last_expression(fenced.group(1) if fenced else reply)
    run = run_sandboxed(code + _WRAPPER, "_agentopt_tool", [], None, PYTHON_LIMITS)
    if not run.ok:
        return ToolOutput(f"[python error: {run.error}]", run.error or run.kind)
    if isinstance(run.value, (int, float)) and not isinstance(run.value, bool):
        return ToolOutput(_number(run.value))
    if run.value is not None:
        return ToolOutput(str(run.value))
    lines = [line for line in run.stdout.splitlines() if line.strip()]
    return ToolOutput(lines[-1].strip() if lines else "", None if lines else "the program printed nothing")


TOOLS: dict[str, Callable[[str], ToolOutput]] = {"calculator": calculator, "python": python}
