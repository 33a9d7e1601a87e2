"""The live page and Compare with the server's runs on Ray (``DMLVIZ_EXECUTOR=ray``, a Ray started in the
server): the same browser checks as on the local executor pass unchanged."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from bench.appserver import AppServer, ServerError, serve
from dmlviz.runner import EXECUTOR_ENV
from dmlviz.store import RunStore
from tests.e2e import test_compare_page, test_train_page
from tests.e2e.conftest import SERVER_START_S

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    pytest.importorskip("ray", reason="Ray is not installed (requirements-dev.txt)")
    root = tmp_path_factory.mktemp("app-on-ray")
    (root / "store").mkdir()
    (root / "data").mkdir()
    os.environ[EXECUTOR_ENV] = "ray"  # read by the server when it starts
    try:
        with serve(root / "store", root / "data", root / "server.log", SERVER_START_S) as server:
            os.environ.pop(EXECUTOR_ENV)
            yield server
    except ServerError as error:
        pytest.fail(str(error))
    finally:
        os.environ.pop(EXECUTOR_ENV, None)


def trained_on_ray(app: AppServer) -> list[bool]:
    """For each run of the app's store, whether a Ray worker trained it."""
    store = RunStore(app.store_dir, read_only=True)
    try:
        return [store.get_info(run.id, "ray_worker") is not None for run in store.list_runs()]
    finally:
        store.close()


def test_the_live_page_starts_pauses_steps_and_stops_a_run_on_ray(app, page, e2e_output):
    test_train_page.test_start_pause_step_resume_zoom_stop(app, page, e2e_output)
    assert trained_on_ray(app) and all(trained_on_ray(app))


def test_a_comparison_trains_side_by_side_on_ray(app, page, e2e_output):
    test_compare_page.test_a_preset_comparison_trains_both_losses_side_by_side_and_scrubs_together(
        app, page, e2e_output)
    assert len(trained_on_ray(app)) >= 3 and all(trained_on_ray(app))
