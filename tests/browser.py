"""Headless Chromium for the report and dashboard tests: Debian's browser, driven over the DevTools
protocol (a websocket, through the `websockets` package), so pages are checked as a user's browser
runs them: scripts, charts, dialogs and all."""

import base64
import json
import os
import shutil
import subprocess
import time
import urllib.request
from itertools import count
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

from agentopt.agents.models.local_model import free_port

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars"]


def chromium() -> str:
    found = os.environ.get("AGENTOPT_TEST_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail("no Chromium: `make test` installs Debian's chromium package (tests/chromium.sh)")
    return found


class Browser:
    """One headless Chromium tab. JavaScript dialogs (``alert`` and friends) are recorded in
    ``dialogs`` and dismissed, so a hostile page can neither block the test nor go unnoticed."""

    def __init__(self, profile: Path, width: int = 1300, height: int = 1000) -> None:
        port = free_port()
        self.proc = subprocess.Popen([chromium(), *FLAGS, f"--user-data-dir={profile}",
                                      f"--remote-debugging-port={port}", "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.dialogs: list[str] = []
        self._ids = count(1)
        self.ws = self._attach(port)
        self.call("Page.enable")
        self.call("Runtime.enable")
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)

    def _attach(self, port: int) -> ClientConnection:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as answer:
                    pages = [t for t in json.load(answer) if t["type"] == "page"]
                if pages:
                    return connect(pages[0]["webSocketDebuggerUrl"], max_size=None, open_timeout=30)
            except OSError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("Chromium did not open its DevTools port")
            time.sleep(0.2)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        ident = next(self._ids)
        self.ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=120))
            if message.get("method") == "Page.javascriptDialogOpening":
                self.dialogs.append(message["params"].get("message", ""))
                self.ws.send(json.dumps({"id": next(self._ids), "method": "Page.handleJavaScriptDialog",
                                         "params": {"accept": False}}))
            elif message.get("id") == ident:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def eval(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 30) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = self.eval(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"still false after {timeout:.0f} s: {expression}")
            time.sleep(0.2)

    def open(self, url: str) -> None:
        self.call("Page.navigate", url=url)
        time.sleep(0.2)
        self.wait_for("document.readyState === 'complete' && document.body !== null && "
                      "document.body.dataset.charts !== undefined")

    def screenshot(self, path: Path) -> None:
        height = int(self.eval("Math.min(document.documentElement.scrollHeight, 4000)"))
        shot = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                         clip={"x": 0, "y": 0, "width": 1300, "height": height, "scale": 1})
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))

    def close(self) -> None:
        try:
            self.ws.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
