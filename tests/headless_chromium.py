"""A headless Chromium a test can ask what a page shows: it opens a URL and returns the value
of a JavaScript expression evaluated there (over the Chrome DevTools protocol, with
websocket-client). Flags that work on a root CI machine without a display or a network."""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import websocket

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--remote-debugging-port=0"]


def chromium_path() -> str | None:
    """Debian's chromium, or one on the PATH; None when there is none."""
    return CHROMIUM if Path(CHROMIUM).is_file() else shutil.which("chromium")


class Chromium:
    """``with Chromium() as browser: browser.evaluate(url, expression)``."""

    def __init__(self, executable: str | None = None, timeout: float = 60.0):
        self.executable = executable or chromium_path()
        self.timeout = timeout
        self.ids = itertools.count(1)

    def __enter__(self) -> Chromium:
        self.profile = tempfile.mkdtemp(prefix="chromium-profile-")
        self.process = subprocess.Popen([self.executable, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port = self._devtools_port()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=self.timeout) as answer:
            page = next(t for t in json.load(answer) if t["type"] == "page")
        self.socket = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=self.timeout,
                                                  suppress_origin=True)
        return self

    def __exit__(self, *exc) -> None:
        if getattr(self, "socket", None):
            self.socket.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        shutil.rmtree(self.profile, ignore_errors=True)

    def _devtools_port(self) -> int:
        """The port Chromium chose, from the file it writes into its profile once it listens."""
        marker, deadline = Path(self.profile) / "DevToolsActivePort", time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.executable} exited with {self.process.returncode}")
            if marker.is_file() and marker.read_text().strip():
                return int(marker.read_text().split()[0])
            time.sleep(0.1)
        raise TimeoutError(f"{self.executable} did not open its DevTools port in {self.timeout:.0f} s")

    def call(self, method: str, **params) -> dict:
        """One DevTools command and its result (events that come before it are skipped)."""
        number = next(self.ids)
        self.socket.send(json.dumps({"id": number, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == number:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    def evaluate(self, url: str, expression: str):
        """Open ``url`` and return the JSON value of ``expression`` (which may be a promise),
        evaluated once the page has loaded."""
        self.call("Page.navigate", url=url)
        deadline = time.monotonic() + self.timeout
        while self.call("Runtime.evaluate", expression="document.readyState + ' ' + location.href",
                        returnByValue=True)["result"].get("value") != f"complete {url}":
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not load in {self.timeout:.0f} s")
            time.sleep(0.05)
        result = self.call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{url}: {result['exceptionDetails']}")
        return result["result"]["value"]
