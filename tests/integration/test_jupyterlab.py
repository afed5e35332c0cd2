"""JupyterLab opens notebooks/: started headless on loopback, it lists the notebooks through its contents API.

[dev] includes [notebooks], which brings JupyterLab, so a missing jupyterlab fails this test rather than skipping it.
The server gets its own Jupyter config, data and runtime folders, so nothing of the user's Jupyter set-up leaks in.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
#: Seconds JupyterLab gets to answer; it imports its server extensions first, which is slow on a loaded machine.
START_TIMEOUT_S = 90.0

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class RunningLab:
    url: str
    token: str
    process: subprocess.Popen[bytes]
    log: Path

    def get(self, path: str, *, token: str | None = None) -> httpx.Response:
        headers = {"Authorization": f"token {token}"} if token else {}
        return httpx.get(f"{self.url}{path}", headers=headers, timeout=10.0)

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


def _free_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_until_answering(lab: RunningLab) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if lab.process.poll() is not None:
            pytest.fail(f"JupyterLab exited with {lab.process.returncode} before answering:\n{lab.log_tail()}")
        try:
            if lab.get("/api/status", token=lab.token).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(f"JupyterLab did not answer on {lab.url} within {START_TIMEOUT_S:.0f} s:\n{lab.log_tail()}")


@pytest.fixture
def jupyterlab(tmp_path: Path) -> Iterator[RunningLab]:
    """JupyterLab serving notebooks/ on 127.0.0.1 (a free port), with a fresh token and no browser."""
    assert importlib.util.find_spec("jupyterlab") is not None, (
        "jupyterlab is not installed: the [notebooks] extra (part of [dev]) brings it; run `make setup`"
    )
    port = _free_loopback_port()
    token = secrets.token_urlsafe(24)
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
        "JUPYTER_DATA_DIR": str(tmp_path / "data"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "IPYTHONDIR": str(tmp_path / "ipython"),
    }
    argv = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--allow-root",  # CI containers often run as root; JupyterLab refuses to start as root without it
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={NOTEBOOKS}",
    ]
    log = tmp_path / "jupyterlab.log"
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
    lab = RunningLab(url=f"http://127.0.0.1:{port}", token=token, process=process, log=log)
    try:
        _wait_until_answering(lab)
        yield lab
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_jupyterlab_lists_the_notebooks_through_its_contents_api_and_shuts_down(jupyterlab: RunningLab) -> None:
    on_disk = {path.name for path in NOTEBOOKS.glob("*.ipynb")}
    assert on_disk >= {"success_metrics.ipynb", "timeouts_and_retries.ipynb", "rate_limits.ipynb", "real_sync.ipynb"}

    assert jupyterlab.get("/api/contents/").status_code == 403  # the token is required
    listing = jupyterlab.get("/api/contents/", token=jupyterlab.token)
    assert listing.status_code == 200, listing.text
    served = {item["name"] for item in listing.json()["content"] if item["type"] == "notebook"}
    assert served == on_disk

    shutdown = httpx.post(
        f"{jupyterlab.url}/api/shutdown", headers={"Authorization": f"token {jupyterlab.token}"}, timeout=10.0
    )
    assert shutdown.status_code == 200, shutdown.text
    assert jupyterlab.process.wait(timeout=30) == 0, jupyterlab.log_tail()
