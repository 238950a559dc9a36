"""The layout's rules, checked on the source: no import cycle between modules, no module over 500
lines, no function over 80, and no experiment reading the archive's ORM models (the layer contracts
are import-linter's, in pyproject.toml, run by `make typecheck`)."""

import ast

import pytest

from architecture import REPO, cycles, import_graph, oversized


def test_no_module_imports_itself_through_others() -> None:
    assert cycles(import_graph()) == []


def test_modules_and_functions_stay_short() -> None:
    assert oversized() == []


def test_experiments_read_the_archive_through_its_queries_not_its_orm_models() -> None:
    readers = []
    for script in sorted((REPO / "experiments").glob("*.py")):
        for node in ast.walk(ast.parse(script.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("agentopt.archive.models"):
                readers.append(script.name)
    assert readers == []


def test_every_public_name_resolves() -> None:
    import agentopt

    assert len(agentopt.__all__) > 50
    assert all(getattr(agentopt, name) is not None for name in agentopt.__all__)


def test_the_sandbox_s_old_documented_path_still_answers_with_a_warning() -> None:
    from agentopt.agents import sandbox
    from agentopt.agents.runtime.sandbox import register_secret

    with pytest.warns(DeprecationWarning, match="agentopt.agents.runtime.sandbox"):
        assert sandbox.register_secret is register_secret
