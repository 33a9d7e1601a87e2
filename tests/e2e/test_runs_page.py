"""The Runs page in a real browser: a stored run (trained from the CLI) opens with its replay,
pressing play moves the replay's slider (and the histogram beside it) through the run's snapshots in
the browser alone, and an export downloads a real file.

DOM contract: the replay is the plotly chart keyed ``replay-<run id>``; its play button is plotly's
first update-menu button; the histogram is on its ``xaxis2``; downloads are keyed ``export_<what>``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from PIL import Image

from dmlviz import render, settings
from dmlviz.store import RunStore

from .waiting import wait_until

pytestmark = pytest.mark.e2e

HISTOGRAM_TOP_JS = """(key) => document.querySelector('.st-key-' + key + ' .js-plotly-plot')
  ._fullLayout.xaxis2.range[1]"""
ACTIVE_JS = """(key) => {
  const gd = document.querySelector('.st-key-' + key + ' .js-plotly-plot');
  return gd && gd._fullLayout && gd._fullLayout.sliders ? gd._fullLayout.sliders[0].active : null;
}"""


def test_a_stored_run_replays_in_the_browser(app, page, e2e_output):
    env = {**os.environ, settings.DATA_DIR_ENV: str(app.data_dir)}
    subprocess.run([sys.executable, "-m", "dmlviz", "--store", str(app.store_dir), "train", "--dataset", "digits",
                    "--steps", "120", "--snapshot-steps", "10", "--device", "cpu", "--quiet",
                    "--data-dir", str(app.data_dir)], check=True, env=env, capture_output=True, timeout=300)
    (run,) = RunStore(app.store_dir).list_runs()
    page.goto(f"{app.url}/runs")
    key = f"replay-{run.id}"
    deadline = time.monotonic() + 60
    while page.evaluate(ACTIVE_JS, key) is None:
        assert time.monotonic() < deadline, "the replay did not appear"
        page.wait_for_timeout(200)
    assert page.evaluate(ACTIVE_JS, key) == 0
    first_top = page.evaluate(HISTOGRAM_TOP_JS, key)
    page.locator(f".st-key-{key} .updatemenu-button").first.click()
    deadline = time.monotonic() + 30
    while (page.evaluate(ACTIVE_JS, key) or 0) < 3:
        assert time.monotonic() < deadline, "pressing play did not move the slider"
        page.wait_for_timeout(100)
    # The histogram's axis follows the frames: the distances of a later snapshot.
    wait_until(page, lambda: page.evaluate(HISTOGRAM_TOP_JS, key) != first_top, "the histogram to follow the slider")
    page.screenshot(path=str(e2e_output / "runs_page.png"), full_page=True)

    with page.expect_download(timeout=60_000) as download:
        page.locator(".st-key-export_png_features button").filter(visible=True).first.click()
    assert download.value.suggested_filename == f"run{run.id}-features-step120.png"
    image = Image.open(download.value.path())
    assert image.format == "PNG" and image.size == render.SIZE
