"""The ``agentopt`` console script.

The CLI imports SQLAlchemy, Alembic, typer and rich for over half a second (the LLM client, langchain-core,
Ray and numpy only when a command uses them); this module imports it lazily, so a Ctrl-C during start-up
exits quietly instead of printing a traceback.
"""

import sys


def main() -> None:
    try:
        from agentopt.optimizer.frontends.cli.main import main as cli_main
    except KeyboardInterrupt:
        sys.exit(130)
    cli_main()
