"""Fixtures of the browser tests: a Chromium from this machine, the app served on a free loopback port
with its own store and data folders, and a Playwright page at a desktop size.

The tests skip, saying why, only where no Chromium (or no Playwright) is found; a server that does not
come up is a failure.
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
from dataclasses import dataclass
from pathlib import Path

import pytest

from dmlviz import settings

REPO = Path(__file__).resolve().parents[2]
CHROMIUM_ENV = "DMLVIZ_CHROMIUM"
OUTPUT_ENV = "DMLVIZ_E2E_OUTPUT"
# Without the background-networking flags Chromium keeps calling home, which floods a closed network.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync")
VIEWPORT = {"width": 1400, "height": 1000}
SERVER_START_S = 60.0  # a first start imports torch and Streamlit on a busy two-core machine
WAIT_MS = 30_000  # Playwright's default wait for an element or a page


def chromium_path() -> str | None:
    """The first executable Chromium of: $DMLVIZ_CHROMIUM, Debian's and Ubuntu's paths, the PATH."""
    candidates = (os.environ.get(CHROMIUM_ENV), "/usr/bin/chromium", "/usr/bin/chromium-browser",
                  shutil.which("chromium"), shutil.which("chromium-browser"))
    return next((path for path in candidates if path and os.path.isfile(path) and os.access(path, os.X_OK)), None)


@dataclass(frozen=True)
class App:
    """A running app: the URL to open and the folders it keeps its runs and datasets in."""

    url: str
    store_dir: Path
    data_dir: Path
    log: Path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _stop(server: subprocess.Popen) -> None:
    """SIGTERM to the server's process group, then SIGKILL to whatever is left of it: the training
    workers are in the group too and must not outlive a test."""
    for sig, grace_s in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(server.pid, sig)
        except ProcessLookupError:
            break
        try:
            server.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    """``streamlit run app.py`` from the repository root, on a free port, until the module's tests end."""
    root = tmp_path_factory.mktemp("app")
    store_dir, data_dir, log = root / "store", root / "data", root / "server.log"
    store_dir.mkdir()
    data_dir.mkdir()
    port = _free_port()
    command = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
               "--server.address", "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats", "false",
               "--server.fileWatcherType", "none"]
    env = {**os.environ, settings.STORE_DIR_ENV: str(store_dir), settings.DATA_DIR_ENV: str(data_dir),
           "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as out:
        # A session of its own, so that stopping the group also stops the training workers.
        server = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + SERVER_START_S
        while not _healthy(url):
            if server.poll() is not None:
                pytest.fail(f"streamlit exited with status {server.returncode}:\n{_tail(log)}")
            if time.monotonic() > deadline:
                pytest.fail(f"streamlit did not answer /_stcore/health within {SERVER_START_S:g} s:\n{_tail(log)}")
            time.sleep(0.2)
        yield App(url, store_dir, data_dir, log)
    finally:
        _stop(server)


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """Chromium from this machine (Playwright's own browsers are never downloaded)."""
    path = chromium_path()
    if path is None:
        pytest.skip(f"no Chromium found: install Debian's chromium (apt-get install chromium) or set ${CHROMIUM_ENV}")
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (requirements-dev.txt)")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=path, args=list(CHROMIUM_FLAGS), headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def e2e_output(tmp_path: Path) -> Path:
    """Where screenshots go: $DMLVIZ_E2E_OUTPUT when set (kept for a person to look at), else tmp_path."""
    chosen = os.environ.get(OUTPUT_ENV)
    if not chosen:
        return tmp_path
    folder = Path(chosen)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """Keep each phase's report on the test, so the page fixture knows whether the test failed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def page(browser, request: pytest.FixtureRequest, e2e_output: Path) -> Iterator[object]:
    """A fresh browser context (a new Streamlit session) at 1400×1000; a failed test leaves a screenshot."""
    context = browser.new_context(viewport=VIEWPORT)
    tab = context.new_page()
    tab.set_default_timeout(WAIT_MS)
    yield tab
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        name = "".join(c if c.isalnum() or c in "-_" else "_" for c in request.node.name)
        tab.screenshot(path=str(e2e_output / f"failed-{name}.png"), full_page=True)
    context.close()
