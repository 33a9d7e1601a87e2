"""The Compare page in a real browser: a two-loss comparison launched from a preset's link, both panels
filling with points, the table listing both runs, and the one timeline moving every panel; and three
3-D runs on a laptop's screen (1400×900), measured: the panels' widths, the histogram's plot area, the
table's fit and the scenes' tick labels (the numbers go to ``compare_three_runs.json`` beside the pictures).

DOM contract: the grid is the chart keyed ``compare_chart`` (one plotly figure, a subplot per run,
titled "<loss> · step N"), the histogram ``compare_histogram``, the table ``compare_table`` and the Start
button ``compare_start``.
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest

from dmlviz.comparison import Comparison, get_comparison_preset

from .waiting import wait_until

pytestmark = pytest.mark.e2e

GRID_JS = """() => {
  const frame = document.querySelector('.st-key-compare_chart iframe');
  const gd = frame && frame.contentDocument && frame.contentDocument.querySelector('.js-plotly-plot');
  if (!gd || !gd._fullData || !gd._fullLayout) return null;
  const points = {};
  for (const t of gd._fullData) {
    if (!t._input || t._input.customdata == null) continue;
    points[t.xaxis] = (points[t.xaxis] || 0) + (t.x ? t.x.length : 0);
  }
  return {points, titles: (gd._fullLayout.annotations || []).map((a) => a.text)};
}"""
TABLE_JS = "() => { const e = document.querySelector('.st-key-compare_table'); return e ? e.innerText : null; }"
WAIT_S = 90.0


def test_a_preset_comparison_trains_both_losses_side_by_side_and_scrubs_together(app, page, e2e_output):
    preset = get_comparison_preset("softmax-vs-center").comparison()
    small = preset.shared.replace(dataset="digits", device="cpu", steps=150, batch_size=64, probe_size=300,
                                  snapshot_every=0.25)
    page.goto(f"{app.url}/compare?{urlencode(Comparison(small, preset.losses).to_query())}")
    page.locator(".st-key-compare_start button").filter(visible=True).first.click()

    grid = wait_until(page, lambda: (g := page.evaluate(GRID_JS)) and len(g["points"]) == 2
                      and all(n == 300 for n in g["points"].values()) and g, "points in both panels", WAIT_S)
    assert [t.split(" · ")[0] for t in grid["titles"]] == ["softmax", "center"]
    table = wait_until(page, lambda: (t := page.evaluate(TABLE_JS)) and t.count("finished") == 2 and t,
                       "both runs to finish", timeout_s=180)
    assert "softmax" in table and "center" in table
    final = wait_until(page, lambda: (g := page.evaluate(GRID_JS)) and all("step 150" in t for t in g["titles"])
                       and g, "the final step in both panels", WAIT_S)
    assert len(final["titles"]) == 2

    # The one timeline: back to the first step moves both panels there.
    slider = page.locator(".st-key-compare_timeline input[type='range']")
    slider.focus()
    page.keyboard.press("Home")
    wait_until(page, lambda: (g := page.evaluate(GRID_JS)) and all(t.endswith("step 0") for t in g["titles"]),
               "both panels at step 0", WAIT_S)
    page.screenshot(path=str(e2e_output / "compare_page.png"), full_page=True)


# Boxes inside a chart's frame (frame pixels): the whole chart (``.main-svg``), each 2-D plot area
# (``.nsewdrag``, by subplot) and each 3-D scene (the ``div`` that holds it); and the scenes' tick labels
# as the layout asks for them (plotly draws 3-D ticks in WebGL, out of the DOM's reach).
CHART_JS = """(key) => {
  const frame = document.querySelector('.st-key-' + key + ' iframe');
  const doc = frame && frame.contentDocument;
  const gd = doc && doc.querySelector('.js-plotly-plot');
  if (!gd || !gd._fullLayout) return null;
  const box = (e) => { const r = e.getBoundingClientRect(); return {x: r.left, y: r.top, width: r.width,
                                                                    height: r.height}; };
  const layout = gd._fullLayout;
  const scenes = Object.keys(layout).filter((k) => /^scene\\d*$/.test(k));
  const axis = (a) => ({showticklabels: a.showticklabels, tickvals: a.tickvals || null, title: a.title.text});
  return {chart: box(gd.querySelector('.main-svg')),
          plots: Array.from(gd.querySelectorAll('.nsewdrag')).map((e) => ({subplot: e.dataset.subplot, ...box(e)})),
          scenes: Object.fromEntries(scenes.map((s) => [s, {
            ...box(layout[s]._scene.container), axes: ['xaxis', 'yaxis', 'zaxis'].map((k) => axis(layout[s][k]))}]))};
}"""
# The table's container and table, and every cell whose text does not fit it.
TABLE_BOX_JS = """() => {
  const outer = document.querySelector('.st-key-compare_table');
  const table = outer && outer.querySelector('table');
  if (!table) return null;
  const box = (e) => { const r = e.getBoundingClientRect(); return {x: r.left, width: r.width}; };
  const scroller = (e) => { for (; e && e !== outer.parentElement; e = e.parentElement) {
                              const s = getComputedStyle(e).overflowX;
                              if ((s === 'auto' || s === 'scroll') && e.scrollWidth > e.clientWidth) return true; }
                            return false; };
  const cut = Array.from(table.querySelectorAll('th, td')).filter((c) => c.scrollWidth > c.clientWidth + 1)
    .map((c) => c.innerText);
  return {container: box(outer), table: box(table), scrolls: scroller(table), cut,
          headers: Array.from(table.querySelectorAll('thead th')).map((c) => c.innerText)};
}"""
SMALL_SCREEN = {"width": 1400, "height": 900}


def settled(page, key: str, ready) -> dict:
    """The chart's boxes once it is ``ready`` and two reads in a row agree (a redraw lays it out anew)."""
    last = None

    def check() -> dict | None:
        nonlocal last
        now = page.evaluate(CHART_JS, key)
        agreed = now is not None and ready(now) and now == last
        last = now
        return now if agreed else None

    return wait_until(page, check, f"the chart {key} to be drawn and hold still", WAIT_S)


