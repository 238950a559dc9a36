"""The package's import graph, read from the source (nothing is imported): which module imports which.

Every import counts, wherever it stands: at the top, inside a function (a lazy import is still a
dependency) or under ``TYPE_CHECKING`` (an annotation names what it depends on). import-linter
checks the layer contracts in ``pyproject.toml``; this graph serves the rules it has no contract
for: no cycle between modules, and the size limits.
"""

import ast
from collections.abc import Iterator
from pathlib import Path

import networkx as nx

REPO = Path(__file__).resolve().parent.parent
FOLDERS = {"agentopt.agents": REPO / "agents", "agentopt.archive": REPO / "archive",
           "agentopt.optimizer": REPO / "optimizer", "agentopt": REPO / "optimizer" / "api"}
"""pyproject's package-dir: where each installed package's source lives."""
SKIPPED = ("export_template", "migrations")  # copied into other packages, or run by Alembic: not modules of ours


def modules() -> dict[str, Path]:
    """Every module of the package under its installed dotted name."""
    found: dict[str, Path] = {}
    for package, folder in FOLDERS.items():
        for path in folder.rglob("*.py"):
            rel = path.relative_to(folder).with_suffix("")
            if any(part in SKIPPED for part in rel.parts) or (package != "agentopt" and rel.parts[0] == "api"):
                continue
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            found[".".join((package, *parts))] = path
    return found


def _imported(tree: ast.Module, module: str, is_package: bool, known: dict[str, Path]) -> Iterator[str]:
    """What ``module`` imports. ``from P import N`` imports submodule ``P.N`` where there is one (as
    import-linter reads it), else ``P`` itself: the parent package that Python runs on the way is not
    counted, so a package's ``__init__`` may gather its modules."""
    base = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            origin = node.module or ""
            if node.level:
                anchor = base.split(".")[: len(base.split(".")) - node.level + 1]
                origin = ".".join([*anchor, origin] if origin else anchor)
            for alias in node.names:
                yield f"{origin}.{alias.name}" if f"{origin}.{alias.name}" in known else origin


def import_graph() -> "nx.DiGraph[str]":
    """Modules as nodes; an edge A -> B where A imports B (an import of a package's name that is a
    submodule counts as importing the submodule)."""
    known = modules()
    graph: nx.DiGraph[str] = nx.DiGraph()
    graph.add_nodes_from(known)
    for module, path in known.items():
        tree = ast.parse(path.read_text(), str(path))
        for target in _imported(tree, module, path.name == "__init__.py", known):
            if target in known and target != module:
                graph.add_edge(module, target)
    return graph


def cycles(graph: "nx.DiGraph[str]") -> list[list[str]]:
    """The groups of modules that import each other in a loop, each sorted."""
    return sorted(sorted(group) for group in nx.strongly_connected_components(graph) if len(group) > 1)


def oversized(max_lines: int = 500, max_function_lines: int = 80) -> list[str]:
    """Modules over ``max_lines`` and functions over ``max_function_lines``, as readable lines."""
    found = []
    for path in modules().values():
        source = path.read_text()
        if (n := len(source.splitlines())) > max_lines:
            found.append(f"{path.relative_to(REPO)}: {n} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno is not None:
                if (n := node.end_lineno - node.lineno + 1) > max_function_lines:
                    found.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name}: {n} lines")
    return found
