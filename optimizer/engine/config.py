"""Campaign configuration: a YAML file validated by pydantic into frozen models.

Every mistake in a config (a typo'd key, a bad value, an unknown task or strategy) is reported as
one line naming the field, before a database is opened or a model started.
"""

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from agentopt.agents.models.budget import Price, RoleBudget
from agentopt.agents.base import Agent
from agentopt.agents.runtime.errors import AgentoptError, ConfigError
from agentopt.optimizer.tasks.errors import TaskError
from agentopt.agents.models.gate import Endpoint, Health
from agentopt.agents.kinds import agent_from_payload
from agentopt.optimizer.tasks import Name, TaskFile
from agentopt.optimizer.tasks.files import read_utf8

if TYPE_CHECKING:
    from agentopt.agents.models.llm import Sampling
    from agentopt.archive.store import Archive

LOCAL = "local"
MAX_CONFIG_BYTES = 1 << 20
"""A campaign config is settings and a few demonstrations; parsing YAML builds Python objects at a few
MB per second at best, so a bigger file is refused at once rather than parsed for a minute."""
YamlParser = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's scanner when PyYAML was built with it
MERGE_TAG = "tag:yaml.org,2002:merge"


class DuplicateKey(yaml.constructor.ConstructorError):
    """A key given twice in one mapping. YAML keeps the last one, so a second ``budget:`` would
    silently drop every limit of the first."""


class YamlLoader(YamlParser):  # type: ignore[misc,valid-type]  # a base picked at import: libyaml's if built with it
    """The safe loader, refusing a key repeated in one mapping (keys a ``<<`` merge brings in may
    still be overridden: that is what a merge is for)."""

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value if isinstance(node, yaml.MappingNode) else ():
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == MERGE_TAG:
                continue  # a complex key: the base class refuses it; a merge: its keys may be overridden
            key = self.construct_object(key_node)
            if key in seen:
                raise DuplicateKey(None, None, f"key {key!r} is given twice in one mapping (first on line "
                                               f"{seen[key]}); YAML would keep only the last, so give it once",
                                   key_node.start_mark)
            seen[key] = key_node.start_mark.line + 1
        mapping: dict[Any, Any] = super().construct_mapping(node, deep)
        return mapping


def _http_url(value: str) -> str:
    """Refuse a base_url that cannot be an endpoint now, not as 'cannot reach' at the first LLM call."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"must be an http(s) URL with a host, such as http://127.0.0.1:8080/v1; got {value!r}")
    return value


HttpUrl = Annotated[str, AfterValidator(_http_url)]
TaskEntry = Annotated[Annotated[str, Tag("name")] | Annotated[TaskFile, Tag("file")],
                      Discriminator(lambda value: "file" if isinstance(value, Mapping | TaskFile) else "name")]
"""A task by name or path, or a task file entry: a mapping's mistake is reported against the entry's
fields, not as "should be a valid string" from the other side of the union."""


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class EndpointConfig(Frozen):
    """One replica serving a role's model, with limits that hold across every Ray worker."""

    base_url: HttpUrl
    api_key_env: str | None = Field(None, description="name of the environment variable holding the API key")
    max_concurrency: int | None = Field(None, ge=1, description="requests in flight at once")
    requests_per_s: float | None = Field(None, gt=0)
    tokens_per_min: float | None = Field(None, gt=0)


