"""Deprecated import path: the sandbox is ``agentopt.agents.runtime.sandbox`` (the runtime an exported
package carries). Names are still found here, with a DeprecationWarning, for code written against
the path the README once gave (``agentopt.agents.sandbox.register_secret``)."""

import warnings
from typing import Any

from agentopt.agents.runtime import sandbox as _sandbox


def __getattr__(name: str) -> Any:
    warnings.warn("agentopt.agents.sandbox moved to agentopt.agents.runtime.sandbox", DeprecationWarning, stacklevel=2)
    return getattr(_sandbox, name)
