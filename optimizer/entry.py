"""The ``agentopt`` console script.

The CLI imports heavy libraries (openai, SQLAlchemy, Ray's helpers) for well over a second; this
module imports it lazily, so a Ctrl-C during start-up exits quietly instead of printing a traceback.
"""

import sys


def main() -> None:
    try:
        from agentopt.optimizer.cli import main as cli_main
    except KeyboardInterrupt:
        sys.exit(130)
    cli_main()
