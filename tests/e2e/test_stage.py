"""The Train page's stage in a real browser, on the three screens it is used on, while a run trains: a
projector (1280×720, ``present=1``), a laptop (1400×900) and a narrow window (800×900).

Each test opens the running run in a fresh browser session at its size, waits until the feature chart
has drawn points and the layout holds still, keeps a screenshot (in ``$DMLVIZ_E2E_OUTPUT`` when set, else
in the test's tmp folder, with the measured geometry beside it as JSON) and checks the geometry from the
page: where the feature chart (``.st-key-features_chart``) starts, how much of the first screen it
covers, and, in a narrow window, that the sidebar is closed, the charts take the whole width one under
the other and no control is squeezed or has its label cut.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from dmlviz.config import RunConfig
from dmlviz.store import RunStore

from .test_train_page import chart, press, shown, step
from .waiting import wait_until

pytestmark = pytest.mark.e2e

# A run that trains through every test of the module (the fixture stops it), with class centers to
# draw, and small, frequent snapshots.
RUN = {"dataset": "digits", "loss": "center", "feature_dim": 2, "device": "cpu", "epochs": 100,
       "batch_size": 64, "probe_size": 300, "snapshot_every": 0.25, "snapshot_budget": 0.5}
# Waits on a loaded two-core machine: a fresh session loads plotly.js and the run's first frame.
LOAD_S = 240.0
PAGE_WAIT_MS = 120_000
CHARTS = ("features_chart", "histogram_chart", "curves_chart")

# Boxes in viewport pixels (Streamlit scrolls inside the page; nothing is scrolled here), the viewport,
# the sidebar's state, and the page's controls: widgets whose width the layout sets, and every text that
# ends in an ellipsis because it does not fit ("Nor…").
GEOMETRY_JS = """(keys) => {
  const box = (e) => { if (!e) return null; const r = e.getBoundingClientRect();
                       return {x: r.left, y: r.top, width: r.width, height: r.height}; };
  const visible = (e) => { const r = e.getBoundingClientRect(); return r.width > 0 && r.height > 0; };
  const main = document.querySelector('[data-testid="stMain"]');
  const scopes = [main, ...document.querySelectorAll('[data-testid="stPopoverBody"]')].filter(Boolean);
  const within = (selector) => scopes.flatMap((s) => Array.from(s.querySelectorAll(selector))).filter(visible);
  const name = (e) => (e.innerText || e.getAttribute('aria-label') || e.className || '').trim().slice(0, 60);
  const controls = within('.stSlider, .stSelectSlider, [data-testid="stNumberInput"], .stSelectbox, '
                          + '.stTextInput, .stMultiSelect, [data-testid="stSegmentedControl"]')
    .map((e) => ({name: name(e), ...box(e)}));
  const cut = within('*').filter((e) => getComputedStyle(e).textOverflow === 'ellipsis'
                                       && e.scrollWidth > e.clientWidth + 1).map(name);
  const sidebar = document.querySelector('[data-testid="stSidebar"]');
  const block = document.querySelector('[data-testid="stMainBlockContainer"]');
  const style = block && getComputedStyle(block);
  const content = block && block.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
  const headline = document.querySelector('.st-key-run_status .value');
  return {viewport: {width: window.innerWidth, height: window.innerHeight},
          charts: Object.fromEntries(keys.map((k) => [k, box(document.querySelector('.st-key-' + k))])),
          controls_row: box(document.querySelector('.st-key-controls')),
          sidebar: sidebar && {...box(sidebar), collapsed: sidebar.getAttribute('data-collapsed'),
                               shown: getComputedStyle(sidebar).display !== 'none'},
          content_width: content, controls, cut,
          headline_px: headline ? parseFloat(getComputedStyle(headline).fontSize) : null,
          body_px: parseFloat(getComputedStyle(document.body).fontSize)};
}"""


def covered(chart_box: dict[str, float], viewport: dict[str, int]) -> float:
    """The share of the first screen (the viewport, unscrolled) that the box covers."""
    width = min(chart_box["x"] + chart_box["width"], viewport["width"]) - max(chart_box["x"], 0)
    height = min(chart_box["y"] + chart_box["height"], viewport["height"]) - max(chart_box["y"], 0)
    return max(width, 0) * max(height, 0) / (viewport["width"] * viewport["height"])


@pytest.fixture(scope="module")
def running(app, browser) -> Iterator[str]:
    """A run started from the Train page and training; the URL that opens it (its settings and ``run=N``)."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(PAGE_WAIT_MS)
    try:
        query = RunConfig.from_dict(RUN).to_query()
        page.goto(f"{app.url}/train?{urlencode(query)}")
        press(page, "start")
        wait_until(page, lambda: (state := chart(page)) and state["points"] > 0 and step(page) is not None,
                   "the run's first drawn points", timeout_s=LOAD_S)
        wait_until(page, lambda: "run=" in page.url, "the run's number in the URL")
        yield page.url
    finally:
        store = RunStore(app.store_dir)
        try:
            active = [run for run in store.list_runs() if run.active]
        finally:
            store.close()
        if active and shown(page, "stop"):
            press(page, "stop")
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and any(_status(app, run.id) != "stopped" for run in active):
                page.wait_for_timeout(200)
        context.close()