def test_three_runs_fit_a_laptop_screen(app, browser, e2e_output):
    """At 1400×900, three 3-D runs: each panel at least 300 px wide, the histogram's plot most of its
    chart, the whole table readable, and no tick labels on the spheres."""
    preset = get_comparison_preset("sphere-margins").comparison()
    small = preset.shared.replace(dataset="digits", device="cpu", steps=20, batch_size=32, probe_size=200,
                                  snapshot_every=0.25)
    context = browser.new_context(viewport=SMALL_SCREEN)
    page = context.new_page()
    page.set_default_timeout(60_000)
    try:
        page.goto(f"{app.url}/compare?{urlencode(Comparison(small, preset.losses).to_query())}")
        page.locator(".st-key-compare_start button").filter(visible=True).first.click()
        page.mouse.move(SMALL_SCREEN["width"] // 2, 5)  # no button's tooltip in the pictures
        wait_until(page, lambda: (t := page.evaluate(TABLE_JS)) and t.count("finished") == 3 and "images/s" in t,
                   "the three runs to finish", timeout_s=420)
        # A chart that is being mounted again holds its scenes at plotly's first 100 px for a moment.
        grid = settled(page, "compare_chart",
                       lambda g: len(g["scenes"]) == 3 and min(s["width"] for s in g["scenes"].values()) > 100)
        histogram = settled(page, "compare_histogram", lambda h: bool(h["plots"]))
        table = page.evaluate(TABLE_BOX_JS)
        page.screenshot(path=str(e2e_output / "compare_three_runs.png"))  # the first screen
        # The page scrolls inside Streamlit's own container, out of a full-page picture's reach.
        for key in ("chart", "table", "histogram"):
            page.locator(f".st-key-compare_{key}").screenshot(path=str(e2e_output / f"compare_three_runs_{key}.png"))
    except Exception:
        page.screenshot(path=str(e2e_output / "failed-three-runs.png"))
        raise
    finally:
        context.close()

    plot, chart = histogram["plots"][0], histogram["chart"]
    share = plot["width"] * plot["height"] / (chart["width"] * chart["height"])
    geometry = {"panel_widths": [round(s["width"]) for s in grid["scenes"].values()],
                "histogram_plot": [round(plot["width"]), round(plot["height"])],
                "histogram_chart": [round(chart["width"]), round(chart["height"])],
                "histogram_plot_share": round(share, 3), "table": table}
    (e2e_output / "compare_three_runs.json").write_text(json.dumps(geometry, indent=2))
    print(f"\ngeometry: {json.dumps(geometry)}")
    assert all(width >= 300 for width in geometry["panel_widths"]), geometry
    assert share >= 0.6, geometry
    assert not table["cut"], geometry
    assert table["table"]["x"] + table["table"]["width"] <= table["container"]["x"] + table["container"]["width"] + 1 \
        or table["scrolls"], geometry
    for scene in grid["scenes"].values():
        for axis in scene["axes"]:
            assert not axis["showticklabels"] or axis["tickvals"] is not None, scene
