"""The Train page in a real browser: a run started, paused, single-stepped and stopped from its buttons,
a view the user set (3-D camera, 2-D zoom) that survives the live updates, and a point picked by a click.

The page's DOM contract: Streamlit gives an element with ``key=K`` the CSS class ``st-key-K``; the
buttons are keyed start / pause / resume / step / stop / reset (and a disabled stopping while a run
stops), the status line ``run_status`` reads ``step N / M``, the feature chart is keyed
``features_chart`` and the point inspector ``inspector`` (a number input with the selected probe
index, then the images). The chart's graph div is the
``.js-plotly-plot`` inside that element, or inside an iframe there (a chart drawn by a component).
"""

from __future__ import annotations

import math
import re
import time
from typing import Any, TypeVar
from urllib.parse import urlencode

import pytest

from dmlviz.config import RunConfig
from dmlviz.store import RunStore

from .waiting import wait_until

pytestmark = pytest.mark.e2e

T = TypeVar("T")

# A run long enough never to end during a test (each test stops its own), with small, frequent snapshots:
# a generous snapshot budget, so that on a busy two-core machine, where one snapshot can take a second,
# the engine does not space the live snapshots out to one per epoch.
RUN = {"dataset": "digits", "loss": "softmax", "device": "cpu", "epochs": 100, "batch_size": 64,
       "probe_size": 300, "snapshot_every": 0.25, "snapshot_budget": 0.5}
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
  const ring = gd._fullData.find((t) => /^probe #/.test(t.name || ""));
  return {points, data: JSON.stringify(head), eye: eye && [eye.x, eye.y, eye.z],
          xrange: xaxis ? Array.from(xaxis.range).map(Number) : null, autorange: xaxis ? xaxis.autorange : null,
          ring: ring ? Number(ring.name.slice(7)) : null};
}"""
# Where to click a probe point of a 2-D chart, in page pixels: the one farthest from any other drawn point
# (so that no neighbour or class mean takes the click), inside the plot area. With its probe index.
POINT_JS = """(key) => {
  const frame = document.querySelector('.st-key-' + key + ' iframe');
  const gd = frame && frame.contentDocument && frame.contentDocument.querySelector('.js-plotly-plot');
  if (!gd || !gd._fullLayout || !gd._fullLayout.xaxis || gd._fullLayout.scene) return null;
  const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis, box = frame.getBoundingClientRect();
  const inside = (p, a) => p > a._offset + 10 && p < a._offset + a._length - 10;
  // A click outside the window reaches nothing: only points the user can see.
  const seen = (p) => box.top + p.y > 10 && box.top + p.y < window.innerHeight - 10 && box.left + p.x > 10
                      && box.left + p.x < window.innerWidth - 10;
  const drawn = [];
  for (const t of gd._fullData) {
    if (t.visible !== true || !t.x || !t.y) continue;
    for (let i = 0; i < t.x.length; i++) {
      const x = xa._offset + xa.l2p(t.x[i]), y = ya._offset + ya.l2p(t.y[i]);
      if (Number.isFinite(x) && Number.isFinite(y)) drawn.push({x, y, index: t.customdata ? t.customdata[i] : null});
    }
  }
  let best = null, room = 0;
  for (const p of drawn) {
    if (p.index === null || !inside(p.x, xa) || !inside(p.y, ya) || !seen(p)) continue;
    const gap = Math.min(...drawn.filter((q) => q !== p).map((q) => Math.hypot(p.x - q.x, p.y - q.y)));
    if (gap > room) { best = p; room = gap; }
  }
  return best && {x: box.left + best.x, y: box.top + best.y, index: Number(best.index), room};
}"""
INSPECTED_JS = """() => {
  const input = document.querySelector('.st-key-inspector input');
  const images = document.querySelectorAll('.st-key-inspector img').length;
  return input ? {index: input.value === '' ? null : Number(input.value), images} : null;
}"""
STATUS_JS = "() => { const e = document.querySelector('.st-key-run_status'); return e ? e.innerText : null; }"


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


def latest(app) -> tuple[str | None, int | None]:
    """The newest run's status in the store, and the step of its newest snapshot."""
    store = RunStore(app.store_dir)
    try:
        runs = store.list_runs()
        if not runs:
            return None, None
        index = store.snapshot_index(runs[0].id)
        return runs[0].status, index[-1].step if index else None
    finally:
        store.close()