def _status(app, run_id: int) -> str:
    store = RunStore(app.store_dir)
    try:
        return store.get_run(run_id).status
    finally:
        store.close()


def steady(page, hold_s: float = 1.5) -> dict[str, Any]:
    """The page's geometry once the charts' boxes have held still for ``hold_s`` (the charts' frames take
    their figures' heights a moment after the figures arrive)."""
    def boxes() -> str:
        return json.dumps(page.evaluate(GEOMETRY_JS, list(CHARTS))["charts"])

    last, since = boxes(), time.monotonic()
    deadline = since + LOAD_S
    while time.monotonic() - since < hold_s:
        assert time.monotonic() < deadline, f"the charts never held still: {last}"
        page.wait_for_timeout(100)
        now = boxes()
        if now != last:
            last, since = now, time.monotonic()
    return page.evaluate(GEOMETRY_JS, list(CHARTS))


def open_stage(browser, url: str, width: int, height: int, name: str, output: Path,
               view_options: bool = False) -> dict[str, Any]:
    """Open ``url`` at ``width`` × ``height`` in a new session, wait for the live chart and a step taken
    while it is watched, then keep a screenshot and the geometry (``<name>.png``, ``<name>.json``). With
    ``view_options``, the View popover is opened first, so that its controls are measured and shown too."""
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    page.set_default_timeout(PAGE_WAIT_MS)
    try:
        page.goto(url)
        first = wait_until(page, lambda: (state := chart(page)) and state["points"] > 0 and step(page),
                           "the feature chart's points and the step", timeout_s=LOAD_S)
        wait_until(page, lambda: (step(page) or 0) > first, "the run to train on while the page watches",
                   timeout_s=LOAD_S)
        if view_options:
            page.locator(".st-key-view_options button").filter(visible=True).first.click()
            page.locator('[data-testid="stPopoverBody"]').filter(visible=True).first.wait_for()
        geometry = steady(page)
        page.screenshot(path=str(output / f"{name}.png"))
        (output / f"{name}.json").write_text(json.dumps(geometry, indent=1))
        return geometry
    finally:
        context.close()


def test_projector_the_feature_space_fills_the_screen(browser, running, e2e_output):
    """``present=1`` at 1280×720: the feature chart starts in the top 30 % and covers ≥ 55 % of the screen,
    the histogram beside it, the step and loss in big type, no sidebar."""
    seen = open_stage(browser, running + "&present=1", 1280, 720, "projector-1280x720", e2e_output)
    features, histogram = seen["charts"]["features_chart"], seen["charts"]["histogram_chart"]
    viewport = seen["viewport"]
    assert features["y"] <= 0.30 * viewport["height"], f"the feature chart starts at {features['y']:.0f} px"
    assert covered(features, viewport) >= 0.55, f"the feature chart covers {covered(features, viewport):.0%}"
    assert histogram["y"] < viewport["height"] and histogram["x"] >= features["x"] + features["width"] - 1, \
        f"the histogram is not beside the feature chart on the first screen: {histogram}"
    assert seen["sidebar"] is None or not seen["sidebar"]["shown"], "the sidebar shows on a projector"
    assert seen["headline_px"] is not None and seen["headline_px"] >= 2 * seen["body_px"], \
        f"the step and loss are not in big type ({seen['headline_px']} px)"
    assert not seen["cut"], f"cut labels: {seen['cut']}"


