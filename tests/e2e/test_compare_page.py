"""The Compare page in a real browser: a two-loss comparison launched from a preset's link, both panels
filling with points, the table listing both runs, and the one timeline moving every panel.

DOM contract: the grid is the chart keyed ``compare_chart`` (one plotly figure, a subplot per run,
titled "<loss> · step N"), the table ``compare_table`` and the Start button ``compare_start``.
"""

from __future__ import annotations

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
    slider = page.locator(".st-key-compare_step input[type='range']")
    slider.focus()
    page.keyboard.press("Home")
    wait_until(page, lambda: (g := page.evaluate(GRID_JS)) and all(t.endswith("step 0") for t in g["titles"]),
               "both panels at step 0", WAIT_S)
    page.screenshot(path=str(e2e_output / "compare_page.png"), full_page=True)
