"""Replay the examples recorded when this agent was scored, and compare the answers.

``regression.json`` holds each example's input, its target and the answer the agent gave in the
campaign. Requests are rebuilt exactly as the campaign sent them (prompt, sampling, seed), so on the
same model a deterministic server gives the same answers; a lower agreement means the endpoint, the
model or its quantisation changed what the agent does. ``AGENTOPT_REGRESSION_MIN_AGREEMENT``
(default 0.8) is the share of answers that must reproduce: exact equality of floating-point CPU
kernels across thread counts is not guaranteed, so one changed token should not fail a deployment.
"""

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from importlib.resources import files
from typing import Any


@dataclass(frozen=True)
class Replay:
    example_id: str
    recorded: str
    replayed: str | None
    error: str | None

    @property
    def agrees(self) -> bool:
        return self.error is None and self.replayed is not None and self.replayed.strip() == self.recorded.strip()


def recorded() -> list[dict[str, Any]]:
    examples: list[dict[str, Any]] = json.loads(  # as export wrote them: example_id, input, target, output, score
        files(__package__).joinpath("regression.json").read_text(encoding="utf-8"))
    return examples


def replay(run: Callable[[str], str] | None = None) -> list[Replay]:
    """Answer every recorded input again; an exception is recorded as a disagreement, not raised."""
    if run is None:
        from . import run as package_run  # type: ignore[attr-defined]  # the package's __init__: package_init.py
        run = package_run
    replays = []
    for example in recorded():
        try:
            replays.append(Replay(example["example_id"], example["output"], run(example["input"]), None))
        except Exception as exc:
            replays.append(Replay(example["example_id"], example["output"], None, f"{type(exc).__name__}: {exc}"))
    return replays


def check(run: Callable[[str], str] | None = None) -> tuple[bool, str]:
    """Whether enough answers reproduce, and a report naming every one that did not."""
    replays = replay(run)
    if not replays:
        return True, "no recorded examples to replay"
    minimum = float(os.environ.get("AGENTOPT_REGRESSION_MIN_AGREEMENT", "0.8"))
    agreed = sum(r.agrees for r in replays)
    lines = [f"{agreed}/{len(replays)} recorded answers reproduced (need {minimum:.0%})"]
    lines += [f"  {r.example_id}: recorded {r.recorded!r}, got {r.error or repr(r.replayed)}"
              for r in replays if not r.agrees]
    return agreed >= minimum * len(replays), "\n".join(lines)
