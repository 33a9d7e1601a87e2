"""The Train page in a real browser: a run started, paused, single-stepped and stopped from its buttons,
and a view the user set (3-D camera, 2-D zoom) that survives the live updates.

The page's DOM contract: Streamlit gives an element with ``key=K`` the CSS class ``st-key-K``; the
buttons are keyed start / pause / resume / step / stop / reset, the status line ``run_status`` reads
``step N / M``, and the feature chart is keyed ``features_chart``. Its graph div is the
``.js-plotly-plot`` inside that element, or inside an iframe there (a chart drawn by a component).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlencode

import pytest

from dmlviz.config import RunConfig
from dmlviz.store import RunStore

pytestmark = pytest.mark.e2e

T = TypeVar("T")

# A run long enough never to end during a test (each test stops its own), with small, frequent snapshots.
RUN = {"dataset": "digits", "loss": "softmax", "device": "cpu", "epochs": 100, "batch_size": 64,
       "probe_size": 300, "snapshot_every": 0.25}
STEP = re.compile(r"step\s+([\d,\u202f ]+?)\s*/\s*([\d,\u202f ]+)")

# The feature chart as the browser draws it: class points are the traces with customdata; the view is
# the camera the user sees (plotly keeps it in the scene; _fullLayout can lag behind it) or the x range,
# which plotly stops fitting to the data (autorange false) once the user zooms or pans.
CHART_JS = """(key) => {
  const root = document.querySelector('.st-key-' + key);
  if (!root) return null;
  let gd = root.querySelector('.js-plotly-plot');
  const frame = root.querySelector('iframe');
  if (!gd && frame && frame.contentDocument) gd = frame.contentDocument.querySelector('.js-plotly-plot');
  if (!gd || !gd._fullData || !gd._fullLayout) return null;
  const classes = gd._fullData.filter((t) => t._input && t._input.customdata != null);
  const points = classes.reduce((n, t) => n + (t.x ? t.x.length : 0), 0);
  const head = classes.length && classes[0].x ? Array.from(classes[0].x.slice(0, 8)) : [];
  const scene = gd._fullLayout.scene;
  let eye = null;
  if (scene) eye = scene._scene && scene._scene.getCamera ? scene._scene.getCamera().eye : scene.camera.eye;
  const xaxis = !scene && gd._fullLayout.xaxis;
  return {points, data: JSON.stringify(head), eye: eye && [eye.x, eye.y, eye.z],
          xrange: xaxis ? Array.from(xaxis.range).map(Number) : null, autorange: xaxis ? xaxis.autorange : null};
}"""
STATUS_JS = "() => { const e = document.querySelector('.st-key-run_status'); return e ? e.innerText : null; }"


def wait_until(page, condition: Callable[[], T], what: str, timeout_s: float = 30.0) -> T:
    """Poll ``condition`` while the page keeps running; its first truthy value, or fail naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        page.wait_for_timeout(100)
    return value


def train_url(app, feature_dim: int) -> str:
    query = RunConfig.from_dict({**RUN, "feature_dim": feature_dim}).to_query()
    return f"{app.url}/train?{urlencode(query)}"


def chart(page) -> dict[str, Any] | None:
    return page.evaluate(CHART_JS, "features_chart")


def step(page) -> int | None:
    """N of the status line's ``step N / M``, or None before there is one."""
    match = STEP.search(page.evaluate(STATUS_JS) or "")
    return int(re.sub(r"\D", "", match.group(1))) if match else None


def shown(page, key: str) -> bool:
    return page.locator(f".st-key-{key} button").filter(visible=True).count() > 0


def press(page, key: str) -> None:
    page.locator(f".st-key-{key} button").filter(visible=True).first.click()


def latest_status(app) -> str | None:
    store = RunStore(app.store_dir)
    try:
        runs = store.list_runs()
        return runs[0].status if runs else None
    finally:
        store.close()


def steady_step(page, hold_s: float = 1.0) -> int:
    """The step counter once it has stayed put for ``hold_s`` (a paused run's counter must not move)."""
    last, since = step(page), time.monotonic()
    while time.monotonic() - since < hold_s:
        page.wait_for_timeout(100)
        now = step(page)
        if now != last:
            last, since = now, time.monotonic()
    assert last is not None, "no step counter on a paused run"
    return last


def start_run(app, page, feature_dim: int) -> dict[str, Any]:
    """Open the page, press Start and wait for the first drawn points; the chart's state then."""
    page.goto(train_url(app, feature_dim))
    press(page, "start")
    return wait_until(page, lambda: (state := chart(page)) and state["points"] > 0 and step(page) is not None
                      and state, "the feature chart's points and a step counter")


def stop_run(app, page) -> None:
    """Stop the test's run if it is still going, so the next test's run does not queue behind it (one
    run at a time on a CPU). Quietly: it runs after a failure too, which must stay the one reported."""
    if latest_status(app) in ("running", "paused", "queued") and shown(page, "stop"):
        press(page, "stop")
        deadline = time.monotonic() + 10
        while latest_status(app) != "stopped" and time.monotonic() < deadline:
            page.wait_for_timeout(100)


