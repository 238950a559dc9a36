"""A scripted OpenAI-compatible endpoint on loopback, for control-flow tests.

It speaks real HTTP, so the tests exercise the real openai client, retries and caching; only the
model is fake. ``responder(body) -> (status, reply)`` decides each answer: a string reply becomes a
chat completion, a dict is sent as the raw JSON body, bytes are sent as they are (a malformed body);
``(status, reply, headers)`` adds response headers (a 429's ``Retry-After``).
It records every request, how many were in flight at most, and when each arrived. ``close()``
takes it off the network (connections are refused) and ``reopen()`` brings it back on the same
port, as a crashed server restarted by a supervisor would be.
"""

import hashlib
import json
import random
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Reply = str | bytes | dict[str, Any]
Responder = Callable[[dict[str, Any]], tuple[int, Reply] | tuple[int, Reply, dict[str, str]]]


def completion(text: str) -> dict[str, Any]:
    return {
        "id": "fake", "object": "chat.completion", "created": 0, "model": "fake",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12},
    }


class FakeEndpoint:
    def __init__(self, responder: Responder, delay_s: float = 0.0) -> None:
        self.responder = responder
        self.delay_s = delay_s
        self.requests: list[dict[str, Any]] = []
        self.arrivals: list[float] = []
        self.active = self.max_active = 0
        self._lock = threading.Lock()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                self._send(200, json.dumps({"object": "list", "data": [{"id": "fake", "object": "model"}]}).encode())

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with endpoint._lock:
                    endpoint.requests.append(body)
                    endpoint.arrivals.append(time.monotonic())
                    endpoint.active += 1
                    endpoint.max_active = max(endpoint.max_active, endpoint.active)
                try:
                    time.sleep(endpoint.delay_s)
                    status, reply, *headers = endpoint.responder(body)
                finally:
                    with endpoint._lock:
                        endpoint.active -= 1
                if isinstance(reply, str) and status == 200:
                    reply = completion(reply)
                payload = reply if isinstance(reply, bytes) else (
                    reply.encode() if isinstance(reply, str) else json.dumps(reply).encode())
                try:
                    self._send(status, payload, *headers)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
                    pass

        self._handler = Handler
        self.port = _open_port(self._serve)

    def reopen(self) -> None:
        self._serve(self.port)

    def _serve(self, port: int) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", port), self._handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def identities(self) -> list[str]:
        """Each request as (messages, sample index): the same identity means the same paid call."""
        return [identity(r["messages"], r.get("seed", 0)) for r in self.requests]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _open_port(serve: Callable[[int], None]) -> int:
    """Serve on a free port below the kernel's ephemeral range: a client that connects while the
    fake is closed could otherwise be given that very port as its own and connect to itself."""
    with open("/proc/sys/net/ipv4/ip_local_port_range") as ports:
        low = int(ports.read().split()[0])
    for port in random.sample(range(10_000, low), 100):
        try:
            serve(port)
            return port
        except OSError:  # taken
            continue
    raise OSError(f"no free port between 10000 and {low}")


def embedding(text: str) -> dict[str, Any]:
    """An embedding reply shaped like llama.cpp's for a chat model: one vector per token (here per
    word), each word hashed onto 16 dimensions, so equal words give equal directions."""
    tokens = [[(hashlib.sha256(f"{w}{d}".encode()).digest()[0] - 128) / 128 for d in range(16)]
              for w in text.lower().split()] or [[0.0] * 16]
    return {"object": "list", "model": "fake", "usage": {"prompt_tokens": len(tokens), "total_tokens": len(tokens)},
            "data": [{"object": "embedding", "index": 0, "embedding": tokens}]}


def demo_responder(body: dict[str, Any]) -> tuple[int, str]:
    """A task model that repeats its input only after a worked example (any assistant turn): the
    proposer is useless, so only demonstrations can help."""
    messages = body["messages"]
    if len(messages) == 1:
        return 200, "Say a word."
    return 200, messages[-1]["content"] if any(m["role"] == "assistant" for m in messages) else "wrong"


def task_aware_responder(body: dict[str, Any]) -> tuple[int, str | dict[str, Any]]:
    """A fake that 'follows' instructions: candidates whose instruction says 'echo' answer with the
    input, others answer 'wrong'; proposer prompts get a fixed menu of instructions; embedding
    requests get :func:`embedding`."""
    if "input" in body:
        return 200, embedding(body["input"][0])
    messages = body["messages"]
    last = messages[-1]["content"]
    if "What was the instruction?" in last or "scores higher" in last:
        menu = ["Echo the input word.", "Say something else.", "Reply with a random word.", "Echo the word back."]
        return 200, menu[body.get("seed", 0) % len(menu)]
    if last.startswith("Generate a variation"):
        return 200, "Echo the given word exactly."
    instruction = messages[0]["content"].lower()
    return 200, (last if "echo" in instruction else "wrong")


def identity(messages: list[dict[str, str]], sample: int) -> str:
    return json.dumps([messages, sample], sort_keys=True)