def test_a_full_hd_projector_is_filled_too(browser, running, e2e_output):
    """``present=1`` at 1920×1080: the charts grow with the screen (not 620 px in a 1080 px window) and
    still end on the first screen."""
    seen = open_stage(browser, running + "&present=1", 1920, 1080, "projector-1920x1080", e2e_output)
    features, histogram = seen["charts"]["features_chart"], seen["charts"]["histogram_chart"]
    viewport = seen["viewport"]
    assert features["height"] >= 0.8 * viewport["height"], f"the feature chart is {features['height']:.0f} px high"
    assert features["y"] + features["height"] <= viewport["height"], "the feature chart runs off the screen"
    assert histogram["height"] >= 0.7 * viewport["height"], f"the histogram is {histogram['height']:.0f} px high"
    assert covered(features, viewport) >= 0.55, f"the feature chart covers {covered(features, viewport):.0%}"


def test_laptop_the_feature_space_starts_near_the_top(browser, running, e2e_output):
    """1400×900 with the sidebar open: the feature chart starts in the top 45 % and covers ≥ 30 % of the
    screen; the histogram starts on the first screen too."""
    seen = open_stage(browser, running, 1400, 900, "laptop-1400x900", e2e_output)
    features, histogram = seen["charts"]["features_chart"], seen["charts"]["histogram_chart"]
    viewport = seen["viewport"]
    assert seen["sidebar"]["collapsed"] == "false", "the sidebar is closed on a laptop"
    assert features["y"] <= 0.45 * viewport["height"], f"the feature chart starts at {features['y']:.0f} px"
    assert covered(features, viewport) >= 0.30, f"the feature chart covers {covered(features, viewport):.0%}"
    assert histogram["y"] < 0.5 * viewport["height"], f"the histogram starts at {histogram['y']:.0f} px"
    assert not seen["cut"], f"cut labels: {seen['cut']}"


def test_narrow_window_charts_take_the_width(browser, running, e2e_output):
    """800×900: the sidebar starts closed, the charts take the whole width one under the other, and no
    chart or control is narrower than 300 px or has its label cut."""
    seen = open_stage(browser, running, 800, 900, "narrow-800x900", e2e_output)
    # The view options, in their popover, in a window as narrow.
    options = open_stage(browser, running, 800, 900, "narrow-800x900-view", e2e_output, view_options=True)
    charts, sidebar = seen["charts"], seen["sidebar"]
    assert sidebar["collapsed"] == "true" and sidebar["x"] + sidebar["width"] <= 0, f"the sidebar is open: {sidebar}"
    for key, box in charts.items():
        assert box["width"] >= max(300, 0.95 * seen["content_width"]), f"{key} is {box['width']:.0f} px wide"
    features, histogram = charts["features_chart"], charts["histogram_chart"]
    assert histogram["y"] >= features["y"] + features["height"] - 1, "the histogram is not under the feature chart"
    assert features["y"] <= 0.45 * seen["viewport"]["height"], f"the feature chart starts at {features['y']:.0f} px"
    assert any(c["name"].startswith("Trail") for c in options["controls"]), "the View popover shows no Trail"
    narrow = [c for c in seen["controls"] + options["controls"] if c["width"] < 300]
    assert not narrow, f"controls narrower than 300 px: {narrow}"
    assert not seen["cut"] and not options["cut"], f"cut labels: {seen['cut'] + options['cut']}"