class RoleConfig(Frozen):
    """One model role. ``model: local`` means the bundled SmolLM2 servers started by the campaign;
    any other model needs ``base_url`` (one endpoint) or ``endpoints`` (a pool of replicas).
    Under :class:`Models` a bare string is the model (``task: local``)."""

    model: str = LOCAL
    base_url: HttpUrl | None = None
    api_key_env: str | None = Field(None, description="name of the environment variable holding the API key")
    endpoints: tuple[EndpointConfig, ...] = ()
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    max_tokens: int = Field(32, ge=1)
    timeout_s: float = Field(60.0, gt=0)
    max_attempts: int = Field(4, ge=1, le=10)

    @model_validator(mode="after")
    def _remote_needs_url(self) -> "RoleConfig":
        if self.base_url and self.endpoints:
            raise ValueError("give either base_url or endpoints, not both")
        if self.model != LOCAL and not (self.base_url or self.endpoints):
            raise ValueError(f"model {self.model!r} is not 'local', so base_url or endpoints is required")
        if self.model == LOCAL and (self.base_url or self.endpoints):
            raise ValueError("model 'local' is served by agentopt itself; name the model to use base_url/endpoints")
        return self

    @property
    def sampling(self) -> "Sampling":
        from agentopt.agents.models.llm import Sampling  # with the LLM client (openai), which reading a config never needs

        return Sampling(temperature=self.temperature, max_tokens=self.max_tokens)

    def pool(self, local: list[Endpoint]) -> list[Endpoint]:
        if self.model == LOCAL:
            return local
        pool = self.endpoints or (EndpointConfig(base_url=self.base_url or "", api_key_env=self.api_key_env),)
        return [Endpoint(model=self.model, **e.model_dump()) for e in pool]


ROLES = ("task", "proposer", "judge")
"""The roles whose calls are budgeted (the embedder's calls are few and unpriced)."""


