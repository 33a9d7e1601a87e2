"""Fixtures of the browser tests: a Chromium from this machine, the app served on a free loopback port
with its own store and data folders, and a Playwright page at a desktop size.

The tests skip, saying why, only where no Chromium (or no Playwright) is found; a server that does not
come up is a failure.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.appserver import CHROMIUM_ENV, CHROMIUM_FLAGS, AppServer, ServerError, chromium_path, serve

OUTPUT_ENV = "DMLVIZ_E2E_OUTPUT"
VIEWPORT = {"width": 1400, "height": 1000}
SERVER_START_S = 60.0  # a first start imports torch and Streamlit on a busy two-core machine
WAIT_MS = 30_000  # Playwright's default wait for an element or a page


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    """``streamlit run app.py`` from the repository root, on a free port, until the module's tests end."""
    root = tmp_path_factory.mktemp("app")
    store_dir, data_dir = root / "store", root / "data"
    store_dir.mkdir()
    data_dir.mkdir()
    try:
        with serve(store_dir, data_dir, root / "server.log", SERVER_START_S) as server:
            yield server
    except ServerError as error:
        pytest.fail(str(error))


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
