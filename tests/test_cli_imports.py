"""The CLI starts without the libraries only some commands use: a command that reads the archive or
prints help pays for SQLAlchemy and typer, not for the LLM client, langchain-core, Ray or the numerics.

The tests start ``agentopt`` in child processes and loop over it, so each of these libraries would cost
every such run its import time (openai and langchain-core alone over a second on a busy 2-core machine).
"""

import json
import subprocess
import sys
from pathlib import Path

from agentopt.archive.store import Archive

HEAVY = ("langchain_core", "networkx", "numpy", "openai", "optuna", "ray", "scipy")

CHILD = """
import json, sys

def heavy():
    return sorted(m for m in {heavy!r} if m in sys.modules)

import agentopt.optimizer.cli as cli

after_import = heavy()
sys.argv = ["agentopt", "archive", "campaigns", "--db", {url!r}, "--json"]
cli.main()
print(json.dumps({{"after_import": after_import, "after_campaigns": heavy()}}))
"""


def test_importing_the_cli_and_listing_campaigns_load_no_heavy_library(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    Archive(url, create=True)
    child = subprocess.run([sys.executable, "-c", CHILD.format(heavy=HEAVY, url=url)],
                           capture_output=True, text=True, timeout=120)
    assert child.returncode == 0, child.stderr
    *listing, last = child.stdout.splitlines()
    assert json.loads("\n".join(listing)) == []
    assert json.loads(last) == {"after_import": [], "after_campaigns": []}
