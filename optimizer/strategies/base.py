"""The Strategy protocol (ask / tell, as in Optuna) and what flows through it.

A strategy never evaluates anything itself: it asks the campaign for trials (a candidate on some
train or val examples), and the campaign dedups, caches, budgets and parallelises them the same way
for every strategy. Strategies never see the test split.
"""

from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Protocol, TypeVar, cast

from pydantic import BaseModel, ConfigDict

from agentopt.agents.base import Agent, Tunable
from agentopt.agents.models.llm import LLMClient
from agentopt.archive.store import EvalSummary
from agentopt.optimizer.strategies.counters import Counters
from agentopt.optimizer.tasks import Example


class TunableAgent(Agent, Tunable, Protocol):
    """A candidate whose texts a strategy rewrites: the instruction-writing strategies search over
    these, and every agent they make from one (``with_text``, ``with_demos``) is one again."""


@dataclass(frozen=True)
class Trial:
    """Evaluate ``agent`` on ``example_ids`` of ``split`` (train or val)."""

    agent: Agent
    split: str
    example_ids: tuple[str, ...]
    parents: tuple[int, ...] = ()
    rationale: str = ""
    strategy: str = ""  # the portfolio member that asked, stored as the candidate's strategy
    notes: Mapping[str, Any] = field(default_factory=dict)  # note kind -> JSON data, stored with the candidate


@dataclass(frozen=True)
class TrialResult:
    trial: Trial
    candidate_id: int
    summary: EvalSummary
    duplicate: bool
    twin: int | None = None  # the earlier candidate this one behaves exactly like; its results were used


@dataclass(frozen=True)
class Answer:
    """What a candidate answered on one example, as stored in the archive."""

    output: str | None
    score: float | None
    error: str | None = None
    trace: list[dict[str, Any]] | None = None  # what each step did, for agents that keep a trace
    feedback: str | None = None  # the metric's explanation of the score, when it gives one


@dataclass(frozen=True)
class StrategyContext:
    """All a strategy may use: train and val (never test), the seed agent and the proposer. The seed
    is of any kind the strategy :meth:`~GeneratorStrategy.accepts`."""

    train: tuple[Example, ...]
    val: tuple[Example, ...]
    seed_agent: Any
    proposer: LLMClient
    task_description: str = ""
    seed: int = 0
    stats: Counters = field(default_factory=Counters)
    probe_ids: tuple[str, ...] = ()  # train inputs every new candidate answers first (functional dedup)
    campaign_id: str = ""
    embedder: LLMClient | None = None  # representations of candidates (INSTINCT); None when not configured
    study_storage: str | None = None  # database URL for Optuna studies: the archive's own
    outputs: Callable[[int, str], Mapping[str, Answer]] = lambda candidate_id, split: {}
    # Store a note that belongs to no candidate (an edit rejected or rolled back): record(kind, data).
    record: Callable[[str, dict[str, Any]], None] = lambda kind, data: None


@dataclass(frozen=True)
class Plan:
    """Upper bounds a strategy can promise before it runs (for ``agentopt run --dry-run``)."""

    proposer_calls: int
    proposer_prompt_tokens: int  # per call
    task_examples: int  # example evaluations on train and val
    candidate_demos: int = 0  # demonstrations a candidate may carry (longer task prompts)
    calls_per_example: int = 1  # task-model calls one example may take (code agents make several)


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Strategy(Protocol):
    name: ClassVar[str]

    def ask(self) -> list[Trial]:
        """Trials to run next; an empty list means the strategy is done."""
        ...

    def tell(self, results: list[TrialResult]) -> None: ...

    def baseline(self) -> Agent:
        """What the winner is compared with on the test split: the agent the search starts from."""
        ...


class StrategyClass(Protocol):
    """What the registry holds and its callers use: a strategy's constructor plus what is known before
    it runs, each given the config's ``params`` as written (a dict). :class:`StrategyBase` is one that
    validates the dict and hands its strategy the typed ``Params``."""

    # Read-only attributes of the class object (a ClassVar member is one no class object can have).
    @property
    def name(self) -> str: ...

    @property
    def Params(self) -> type[Params]: ...

    def __call__(self, params: dict[str, Any], ctx: StrategyContext) -> Strategy: ...

    def plan(self, params: dict[str, Any], train: Sequence[Example], n_val: int, probe_size: int) -> Plan | None: ...

    def uses_embeddings(self, params: dict[str, Any]) -> bool: ...

    def accepts(self, params: dict[str, Any], seed: Agent) -> str | None: ...


