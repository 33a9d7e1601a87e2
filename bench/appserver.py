"""The app served by ``streamlit run app.py`` in a process of its own, on a free loopback port, with its
own store and data folders, and a Chromium to open it: what the browser tests and the live-page
benchmarks share.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from dmlviz import settings

REPO = Path(__file__).resolve().parents[1]
CHROMIUM_ENV = "DMLVIZ_CHROMIUM"
# Without the background-networking flags Chromium keeps calling home, which floods a closed network.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync")


class ServerError(RuntimeError):
    """The app did not come up; the message ends with the tail of its log."""


@dataclass(frozen=True)
class AppServer:
    """A running app: the URL to open, its process id, and the folders it keeps its runs and datasets in."""

    url: str
    pid: int
    store_dir: Path
    data_dir: Path
    log: Path


def chromium_path() -> str | None:
    """The first executable Chromium of: $DMLVIZ_CHROMIUM, Debian's and Ubuntu's paths, the PATH."""
    candidates = (os.environ.get(CHROMIUM_ENV), "/usr/bin/chromium", "/usr/bin/chromium-browser",
                  shutil.which("chromium"), shutil.which("chromium-browser"))
    return next((path for path in candidates if path and os.path.isfile(path) and os.access(path, os.X_OK)), None)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@contextmanager
def serve(store_dir: Path, data_dir: Path, log: Path, start_s: float = 60.0) -> Iterator[AppServer]:
    """``streamlit run app.py`` from the repository root until the block ends. The server runs in a
    session of its own, so stopping its process group stops the training workers too."""
    port = free_port()
    command = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
               "--server.address", "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats", "false",
               "--server.fileWatcherType", "none"]
    env = {**os.environ, settings.STORE_DIR_ENV: str(store_dir), settings.DATA_DIR_ENV: str(data_dir),
           "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as out:
        server = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + start_s
        while not healthy(url):
            if server.poll() is not None:
                raise ServerError(f"streamlit exited with status {server.returncode}:\n{tail(log)}")
            if time.monotonic() > deadline:
                raise ServerError(f"streamlit did not answer /_stcore/health within {start_s:g} s:\n{tail(log)}")
            time.sleep(0.2)
        yield AppServer(url, server.pid, Path(store_dir), Path(data_dir), log)
    finally:
        _stop(server)


def _stop(server: subprocess.Popen) -> None:
    """SIGTERM to the server's process group, then SIGKILL to whatever is left of it: training workers
    must not outlive the server."""
    for sig, grace_s in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(server.pid, sig)
        except ProcessLookupError:
            break
        try:
            server.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            continue
