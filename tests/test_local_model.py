"""The bundled model's servers: they start, answer, and never outlive their owner."""

import os
import signal
import subprocess
import urllib.request

import pytest
from processes import AGENTOPT, pids_running, wait_until

from agentopt.agents.local_model import LocalModelServers, free_port

pytestmark = pytest.mark.local_model


def server_pids(port: int) -> set[int]:
    return pids_running("llama_cpp.server", str(port))


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2) as reply:
            return reply.status == 200
    except OSError:
        return False


def test_context_manager_stops_servers_on_error() -> None:
    with pytest.raises(RuntimeError), LocalModelServers(n_servers=2, threads=1) as servers:
        ports = list(servers.ports)
        assert all(ready(p) for p in ports)
        raise RuntimeError("campaign failed")
    assert all(not server_pids(p) for p in ports)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_model_serve_leaves_no_orphan(sig: signal.Signals) -> None:
    port = free_port()
    proc = subprocess.Popen([AGENTOPT, "model", "serve", "--port", str(port)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert wait_until(lambda: ready(port)), "server did not come up"
        assert server_pids(port)
        os.kill(proc.pid, sig)
        proc.wait(timeout=30)
        assert wait_until(lambda: not server_pids(port), timeout=30), f"orphan llama.cpp server after {sig.name}"
        if sig == signal.SIGINT:
            assert "Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
