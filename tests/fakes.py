"""A scripted OpenAI-compatible endpoint on loopback, for control-flow tests.

It speaks real HTTP, so the tests exercise the real openai client, retries and caching; only the
model is fake. ``responder(body) -> (status, reply)`` decides each answer: a string reply becomes a
chat completion, a dict is sent as the raw JSON body.
"""

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Responder = Callable[[dict[str, Any]], tuple[int, str | dict[str, Any]]]


def completion(text: str) -> dict[str, Any]:
    return {
        "id": "fake", "object": "chat.completion", "created": 0, "model": "fake",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12},
    }


class FakeEndpoint:
    def __init__(self, responder: Responder) -> None:
        self.responder = responder
        self.requests: list[dict[str, Any]] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                self._send(200, json.dumps({"object": "list", "data": [{"id": "fake", "object": "model"}]}).encode())

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                endpoint.requests.append(body)
                status, reply = endpoint.responder(body)
                if isinstance(reply, str) and status == 200:
                    reply = completion(reply)
                payload = reply.encode() if isinstance(reply, str) else json.dumps(reply).encode()
                self._send(status, payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/v1"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def task_aware_responder(body: dict[str, Any]) -> tuple[int, str]:
    """A fake that 'follows' instructions: candidates whose instruction says 'echo' answer with the
    input, others answer 'wrong'; proposer prompts get a fixed menu of instructions."""
    messages = body["messages"]
    last = messages[-1]["content"]
    if "What was the instruction?" in last:
        menu = ["Echo the input word.", "Say something else.", "Reply with a random word.", "Echo the word back."]
        return 200, menu[body.get("seed", 0) % len(menu)]
    if last.startswith("Generate a variation"):
        return 200, "Echo the given word exactly."
    instruction = messages[0]["content"].lower()
    return 200, (last if "echo" in instruction else "wrong")
