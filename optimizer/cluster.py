"""Ray plumbing: joining or starting a cluster, and the one gate every worker shares.

The gate is an ordinary :class:`~agentopt.agents.gate.LocalGate` run as a threaded Ray actor, so
endpoint limits, budgets and endpoint health are kept in one place for the whole cluster. Workers
hold a :class:`RemoteGate`, which makes that actor look like a local gate to the LLM client.
"""

import logging
import os
from collections.abc import Sequence
from typing import Any

from agentopt.agents.budget import Price, RoleBudget, Spend
from agentopt.agents.errors import ConfigError
from agentopt.agents.gate import Endpoint, EndpointHealth, Health, Lease, LocalGate

GATE_THREADS = 512  # callers blocked waiting for an endpoint each hold one actor thread


def ensure_ray(address: str | None = None) -> None:
    """Join the cluster at ``address`` ("auto", "HOST:PORT", "ray://HOST:PORT"), or start a local
    Ray sized to this machine; once per process, quiet on the terminal."""
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR,
                              "configure_logging": True}
    if address is None:
        kwargs.update(num_cpus=os.cpu_count() or 1, object_store_memory=256 * 1024**2)
    else:
        kwargs.pop("include_dashboard")
    try:
        ray.init(address=address, **kwargs)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise ConfigError(f"cannot join the Ray cluster at {address}: {str(exc).splitlines()[0]}") from None


def worker_name() -> str:
    """``node-id/pid`` of this process: which machine and which worker ran an example."""
    import ray

    node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else "local"
    return f"{node[:12]}/{os.getpid()}"


class RemoteGate:
    """The gate actor seen through the local gate's interface; picklable, so workers receive it."""

    def __init__(self, endpoints: Sequence[Endpoint], health: Health | None = None, affinity: bool = True) -> None:
        import ray

        actor = ray.remote(LocalGate).options(max_concurrency=GATE_THREADS, num_cpus=0, max_restarts=-1,
                                              scheduling_strategy=_this_node())
        self.actor = actor.remote(endpoints, health, affinity)

    def acquire(self, role: str, urls: Sequence[str], prompt_tokens: int, max_tokens: int, ttl_s: float,
                prefix: Sequence[int] = (), campaign: str | None = None) -> Lease:
        import ray

        return Lease(*ray.get(self.actor.acquire.remote(role, list(urls), prompt_tokens, max_tokens, ttl_s,
                                                        tuple(prefix), campaign)))

    def release(self, role: str, lease_id: int, used: tuple[int, ...] | None, fault: str | None = None,
                campaign: str | None = None) -> int | None:
        """Fire and forget, except for a fault: the caller needs its answer to judge it later."""
        import ray

        ref = self.actor.release.remote(role, lease_id, used, fault, campaign)
        return None if fault is None else ray.get(ref)  # type: ignore[no-any-return]

    def halt(self, reason: str, detail: str) -> None:
        import ray

        ray.get(self.actor.halt.remote(reason, detail))

    def health(self) -> dict[str, EndpointHealth]:
        import ray

        return ray.get(self.actor.health.remote())  # type: ignore[no-any-return]

    def configure(self, role: str, budget: RoleBudget, price: Price, spent: Spend, campaign: str | None = None) -> None:
        import ray

        ray.get(self.actor.configure.remote(role, budget, price, spent, campaign))

    def set_deadline(self, deadline: float | None, campaign: str | None = None) -> None:
        import ray

        ray.get(self.actor.set_deadline.remote(deadline, campaign))

    def spent(self, role: str, campaign: str | None = None) -> Spend:
        import ray

        return ray.get(self.actor.spent.remote(role, campaign))  # type: ignore[no-any-return]

    def stopped(self, campaign: str | None = None) -> str | None:
        import ray

        return ray.get(self.actor.stopped.remote(campaign))  # type: ignore[no-any-return]

    def finish(self, campaign: str) -> None:
        import ray

        ray.get(self.actor.finish.remote(campaign))

    def close(self) -> None:
        import ray

        ray.kill(self.actor)


def _this_node() -> Any:
    """Pin the gate to the driver's node: it dies with the driver, never with a worker node."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