def drag(page, dx: float, dy: float) -> None:
    """A user's drag from the middle of the feature chart, by fractions of its size, with pauses a slow
    renderer can follow."""
    box = wait_until(page, lambda: page.locator(".st-key-features_chart").first.bounding_box(), "the chart's box")
    x, y = box["x"] + 0.4 * box["width"], box["y"] + 0.5 * box["height"]
    page.mouse.move(x, y)
    page.wait_for_timeout(50)
    page.mouse.down()
    for k in range(1, 11):
        page.mouse.move(x + dx * box["width"] * k / 10, y + dy * box["height"] * k / 10)
        page.wait_for_timeout(40)
    page.mouse.up()


def wait_for_redraws(page, count: int, data: str) -> None:
    """Until the chart has been drawn with ``count`` new sets of points after ``data``."""
    seen = {data}

    def enough() -> bool:
        state = chart(page)
        if state is not None:
            seen.add(state["data"])
        return len(seen) > count

    wait_until(page, enough, f"{count} redraws with new data")


def view(state: dict[str, Any]) -> list[float]:
    return state["eye"] if state["eye"] is not None else state["xrange"]


def assert_view_survives_updates(page) -> None:
    """Drag the chart as a user would (a 3-D scene turns, a 2-D chart pans or zooms), let the page draw
    three new snapshots, and check the view is still the one the user chose."""
    before = wait_until(page, lambda: chart(page), "the feature chart")
    drag(page, 0.25, 0.05)
    page.wait_for_timeout(200)
    chosen = wait_until(page, lambda: chart(page), "the chart after the drag")
    if chosen["eye"] is not None:
        moved = not all(math.isclose(a, b, abs_tol=0.05) for a, b in zip(chosen["eye"], before["eye"], strict=True))
    else:
        moved = chosen["autorange"] is False
    assert moved, f"the drag did not change the view, or a redraw undid it at once ({before} → {chosen})"
    wait_for_redraws(page, 3, chosen["data"])
    after = wait_until(page, lambda: chart(page), "the chart after the redraws")
    assert after["autorange"] is chosen["autorange"] and all(
        math.isclose(a, b, rel_tol=1e-3, abs_tol=1e-9) for a, b in zip(view(after), view(chosen), strict=True)
    ), f"a redraw reset the view: {view(chosen)} → {view(after)}"


def test_start_pause_step_resume_zoom_stop(app, page, e2e_output):
    """The whole life of a 2-D run from its buttons, and a zoomed chart that stays zoomed while it trains."""
    try:
        first = start_run(app, page, feature_dim=2)
        assert first["eye"] is None, "a 2-D run drew a 3-D scene"
        begun = step(page)
        wait_until(page, lambda: (step(page) or 0) > begun, "the step counter to move")
        assert shown(page, "pause") and not shown(page, "resume") and not shown(page, "start")

        press(page, "pause")
        wait_until(page, lambda: shown(page, "resume") and shown(page, "step") and not shown(page, "pause"),
                   "Resume and Step in place of Pause")
        wait_until(page, lambda: latest_status(app) == "paused", "the run to be paused in the store")
        paused = steady_step(page)

        # The counter shows the newest snapshot, which can trail the step the run paused at: the first
        # single step reveals that step + 1, each further one adds exactly 1.
        press(page, "step")
        stepped = wait_until(page, lambda: (n := step(page) or 0) > paused and n, "a single step to show")
        press(page, "step")
        wait_until(page, lambda: step(page) == stepped + 1, f"the counter to go from {stepped} to {stepped + 1}")
        assert steady_step(page) == stepped + 1, "the run went on after a single step"
        assert latest_status(app) == "paused"

        press(page, "resume")
        wait_until(page, lambda: shown(page, "pause") and not shown(page, "resume"), "Pause in place of Resume")
        wait_until(page, lambda: (step(page) or 0) > stepped + 1, "the counter to move again")
        assert_view_survives_updates(page)

        press(page, "stop")
        wait_until(page, lambda: latest_status(app) == "stopped", "the run to be stopped in the store")
        wait_until(page, lambda: not any(shown(page, key) for key in ("pause", "resume", "step", "stop")),
                   "the run's controls to go once it stopped")
        wait_until(page, lambda: (state := chart(page)) and state["points"] > 0, "the stopped run's chart")
        page.screenshot(path=str(e2e_output / "train_page.png"), full_page=True)
    finally:
        stop_run(app, page)


def test_the_3d_camera_survives_live_updates(app, page):
    """A user who turns the 3-D feature space keeps that view while new snapshots are drawn."""
    try:
        first = start_run(app, page, feature_dim=3)
        assert first["eye"] is not None, "a 3-D run drew no 3-D scene"
        assert_view_survives_updates(page)
    finally:
        stop_run(app, page)
