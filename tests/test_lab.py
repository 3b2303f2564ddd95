"""`make lab` works: a Jupyter server on loopback serves the .py notebooks as notebooks.

The server is started the way the Makefile's `lab` target starts it (same flags, same
`JUPYTER_CONFIG_PATH`), but on a free loopback port, with a token, and with the user's own
Jupyter configuration and settings replaced by empty temporary folders.
"""

import json
import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import jupytext
import pytest

from .support import free_port

pytest.importorskip("jupyterlab")
pytest.importorskip("jupyterlab_jupytext")

REPO = Path(__file__).parents[1]
NOTEBOOK = "01_ide_baseline.py"


class Server:
    def __init__(self, tmp: Path):
        self.port, self.token = free_port(), secrets.token_hex(16)
        env = dict(os.environ)
        env.update(
            JUPYTER_CONFIG_PATH=str(REPO / "jupyter-config"),  # as in `make lab`
            JUPYTER_CONFIG_DIR=str(tmp / "config"),  # not the user's ~/.jupyter
            JUPYTER_RUNTIME_DIR=str(tmp / "runtime"),
            JUPYTERLAB_SETTINGS_DIR=str(tmp / "settings"),
            JUPYTERLAB_WORKSPACES_DIR=str(tmp / "workspaces"),
        )
        command = [
            sys.executable, "-m", "jupyterlab", "--no-browser",
            f"--ServerApp.root_dir={REPO}", "--LabApp.default_url=/lab/tree/notebooks",
            "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0", f"--IdentityProvider.token={self.token}",
        ]  # fmt: skip
        if hasattr(os, "geteuid") and os.geteuid() == 0:  # containers and CI often run as root
            command.append("--allow-root")
        self.log = open(tmp / "server.log", "w+")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(command, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def request(self, path: str, method: str = "GET"):
        url = f"http://127.0.0.1:{self.port}{path}"
        req = urllib.request.Request(url, method=method)
        req.add_header("Authorization", f"token {self.token}")
        with urllib.request.urlopen(req, timeout=30) as response:
            body = response.read()
        return json.loads(body) if body else None

    def wait_until_up(self, timeout: float = 90.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                return self.request("/api/status")
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.5)
        self.log.seek(0)
        pytest.fail(f"Jupyter server did not start:\n{self.log.read()[-3000:]}")

    def stop(self):
        if self.process.poll() is None:
            try:
                self.request("/api/shutdown", method="POST")
                self.process.wait(timeout=30)
            except Exception:
                self.process.kill()
                self.process.wait()
        self.log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("lab"))
    try:
        server.wait_until_up()
        yield server
    finally:
        server.stop()
    assert server.process.returncode is not None, "the server stopped"


def test_lists_the_notebooks_folder(server):
    listing = server.request("/api/contents/notebooks?content=1")
    assert listing["type"] == "directory"
    names = {item["name"] for item in listing["content"]}
    sources = {p.name for p in (REPO / "notebooks").glob("[0-9][0-9]_*.py")}
    assert sources and sources <= names
    assert {Path(n).with_suffix(".ipynb").name for n in sources} <= names


def test_opens_a_py_source_as_a_notebook(server):
    model = server.request(f"/api/contents/notebooks/{NOTEBOOK}?type=notebook&content=1")
    assert model["type"] == "notebook", "jupytext's contents manager serves .py as notebooks"
    cells = model["content"]["cells"]
    expected = jupytext.read(REPO / "notebooks" / NOTEBOOK).cells
    assert [c["source"] for c in cells] == [c.source for c in expected]
    # inputs come from the .py, outputs from the paired, executed .ipynb
    assert any(c.get("outputs") for c in cells if c["cell_type"] == "code")


def test_double_click_opens_py_as_notebook(server):
    settings = server.request("/lab/api/settings/@jupyterlab/docmanager-extension:plugin")
    # the override changes the schema's default, which applies unless the user set their own
    default = settings["schema"]["properties"]["defaultViewers"]["default"]
    assert default.get("python") == "Jupytext Notebook"