def latest_status(app) -> str | None:
    return latest(app)[0]


def paused_step(app, page) -> int:
    """The step a paused run stands at, once the page's counter shows it: the engine records that step
    before it says "paused", so the store's newest snapshot is it."""
    def settled() -> list[int] | None:
        status, newest = latest(app)
        return [newest] if status == "paused" and newest is not None and step(page) == newest else None

    return wait_until(page, settled, "the page to show the step the paused run stands at")[0]


def steady_box(page, key: str, hold_s: float = 0.5) -> dict[str, float]:
    """An element's box once it has stayed put for ``hold_s``: the page lays itself out again when the
    run's state changes (the timeline comes and goes), and a drag must land where it was aimed."""
    def box() -> dict[str, float] | None:
        return page.locator(f".st-key-{key}").first.bounding_box()

    last, since = wait_until(page, box, f"the box of {key}"), time.monotonic()
    while time.monotonic() - since < hold_s:
        page.wait_for_timeout(100)
        now = box()
        if now != last:
            last, since = now, time.monotonic()
    assert last is not None
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
    box = steady_box(page, "features_chart")
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


def assert_click_selects_the_point(page) -> None:
    """Click a probe point in the 2-D chart: the inspector shows that image (and its neighbours) and the
    chart rings it."""
    page.locator(".st-key-features_chart").first.scroll_into_view_if_needed()
    target = wait_until(page, lambda: page.evaluate(POINT_JS, "features_chart"), "a probe point to click")
    page.mouse.move(target["x"], target["y"])
    page.wait_for_timeout(300)  # plotly finds the point under the mouse on hover; the click reports it
    page.mouse.click(target["x"], target["y"])
    index = target["index"]
    wait_until(page, lambda: (seen := page.evaluate(INSPECTED_JS)) and seen["index"] == index
               and seen["images"] > 1, f"the inspector to show probe image #{index} (clicked at {target})")
    wait_until(page, lambda: (state := chart(page)) and state["ring"] == index, f"a ring around probe point #{index}")


def test_start_pause_step_resume_zoom_stop(app, page, e2e_output):
    """The whole life of a 2-D run from its buttons, a zoomed chart that stays zoomed while it trains, and
    a point picked by clicking it."""
    try:
        first = start_run(app, page, feature_dim=2)
        assert first["eye"] is None, "a 2-D run drew a 3-D scene"
        begun = step(page)
        wait_until(page, lambda: (step(page) or 0) > begun, "the step counter to move")
        assert shown(page, "pause") and not shown(page, "resume") and not shown(page, "start")

        press(page, "pause")
        wait_until(page, lambda: shown(page, "resume") and shown(page, "step") and not shown(page, "pause"),
                   "Resume and Step in place of Pause")
        paused = paused_step(app, page)

        # Each single step trains exactly one batch and shows it; the run stays paused.
        for expected in (paused + 1, paused + 2):
            press(page, "step")
            wait_until(page, lambda n=expected: (step(page) or 0) >= n, f"the counter to reach {expected}")
            assert paused_step(app, page) == expected, f"a single step from {expected - 1} did not end at {expected}"
        page.wait_for_timeout(1000)
        assert latest(app) == ("paused", paused + 2) and step(page) == paused + 2, "the run went on after a step"
        # A paused chart holds still and is not zoomed yet: every point is there to be clicked.
        assert_click_selects_the_point(page)

        press(page, "resume")
        wait_until(page, lambda: shown(page, "pause") and not shown(page, "resume"), "Pause in place of Resume")
        wait_until(page, lambda: (step(page) or 0) > paused + 2 and "running" in (page.evaluate(STATUS_JS) or ""),
                   "the counter to move again")
        assert_view_survives_updates(page)

        press(page, "stop")
        wait_until(page, lambda: latest_status(app) == "stopped", "the run to be stopped in the store")
        wait_until(page, lambda: not any(shown(page, key) for key in ("pause", "resume", "step", "stop")),
                   "the run's controls to go once it stopped")
        wait_until(page, lambda: (state := chart(page)) and state["points"] > 0, "the stopped run's chart")
        # Streamlit scrolls inside the page, so a "full page" shot is the window: make it tall enough for all.
        page.set_viewport_size({"width": page.viewport_size["width"], "height": 2200})
        page.wait_for_timeout(1000)
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


