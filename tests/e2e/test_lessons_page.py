"""The Lessons page at a projector's 1280 × 720: a recorded step plays at once (its video), the interactive
replay plays on demand, the arrow keys move through the steps, and a step starts live."""

from __future__ import annotations

import time

import pytest

from dmlviz import lessons
from dmlviz.engine import FreeRunning
from dmlviz.store import RunStore
from tests.e2e.waiting import wait_until

LESSON = """\
title: Digits in two steps
summary: A replay, then a comparison.
steps:
  - title: Softmax on digits
    text: The petals form.
    run: {dataset: digits, device: cpu, steps: 60, probe_size: 200, snapshot_steps: 5}
    view: {regions: true}
  - title: Two losses
    text: Softmax beside the center loss.
    compare: {loss1: softmax, loss2: center, dataset: digits, device: cpu, steps: 30, probe_size: 200}
  - title: Not recorded
    text: Trained live only.
    run: {dataset: digits, device: cpu, steps: 2000, probe_size: 200, seed: 7}
"""
# The step's video: how far it has played.
VIDEO_JS = """() => {
  const video = document.querySelector('.st-key-lesson_movie video');
  return video && !video.paused && video.currentTime > 0 ? video.currentTime : null;
}"""
# The replay's slider: which frame plays now (plotly moves it along as the animation runs).
PLAYING_JS = """() => {
  const frame = document.querySelector('.st-key-lesson_chart iframe');
  const gd = frame && frame.contentDocument && frame.contentDocument.querySelector('.js-plotly-plot');
  if (!gd || !gd._fullLayout || !gd._fullLayout.sliders || !gd._fullLayout.sliders.length) return null;
  return {active: gd._fullLayout.sliders[0].active, frames: (gd._transitionData._frames || []).length};
}"""
# After the replay has played to its end: the extent of the drawn regions and of the drawn boundaries.
REGIONS_JS = """() => {
  const frame = document.querySelector('.st-key-lesson_chart iframe');
  const gd = frame && frame.contentDocument && frame.contentDocument.querySelector('.js-plotly-plot');
  const frames = gd && gd._transitionData && gd._transitionData._frames;
  if (!frames || !frames.length || gd._fullLayout.sliders[0].active !== frames.length - 1) return null;
  const regions = gd._fullData.find((t) => t.name === 'decision regions');
  const lines = gd._fullData.find((t) => t.name === 'decision boundaries');
  if (!regions || !lines) return null;
  const xs = Array.from(regions.x), ys = Array.from(regions.y), dx = xs[1] - xs[0], dy = ys[1] - ys[0];
  const finite = (values) => Array.from(values).filter(Number.isFinite);
  return {regions: [xs[0] - dx / 2, xs[xs.length - 1] + dx / 2, ys[0] - dy / 2, ys[ys.length - 1] + dy / 2],
          lines: [Math.min(...finite(lines.x)), Math.max(...finite(lines.x)),
                  Math.min(...finite(lines.y)), Math.max(...finite(lines.y))]};
}"""
CHART_JS = """() => {
  const frame = document.querySelector('.st-key-lesson_chart iframe');
  const gd = frame && frame.contentDocument && frame.contentDocument.querySelector('.js-plotly-plot');
  return Boolean(gd && gd._fullData && gd._fullData.length);
}"""


@pytest.fixture(scope="module")
def recorded(app):
    """The lesson in the app's data folder, its first two steps recorded in the app's store."""
    folder = app.data_dir / lessons.USER_FOLDER
    folder.mkdir(exist_ok=True)
    (folder / "digits.yaml").write_text(LESSON)
    lesson = lessons.load(folder / "digits.yaml")
    store = RunStore(app.store_dir)
    try:
        for step in lesson.steps[:2]:
            lessons.record(step, step.title, store, app.data_dir, FreeRunning())
    finally:
        store.close()
    return lesson


def test_a_recorded_step_plays_at_once_and_the_arrow_keys_move_through_the_lesson(app, page, recorded, e2e_output):
    page.set_viewport_size({"width": 1280, "height": 720})
    opened = time.monotonic()
    page.goto(f"{app.url}/lessons?lesson=digits&step=1")
    wait_until(page, lambda: page.evaluate(VIDEO_JS), "the first step's video to play")
    seconds = time.monotonic() - opened
    print(f"the recorded step played {seconds:.1f} s after the page was opened")
    assert page.get_by_text("The petals form.").is_visible()
    assert not page.locator('[data-testid="stSidebar"]').is_visible()  # a projector's page: the picture first
    box = page.locator(".st-key-lesson_movie video").bounding_box()
    assert box["y"] + box["height"] <= 720 and box["height"] >= 0.6 * 720, box  # large, and all on screen
    page.screenshot(path=str(e2e_output / "lessons_1280x720.png"))

    # Interactive: the replay as a chart, playing, its regions moving with the frames.
    page.locator(".st-key-lesson_interactive label").first.click()
    played = wait_until(page, lambda: (state := page.evaluate(PLAYING_JS)) and state["active"] > 0 and state,
                        "the interactive replay to play")
    assert played["frames"] > 5
    # At the end, the shading holds the boundaries drawn with it.
    drawn = wait_until(page, lambda: page.evaluate(REGIONS_JS), "the replay to reach its last frame")
    (x0, x1, y0, y1), (lx0, lx1, ly0, ly1) = drawn["regions"], drawn["lines"]
    assert x0 - 1e-3 <= lx0 and lx1 <= x1 + 1e-3 and y0 - 1e-3 <= ly0 and ly1 <= y1 + 1e-3, drawn
    page.locator(".st-key-lesson_interactive label").first.click()
    wait_until(page, lambda: page.evaluate(VIDEO_JS), "the video again, with Interactive off")

    page.keyboard.press("ArrowRight")
    wait_until(page, lambda: "step=2" in page.url and page.get_by_text("Softmax beside the center loss.").is_visible()
               and page.evaluate(CHART_JS), "the second step, a comparison, after the right arrow")
    page.keyboard.press("ArrowRight")
    wait_until(page, lambda: "step=3" in page.url and page.get_by_text("This step has no recording yet").is_visible(),
               "the third step, not recorded, after the right arrow")
    page.keyboard.press("ArrowLeft")
    wait_until(page, lambda: "step=2" in page.url, "the second step again after the left arrow")
    page.keyboard.press("ArrowLeft")
    moved = time.monotonic()
    wait_until(page, lambda: "step=1" in page.url and page.evaluate(VIDEO_JS), "the first step's video again")
    print(f"the recorded step played {time.monotonic() - moved:.1f} s after the left arrow")


def test_train_it_live_starts_the_step_on_the_train_page(app, page, recorded):
    store = RunStore(app.store_dir)
    try:
        before = len(store.list_runs())
        page.goto(f"{app.url}/lessons?lesson=digits&step=3")
        page.locator(".st-key-lesson_live button").filter(visible=True).first.click()
        wait_until(page, lambda: "/train" in page.url, "the Train page")
        wait_until(page, lambda: len(store.list_runs()) > before, "the step's run to start")
        newest = store.list_runs()[0]
        assert newest.config["seed"] == 7 and newest.config["steps"] == 2000
        wait_until(page, lambda: page.locator(".st-key-stop button").filter(visible=True).count() > 0,
                   "the live run's Stop button")
        page.locator(".st-key-stop button").filter(visible=True).first.click()
        wait_until(page, lambda: store.get_run(newest.id).status == "stopped", "the live run to stop")
    finally:
        store.close()
