"""Ray plumbing: joining or starting a cluster, and the one gate every worker shares.

The gate is an ordinary :class:`~agentopt.agents.models.gate.LocalGate` run as a threaded Ray actor, so
endpoint limits, budgets and endpoint health are kept in one place for the whole cluster. Workers
hold a :class:`RemoteGate`, which makes that actor look like a local gate to the LLM client.
"""

import logging
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar, cast

from agentopt.agents.models.budget import Price, RoleBudget, Spend
from agentopt.agents.runtime.errors import ConfigError
from agentopt.agents.models.gate import Endpoint, EndpointHealth, Health, Lease, LocalGate

if TYPE_CHECKING:
    from ray import ObjectRef
    from ray.actor import ActorHandle
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

GATE_THREADS = 512  # callers blocked waiting for an endpoint each hold one actor thread

_Actor = TypeVar("_Actor")
_Args = ParamSpec("_Args")
_Answer = TypeVar("_Answer")


def ensure_ray(address: str | None = None) -> None:
    """Join the cluster at ``address`` ("auto", "HOST:PORT", "ray://HOST:PORT") or at ``RAY_ADDRESS``;
    without either, start a local Ray sized to this machine; once per process, quiet on the terminal.

    Without an address Ray itself would join whatever cluster ``ray start`` last started on this
    machine (the address it leaves in /tmp/ray): another user's or another test's cluster, whose CPUs
    a local campaign must not take and whose shutdown it must not die with. "local" says so.
    """
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    address = address or os.environ.get("RAY_ADDRESS") or "local"
    kwargs: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.ERROR, "configure_logging": True}
    if address == "local":
        kwargs.update(include_dashboard=False, num_cpus=os.cpu_count() or 1, object_store_memory=256 * 1024**2)
    try:
        ray.init(address=address, **kwargs)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise ConfigError(f"cannot join the Ray cluster at {address}: {str(exc).splitlines()[0]}") from None


def remote_call(actor: "ActorHandle[_Actor]", method: Callable[Concatenate[_Actor, _Args], _Answer],
                *args: _Args.args, **kwargs: _Args.kwargs) -> "ObjectRef[_Answer]":
    """``actor.<method>.remote(*args, **kwargs)``, checked against the actor class's own method: Ray's
    stubs type a handle's methods only for classes written for Ray (``@ray.method``), and the gate is not."""
    call: Callable[_Args, ObjectRef[_Answer]] = getattr(actor, method.__name__).remote
    return call(*args, **kwargs)


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
        # Ray's stubs answer "ActorHandle or the class itself" (so that methods written for Ray type-check
        # on either); creating an actor always answers its handle.
        self.actor = cast("ActorHandle[LocalGate]", actor.remote(endpoints, health, affinity))

    def acquire(self, role: str, urls: Sequence[str], prompt_tokens: int, max_tokens: int, ttl_s: float,
                prefix: Sequence[int] = (), campaign: str | None = None) -> Lease:
        import ray

        return Lease(*ray.get(remote_call(self.actor, LocalGate.acquire, role, list(urls), prompt_tokens, max_tokens,
                                          ttl_s, tuple(prefix), campaign)))

    def release(self, role: str, lease_id: int, used: tuple[int, ...] | None, fault: str | None = None,
                campaign: str | None = None) -> int | None:
        """Fire and forget, except for a fault: the caller needs its answer to judge it later."""
        import ray

        ref = remote_call(self.actor, LocalGate.release, role, lease_id, used, fault, campaign)
        return None if fault is None else ray.get(ref)

    def halt(self, reason: str, detail: str) -> None:
        import ray

        ray.get(remote_call(self.actor, LocalGate.halt, reason, detail))

    def health(self) -> dict[str, EndpointHealth]:
        import ray

        return ray.get(remote_call(self.actor, LocalGate.health))

    def configure(self, role: str, budget: RoleBudget, price: Price, spent: Spend, campaign: str | None = None) -> None:
        import ray

        ray.get(remote_call(self.actor, LocalGate.configure, role, budget, price, spent, campaign))

    def set_deadline(self, deadline: float | None, campaign: str | None = None) -> None:
        import ray

        ray.get(remote_call(self.actor, LocalGate.set_deadline, deadline, campaign))

    def spent(self, role: str, campaign: str | None = None) -> Spend:
        import ray

        return ray.get(remote_call(self.actor, LocalGate.spent, role, campaign))

    def stopped(self, campaign: str | None = None) -> str | None:
        import ray

        return ray.get(remote_call(self.actor, LocalGate.stopped, campaign))

    def finish(self, campaign: str) -> None:
        import ray

        ray.get(remote_call(self.actor, LocalGate.finish, campaign))

    def close(self) -> None:
        import ray

        ray.kill(self.actor)


def _this_node() -> "NodeAffinitySchedulingStrategy":
    """Pin the gate to the driver's node: it dies with the driver, never with a worker node."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