_Value = TypeVar("_Value")
Subsearch = Generator[list[Trial], list[TrialResult], _Value]
"""Part of a search that also works something out: ``value = yield from part()``."""
Search = Subsearch[None]


ParamsT = TypeVar("ParamsT", bound=Params)


class StrategyBase(Generic[ParamsT]):
    """A :class:`StrategyClass` whose strategy sees only its validated ``Params``.

    The registry's callers pass the config's ``params`` dict; each entry point here validates it
    against ``Params`` (so a bad dict fails the same way wherever it is first used) and hands the
    typed model to the hook a strategy writes: ``__init__`` sets ``self.params``, :meth:`plan`
    asks :meth:`bounds`, :meth:`uses_embeddings` asks :meth:`needs_embedder` and :meth:`accepts`
    asks :meth:`refuses`. A strategy that overrides an entry point itself still gets the dict.
    """

    name: ClassVar[str] = ""
    # Every strategy with parameters sets its own; this default is for one with none (``ParamsT`` is
    # ``Params`` itself), where the cast is exact.
    Params: type[ParamsT] = cast("type[ParamsT]", Params)

    def __init__(self, params: dict[str, Any], ctx: StrategyContext) -> None:
        self.params: ParamsT = self.Params.model_validate(params)
        self.ctx = ctx

    @classmethod
    def plan(cls, params: dict[str, Any], train: Sequence[Example], n_val: int, probe_size: int) -> Plan | None:
        return cls.bounds(cls.Params.model_validate(params), train, n_val, probe_size)

    @classmethod
    def uses_embeddings(cls, params: dict[str, Any]) -> bool:
        return cls.needs_embedder(cls.Params.model_validate(params))

    @classmethod
    def accepts(cls, params: dict[str, Any], seed: Agent) -> str | None:
        return cls.refuses(cls.Params.model_validate(params), seed)

    @classmethod
    def bounds(cls, p: ParamsT, train: Sequence[Example], n_val: int, probe_size: int) -> Plan | None:
        """How much work the search can take at most; ``None`` when it cannot say in advance."""
        return None

    @classmethod
    def needs_embedder(cls, p: ParamsT) -> bool:
        """Whether the campaign must provide an embeddings client (``StrategyContext.embedder``)."""
        return False

    @classmethod
    def refuses(cls, p: ParamsT, seed: Agent) -> str | None:
        """Why the search cannot start from ``seed``, or ``None`` when it can. Searches that rewrite
        texts need a :class:`~agentopt.agents.base.Tunable` seed (prompt, program or graph agent)."""
        if isinstance(seed, Tunable):
            return None
        return (f"strategy {cls.name} rewrites its seed's texts, and a {seed.kind} agent has none; start it from a "
                "prompt, program or graph agent")


class GeneratorStrategy(StrategyBase[ParamsT]):
    """Write a strategy as one generator: ``results = yield trials``.

    The search reads top to bottom like the paper's algorithm, while the campaign still drives it
    through ask / tell and can stop it at any yield (budget spent, Ctrl-C).
    """

    def __init__(self, params: dict[str, Any], ctx: StrategyContext) -> None:
        super().__init__(params, ctx)
        self._search = self.search()
        self._pending: list[TrialResult] | None = None
        self._done = False

    def search(self) -> Search:
        raise NotImplementedError

    def baseline(self) -> Agent:
        seed: Agent = self.ctx.seed_agent  # of a kind this strategy accepts (checked before it started)
        return seed

    def ask(self) -> list[Trial]:
        if self._done:
            return []
        try:
            trials = next(self._search) if self._pending is None else self._search.send(self._pending)
        except StopIteration:
            self._done = True
            return []
        self._pending = None
        return trials

    def tell(self, results: list[TrialResult]) -> None:
        self._pending = results
