"""The ``judge`` metric: a judge model grades a prediction against the reference answers.

The default judge is a 135M model (SmolLM2-135M-Instruct): it often ignores the requested format,
so :func:`parse_verdict` is lenient on purpose ("Score: 7", "7/10", "7", "yes", "correct"). A reply
that holds no verdict, or a judge call that fails, is the example's error (:class:`MetricFailed`),
never a zero: a zero would say the candidate was wrong when only the judge failed. A spent budget
(:class:`BudgetExhausted`, :class:`Halted`) is not a failure and goes through unchanged.
"""

import re
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from agentopt.agents.errors import ConfigError, LLMError
from agentopt.optimizer.tasks.metrics import MetricFailed, Score

if TYPE_CHECKING:
    from agentopt.agents.llm import LLMClient
    from agentopt.optimizer.tasks.base import Example

DEFAULT_RUBRIC = "Is the candidate answer correct? It is correct when it means the same as a reference answer."
SYSTEM = "You are a strict grader. You compare a candidate answer with the reference answer and give a score."

_NUM = r"(-?\d+(?:\.\d+)?)(?!\w|\.\d)"
_OUT_OF = r"\s*(?:/|out\s+of)\s*(\d+)"
_SCORE = re.compile(rf"\b(?:score|rating|grade)\b(?:\s+(?:of|is))?[\s:=*]*{_NUM}(?:{_OUT_OF})?", re.I)
_FRACTION = re.compile(rf"(?<![\w.]){_NUM}{_OUT_OF}", re.I)
_LEADING = re.compile(rf"^[\s*#>`\"']*{_NUM}(?!\s*(?:[/+*×=^%]|out\s+of))", re.I)
_FIRST_WORD = re.compile(r"^[\s*#>`\"']*(yes|no|true|false)\b", re.I)
_WORD = re.compile(r"\b(not\s+correct|isn'?t\s+correct|incorrect|wrong|correct)\b", re.I)


def parse_verdict(reply: str, scale: int) -> float | None:
    """The first verdict in ``reply`` as a value in [0, 1], or ``None`` when it holds none.

    Tried in order: "Score: N" (or "Score: N/scale"), "N/scale" or "N out of scale", a reply that
    starts with a number, "yes"/"no"/"true"/"false" as the first word, then the first of "correct"
    (1), "incorrect", "not correct" or "wrong" (0). A number outside [0, scale], or a fraction over
    another denominator, is no verdict."""
    def value(number: str, over: str | None) -> float | None:
        n = float(number)
        if (over is not None and int(over) != scale) or not 0 <= n <= scale:
            return None
        return n / scale

    for pattern in (_SCORE, _FRACTION, _LEADING):
        for match in pattern.finditer(reply):
            found = value(match.group(1), match.group(2) if match.re.groups > 1 else None)
            if found is not None:
                return found
    if word := _FIRST_WORD.match(reply):
        return float(word.group(1).lower() in ("yes", "true"))
    if word := _WORD.search(reply):
        return float(word.group(1).lower() == "correct")
    return None


@dataclass(frozen=True)
class LLMJudge:
    """A judge model's score of a prediction, as "Score: N" out of ``scale``, normalised to [0, 1];
    the judge's reply is the feedback. ``bind`` gives it the judge role's client."""

    rubric: str = DEFAULT_RUBRIC
    scale: int = 10
    llm: "LLMClient | None" = field(default=None, compare=False, repr=False)
    name: str = field(default="judge", init=False)

    def __post_init__(self) -> None:
        if self.scale < 1:
            raise ConfigError(f"the judge's scale must be at least 1, not {self.scale}")

    def bind(self, llm: "LLMClient") -> "LLMJudge":
        return replace(self, llm=llm)

    def key(self, prediction: str) -> str:
        return prediction

    def messages(self, example: "Example", prediction: str) -> list[dict[str, str]]:
        targets = example.targets
        if len(targets) == 1:
            references = f"Reference answer: {targets[0]}"
        else:
            references = "Reference answers (any one is correct):\n" + "\n".join(f"- {t}" for t in targets)
        user = (f"{self.rubric}\n\nQuestion:\n{example.text}\n\n{references}\n\nCandidate answer: {prediction}\n\n"
                f'Reply with one line: "Score: N", where N is a whole number from 0 (wrong) to {self.scale} (correct).')
        return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]

    def __call__(self, example: "Example", prediction: str) -> Score:
        if self.llm is None:
            raise ConfigError("the judge metric needs a judge model (models.judge)")
        try:
            reply = self.llm.chat(self.messages(example, prediction)).text
        except LLMError as exc:
            raise MetricFailed(f"judge call failed: {' '.join(str(exc).split())}") from None
        verdict = parse_verdict(reply, self.scale)
        if verdict is None:
            raise MetricFailed(f"judge reply not understood: {' '.join(reply.split())[:80]!r}")
        return Score(verdict, reply.strip()[:200])