class Models(Frozen):
    """The model of each role; ``Models(task="local", proposer="local")`` names models and keeps
    each role's other defaults (the proposer samples hotter and longer than the task model). A
    remote model also needs its endpoint: ``Role(model="gpt-4o-mini", base_url=...)``."""

    task: RoleConfig = RoleConfig()
    proposer: RoleConfig = RoleConfig(temperature=0.9, max_tokens=48)
    embedder: RoleConfig = Field(RoleConfig(), description="embeddings for strategies that need them (instinct) "
                                 "and for agents retrieving demonstrations by them; "
                                 "'local' starts one llama.cpp server in embedding mode")
    judge: RoleConfig = Field(RoleConfig(max_tokens=16), description="grades answers for the judge metric")

    @model_validator(mode="before")
    @classmethod
    def _model_names(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        return {role: (cls.model_fields[role].default.model_dump(exclude_defaults=True) | {"model": value}
                       if isinstance(value, str) and role in cls.model_fields else value)
                for role, value in data.items()}

    def uses_local(self, judge: bool = False) -> bool:
        """Whether the bundled chat servers are needed (the judge counts only when a metric uses it)."""
        return LOCAL in (self.task.model, self.proposer.model, *((self.judge.model,) if judge else ()))


class LocalModelConfig(Frozen):
    servers: int | None = Field(None, ge=1, description="llama.cpp server processes (default: one per core)")
    threads: int | None = Field(None, ge=1, description="threads per server (default: cores / servers)")
    ctx_size: int = Field(2048, ge=256)
    max_concurrency: int = Field(2, ge=1, description="requests in flight per server (llama.cpp runs one at a "
                                                      "time; a second keeps it busy between requests)")


class EvaluationConfig(Frozen):
    backend: Literal["ray", "threads"] = "ray"
    workers: int | None = Field(None, ge=1, description="Ray evaluation actors (default: one per core)")
    concurrency: int = Field(2, ge=1, description="examples in flight per worker")
    prefix_affinity: bool = Field(True, description="start a candidate's examples as one run per task endpoint and "
                                                    "send each call where its prompt prefix was last served, so "
                                                    "endpoints re-use their prompt cache (false: jobs in the order "
                                                    "given, each call to the least loaded endpoint)")
    val_size: int | None = Field(None, ge=1, description="use at most this many validation examples")
    test_size: int | None = Field(None, ge=1, description="use at most this many test examples")
    test_top: int = Field(1, ge=1, description="best validation candidates re-scored on the sealed test split "
                                               "(the winner is the first; the rest are for comparison)")


class DedupConfig(Frozen):
    """Functional deduplication (see agentopt.optimizer.engine.dedup): merge candidates that answer a probe
    set identically, so paraphrases that behave the same are evaluated once."""

    functional: Literal["verify", "trust", "off"] = Field(
        "verify", description="verify: a match must also agree on a second probe set; trust: the first is "
                              "enough; off: content hashing only")
    probe_size: int = Field(5, ge=1, description="train inputs in each probe set")


class BudgetConfig(Frozen):
    """Hard limits for each campaign (one per task); once one is reached no new LLM call starts,
    the search stops and the campaign reports which limit stopped it. Flat names are accepted too:
    ``Budget(task_calls=2000, proposer_usd=1.5)`` is ``task: {calls: 2000}, proposer: {usd: 1.5}``."""

    wall_time_s: float | None = Field(None, gt=0, description="seconds from the campaign's start")
    task: RoleBudget = RoleBudget()
    proposer: RoleBudget = RoleBudget()
    judge: RoleBudget = RoleBudget()
    reserve_test: bool = Field(True, description="keep the estimated cost of the final test scoring out of the "
                                                 "search's share of the task budget")

    def limits(self) -> dict[str, dict[str, float | None]]:
        """Each role's limits (calls, tokens, usd; None where unset), as status and the dashboard show them."""
        return {role: getattr(self, role).model_dump() for role in ROLES}

    @model_validator(mode="before")
    @classmethod
    def _flat_names(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        nested: dict[str, Any] = {}
        for key, value in data.items():
            role, _, limit = key.partition("_")
            if role in ROLES and limit in RoleBudget.model_fields:
                if role in data:
                    raise ValueError(f"give the {role} budget either as {role}=... or as {role}_* names, not both")
                nested.setdefault(role, {})[limit] = value
            else:
                nested[key] = value
        return nested


class StrategyConfig(Frozen):
    """A strategy by registered name with its parameters, validated against the strategy's own
    ``Params`` model when it is made (``agentopt.strategies.APE(racing_budget=240)`` builds one)."""

    name: str = "ape"
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known(self) -> "StrategyConfig":
        from agentopt.optimizer.strategies import STRATEGIES

        strategy = STRATEGIES.get(self.name)
        if strategy is None:
            raise PydanticCustomError("unknown_strategy", "unknown strategy '{name}'; known: {known}",
                                      {"name": self.name, "known": ", ".join(sorted(STRATEGIES))})
        try:
            strategy.Params.model_validate(self.params)
        except ValidationError as exc:
            raise PydanticCustomError("strategy_params", "params.{error}", {"error": first_error(exc)}) from None
        return self


class SeedAgentConfig(Frozen):
    """The agent a search starts from, of any registered kind: its payload, ``kind`` first (default
    ``prompt``: instruction, demos, postprocess, template). A program is ``kind: program`` with
    ``entry: module:function`` and its ``params``."""

    model_config = ConfigDict(frozen=True, extra="allow")

    kind: str = "prompt"

    @model_validator(mode="before")
    @classmethod
    def _complete(cls, data: Any) -> Any:
        """Stored as the agent's whole payload, defaults filled in, so the archive shows what ran."""
        if not isinstance(data, dict):
            return data
        try:
            return agent_from_payload({"kind": "prompt", **data}).payload()
        except ValidationError as exc:
            raise ValueError(first_error(exc)) from None
        except AgentoptError as exc:
            raise ValueError(str(exc)) from None

    def payload(self) -> dict[str, Any]:
        return {"kind": self.kind, **(self.model_extra or {})}

    def agent(self) -> Agent:
        return agent_from_payload(self.payload())


class CampaignConfig(Frozen):
    name: Name = "campaign"
    tasks: tuple[TaskEntry, ...] = Field(min_length=1, description="built-in names, .jsonl/.csv paths, or "
                                                                       "task file entries (path, inputs, target, metric)")
    task_seed: int = 0
    seed: int = 0
    db: str | None = None
    models: Models = Models()
    local_model: LocalModelConfig = LocalModelConfig()
    # made when a config leaves the strategy out, not when this module is imported: checking one imports every
    # strategy, and with them the LLM client, optuna and numpy
    strategy: StrategyConfig = Field(default_factory=StrategyConfig)
    seed_agent: SeedAgentConfig = SeedAgentConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    dedup: DedupConfig = DedupConfig()
    budget: BudgetConfig = BudgetConfig()
    health: Health = Health()
    prices: dict[str, Price] = Field(default_factory=dict, description="model name -> USD per million tokens")

    @model_validator(mode="after")
    def _strategy_takes_the_seed(self) -> "CampaignConfig":
        from agentopt.optimizer.strategies import STRATEGIES

        accepts = getattr(STRATEGIES[self.strategy.name], "accepts", None)  # optional for a registered strategy
        problem = accepts(self.strategy.params, self.seed_agent.agent()) if accepts else None
        if problem:
            raise ValueError(f"seed_agent: {problem}")
        return self

    @model_validator(mode="after")
    def _priced_money_budgets(self) -> "CampaignConfig":
        for role in ROLES:
            model = getattr(self.models, role).model
            if getattr(self.budget, role).usd is not None and model != LOCAL and model not in self.prices:
                raise ValueError(f"budget.{role}.usd needs a price for model {model!r} under prices")
        return self

    def price(self, role: str) -> Price:
        """The role's model price; the bundled local model costs nothing."""
        return self.prices.get(getattr(self.models, role).model, Price())


def first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    message = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "strategy_params":  # already a path below the strategy: strategy.params.x
        return f"{where}.{message}"
    return f"{where}: {message}" if where else message


def parse_config(data: object, source: str = "config") -> CampaignConfig:
    from agentopt.optimizer.tasks import load_task

    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of settings at the top level")
    try:
        config = CampaignConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {first_error(exc)}") from None
    for ref in config.tasks:
        try:
            load_task(task_ref(ref), seed=config.task_seed)
        except TaskError as exc:
            raise ConfigError(f"{source}: {exc}") from None
    return config


def task_ref(entry: "str | TaskFile") -> "str | dict[str, Any]":
    """A config's task entry as :func:`~agentopt.optimizer.tasks.load_task` takes it."""
    return entry if isinstance(entry, str) else entry.model_dump(exclude_defaults=True)


def load_config(path: str | Path) -> CampaignConfig:
    return parse_config(load_yaml(Path(path)), str(path))


def stored_config(archive: "Archive", campaign_id: str) -> CampaignConfig:
    """The settings a stored campaign ran with (its models, prices, limits); the task is not loaded."""
    campaign = archive.campaign(campaign_id)
    stored = {k: v for k, v in campaign.config.items() if k != "task"}
    ref = campaign.config.get("task", {}).get("ref", campaign.task)
    try:
        return CampaignConfig.model_validate({**stored, "tasks": [ref or campaign.task]})
    except ValidationError as exc:
        raise ConfigError(f"campaign {campaign_id}: its stored config is not valid here ({first_error(exc)})") from None


def load_yaml(path: Path) -> object:
    """A config file's contents; a missing, huge or malformed file is one line naming it."""
    if path.is_dir():
        raise ConfigError(f"{path} is a directory, not a config file")
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    size = path.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: {size / 2**20:.1f} MiB is more than a config may be "
                          f"({MAX_CONFIG_BYTES // 2**20} MiB); put examples in a .jsonl or .csv task file")
    try:
        data = yaml.load(read_utf8(path, ConfigError), Loader=YamlLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or exc
        what = problem if isinstance(exc, DuplicateKey) else f"malformed YAML ({problem})"
        raise ConfigError(f"{path}{where}: {what}") from None
    return data


__all__ = ["CampaignConfig", "RoleConfig", "load_config", "parse_config"]
