"""The CLI starts without the libraries only some commands use: a command that reads the archive or
prints help pays for SQLAlchemy and typer, not for the LLM client, langchain-core, Ray or the numerics.
The dashboard starts, and draws a candidate's page, without them too.

The tests start ``agentopt`` in child processes and loop over it, so each of these libraries would cost
every such run its import time (openai and langchain-core alone over a second on a busy 2-core machine).
"""

import json
import subprocess
import sys
from pathlib import Path

from agentopt.agents.prompt import PromptAgent
from agentopt.archive.store import Archive

HEAVY = ("langchain_core", "networkx", "numpy", "openai", "optuna", "ray", "scipy")
DRAWN = tuple(m for m in HEAVY if m != "networkx")
"""HEAVY but networkx, which the dashboard draws lineages with."""

CHILD = """
import json, sys

def heavy():
    return sorted(m for m in {heavy!r} if m in sys.modules)

import agentopt.optimizer.frontends.cli.main as cli

after_import = heavy()
sys.argv = ["agentopt", *{args!r}]
cli.main()
print(json.dumps({{"after_import": after_import, "after_command": heavy()}}))
"""

DASHBOARD = """
import json, sys

def heavy():
    return sorted(m for m in {heavy!r} if m in sys.modules)

from starlette.testclient import TestClient

from agentopt.archive.store import Archive
from agentopt.optimizer.frontends.dashboard.app import create_app

after_import = heavy()
client = TestClient(create_app(Archive({url!r}, create=False, read_only=True)), base_url="http://127.0.0.1")
page = client.get("/candidates/{candidate}")
print(json.dumps({{"status": page.status_code, "after_import": after_import, "after_page": heavy()}}))
"""


def _run(code: str) -> list[str]:
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert child.returncode == 0, child.stderr
    return child.stdout.splitlines()


def _lineage(tmp_path: Path) -> tuple[str, int]:
    """An archive holding a seed prompt agent and its child; the child's id."""
    url = f"sqlite:///{tmp_path / 'a.db'}"
    archive = Archive(url, create=True)
    campaign = archive.create_campaign("c", "antonyms", "ape", {})
    seed, _ = archive.add_candidate(campaign, PromptAgent(instruction="Give the antonym."), "seed")
    child, _ = archive.add_candidate(campaign, PromptAgent(instruction="Give the opposite word."), "ape", [seed])
    archive.engine.dispose()
    return url, child


def test_importing_the_cli_and_listing_campaigns_load_no_heavy_library(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    Archive(url, create=True)
    *listing, last = _run(CHILD.format(heavy=HEAVY, args=["archive", "campaigns", "--db", url, "--json"]))
    assert json.loads("\n".join(listing)) == []
    assert json.loads(last) == {"after_import": [], "after_command": []}


def test_a_lineage_of_prompt_agents_loads_networkx_alone(tmp_path: Path) -> None:
    """Labelling a stored prompt agent reads its kind, which no longer brings the LLM client along."""
    url, child = _lineage(tmp_path)
    *dot, last = _run(CHILD.format(heavy=HEAVY, args=["archive", "lineage", str(child), "--db", url]))
    assert "Give the opposite word." in "\n".join(dot)
    assert json.loads(last) == {"after_import": [], "after_command": ["networkx"]}


def test_the_dashboard_starts_and_draws_a_candidate_without_the_llm_stack(tmp_path: Path) -> None:
    url, child = _lineage(tmp_path)
    [last] = _run(DASHBOARD.format(heavy=DRAWN, url=url, candidate=child))
    assert json.loads(last) == {"status": 200, "after_import": [], "after_page": []}
