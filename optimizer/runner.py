"""From a validated config to finished campaigns: start what is needed, run, always clean up."""

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from agentopt.agents.llm import Endpoint, LLMClient
from agentopt.agents.local_model import LocalModelServers
from agentopt.archive.cache import SqlCallCache
from agentopt.archive.store import Archive
from agentopt.optimizer.campaign import CampaignReport, CampaignRun
from agentopt.optimizer.config import CampaignConfig, RoleConfig
from agentopt.optimizer.evaluation import Evaluator, LLMSpec, RayEvaluator, ThreadEvaluator
from agentopt.optimizer.tasks import load_task
from agentopt.optimizer.ui import Reporter


def _client(role: RoleConfig, local: list[Endpoint], archive: Archive) -> LLMClient:
    return LLMClient(role.endpoints(local), SqlCallCache(archive), role.sampling, role.timeout_s, role.max_attempts)


@contextmanager
def _evaluator(config: CampaignConfig, task_llm: LLMClient, archive: Archive) -> Iterator[Evaluator]:
    ev = config.evaluation
    if ev.backend == "threads":
        evaluator: Evaluator = ThreadEvaluator(task_llm, (ev.workers or 1) * ev.concurrency)
    else:
        role = config.models.task
        spec = LLMSpec(task_llm.endpoints, role.sampling, role.timeout_s, role.max_attempts)
        evaluator = RayEvaluator(spec, archive.url, ev.workers, ev.concurrency)
    try:
        yield evaluator
    finally:
        evaluator.close()


def run_campaigns(config: CampaignConfig, archive: Archive, reporter: Reporter) -> list[CampaignReport]:
    """Run one campaign per task in the config, sharing model servers, workers and the cache."""
    with ExitStack() as stack:
        local: list[Endpoint] = []
        if config.models.uses_local:
            lm = config.local_model
            reporter.phase("starting the bundled local model", 0)
            local = stack.enter_context(LocalModelServers(lm.servers, lm.threads, lm.ctx_size)).endpoints
        task_llm = _client(config.models.task, local, archive)
        proposer = _client(config.models.proposer, local, archive)
        for client in (task_llm, proposer):
            client.check_reachable()
        reporter.phase("starting evaluation workers", 0)
        evaluator = stack.enter_context(_evaluator(config, task_llm, archive))
        policy = config.dedup.functional
        if policy != "off" and config.models.task.temperature > 0:
            reporter.phase("functional dedup is off: the task model samples at temperature > 0", 0)
            policy = "off"
        reports = []
        for ref in config.tasks:
            run = CampaignRun(
                archive=archive, task=load_task(ref, seed=config.task_seed), strategy_name=config.strategy.name,
                strategy_params=config.strategy.params, seed_agent=config.seed_agent.agent(), proposer=proposer,
                evaluator=evaluator, reporter=reporter, config=config.model_dump(mode="json"),
                name=config.name, seed=config.seed, val_size=config.evaluation.val_size,
                test_size=config.evaluation.test_size, dedup_policy=policy, probe_size=config.dedup.probe_size,
            )
            reports.append(run.run())
        return reports