def test_a_run_whose_tab_is_closed_replays_its_formation_without_gaps(app, page):
    """Start a run, close its tab at step 20 (nobody watches it from then on, so the clock keeps to its
    small budget) and let it finish: its replay still has no gap longer than a tenth of its steps."""
    total = 300
    config = RunConfig.from_dict({"dataset": "digits", "loss": "softmax", "device": "cpu", "steps": total,
                                  "batch_size": 32, "probe_size": 100})
    tab = page.context.new_page()  # the fixture's page stays open, to wait on and to stop the run if need be
    tab.set_default_timeout(30_000)
    run_id = None
    try:
        tab.goto(f"{app.url}/train?{urlencode(config.to_query())}")
        def run_ids() -> list[int]:
            store = RunStore(app.store_dir)
            try:
                return [run.id for run in store.list_runs()]
            finally:
                store.close()

        earlier = set(run_ids())  # an earlier test's run, still newest for a moment, is not this one
        press(tab, "start")
        run_id = wait_until(tab, lambda: next((i for i in run_ids() if i not in earlier), None),
                            "the run to be created")
        closed_at = wait_until(tab, lambda: (newest := latest(app)[1]) is not None and newest >= 20 and newest,
                               "the store to hold step 20 of the run")
        tab.close()
        assert closed_at < total, "the run ended before its tab was closed"
        wait_until(page, lambda: latest_status(app) == "finished", "the run to finish", timeout_s=300)
        store = RunStore(app.store_dir)
        try:
            index = store.snapshot_index(run_id)
        finally:
            store.close()
        steps = [info.step for info in index]
        assert steps[0] == 0 and steps[-1] == total and index[-1].kind == "final"
        gaps = [b - a for a, b in zip(steps, steps[1:], strict=False)]
        assert max(gaps) <= total / 10, f"a gap of {max(gaps)} steps in {steps}"
        # Formation snapshots did it, unwatched: some 30 after step 20 (a few fewer if the tab closed later).
        assert sum(info.kind == "formation" and info.step > closed_at for info in index) >= 15
    finally:
        if not tab.is_closed():
            tab.close()
        if run_id is not None and latest_status(app) in ("running", "paused", "queued"):
            page.goto(f"{app.url}/train?run={run_id}")
            wait_until(page, lambda: shown(page, "stop"), "the run's Stop button")
            stop_run(app, page)


TRACES_JS = """(key) => {
  const frame = document.querySelector('.st-key-' + key + ' iframe');
  const gd = frame && frame.contentDocument && frame.contentDocument.querySelector('.js-plotly-plot');
  if (!gd || !gd._fullData) return null;
  return gd._fullData.map((t) => ({name: t.name, type: t.type,
                                    size: t.z ? t.z.length : (t.x ? t.x.length : 0)}));
}"""


def test_decision_regions_and_forces_are_drawn_on_request(app, page, e2e_output):
    """A paused 2-D run: View ▸ Decision regions shades the classifier's regions under the points, View ▸
    Forces draws arrows on them, in the browser's own chart."""
    try:
        start_run(app, page, feature_dim=2)
        press(page, "pause")
        paused_step(app, page)

        def traces() -> dict[str, dict[str, Any]]:
            return {t["name"]: t for t in page.evaluate(TRACES_JS, "features_chart") or []}

        assert "decision regions" not in traces() and "forces" not in traces()
        for label in ("Decision regions", "Forces"):
            page.locator(".st-key-view_options button").filter(visible=True).first.click()
            page.get_by_text(label, exact=True).filter(visible=True).first.click()
            page.keyboard.press("Escape")
        drawn = wait_until(page, lambda: (found := traces()) and found.get("decision regions", {}).get("size", 0) > 0
                           and found.get("forces", {}).get("size", 0) > 0 and found,
                           "the decision regions and the forces in the feature chart")
        assert drawn["decision regions"]["type"] == "heatmap"
        assert drawn["decision boundaries"]["size"] > 0
        page.locator(".st-key-features_chart").screenshot(path=str(e2e_output / "train_regions_forces.png"))
    finally:
        stop_run(app, page)
