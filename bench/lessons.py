"""How fast a lesson's recorded step plays on the Lessons page (``python -m bench.lessons``).

1. Recording: a built-in step (default: the first step of *From softmax to margins*, softmax petals on
   MNIST) trained as ``python -m dmlviz lessons build`` trains it, then its video made; the seconds of
   each, the video's size and the run's share of the store.
2. Opening: the app served on a loopback port, Chromium at a projector's 1280 × 720. The first open after
   the server started (its first page imports torch and the pages), then fresh browser sessions (empty
   cache, as a new visitor) on the warm server: seconds from the navigation to the video playing
   (``currentTime`` > 0), split into the page's shell and its first controls.
3. Interactive: in each fresh session, from the click on **Interactive** to the plotly replay playing
   (its slider past the first frame): what the video spares a class.

Results are printed and written to ``bench/results/lessons.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path
from statistics import median

from bench.appserver import CHROMIUM_FLAGS, chromium_path, serve
from dmlviz import lessons
from dmlviz.engine import FreeRunning
from dmlviz.store import RunStore

RESULTS = Path(__file__).parent / "results" / "lessons.json"
VIEWPORT = {"width": 1280, "height": 720}
# What the page shows so far: the app's shell, the lesson's controls, the video playing, the replay playing.
STATE_JS = """() => {
  const video = document.querySelector('.st-key-lesson_movie video');
  const frame = document.querySelector('.st-key-lesson_chart iframe');
  const gd = frame && frame.contentDocument && frame.contentDocument.querySelector('.js-plotly-plot');
  const sliders = gd && gd._fullLayout && gd._fullLayout.sliders;
  return {shell: Boolean(document.querySelector('[data-testid="stMain"]')),
          controls: Boolean(document.querySelector('.st-key-lesson_controls')),
          video: Boolean(video && !video.paused && video.currentTime > 0),
          replay: Boolean(sliders && sliders.length && sliders[0].active > 0)};
}"""


def record(store_dir: Path, data_dir: Path, lesson_key: str, number: int) -> tuple[lessons.Lesson, dict]:
    """Train the step into a new store and make its video, as ``lessons build`` does; what each took."""
    found, _ = lessons.all_lessons(data_dir)
    lesson = next(item for item in found if item.key == lesson_key)
    step = lesson.steps[number - 1]
    store = RunStore(store_dir)
    try:
        started = time.perf_counter()
        lessons.record(step, step.title, store, data_dir, FreeRunning())
        total = time.perf_counter() - started
        ids = lessons.recording(store, step)
        path = lessons.movie(store, ids, step)
        # The video again, alone, to split its share of the recording off.
        path.unlink()
        started = time.perf_counter()
        lessons.make_movie(store, ids, step)
        video_s = time.perf_counter() - started
        store_bytes = sum(file.stat().st_size for file in store_dir.rglob("*") if file.is_file())
        return lesson, {"step": f"{lesson.title} · {number}. {step.title}", "train_s": round(total - video_s, 1),
                        "video_s": round(video_s, 2), "video_bytes": path.stat().st_size,
                        "store_bytes": store_bytes - path.stat().st_size}
    finally:
        store.close()


def timeline(page, until: str, ceiling_s: float = 60.0) -> dict[str, float]:
    """Seconds from now to each part of ``STATE_JS`` first being true, until ``until`` is."""
    started, seen = time.monotonic(), {}
    while until not in seen:
        if time.monotonic() - started > ceiling_s:
            raise TimeoutError(f"{until} not within {ceiling_s:g} s (seen: {seen})")
        try:
            state = page.evaluate(STATE_JS)
        except Exception:  # noqa: BLE001 — the page is between documents
            state = {}
        for part, done in state.items():
            if done and part not in seen:
                seen[part] = round(time.monotonic() - started, 2)
        time.sleep(0.02)
    return seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True, help="where MNIST is (as the app's data folder)")
    parser.add_argument("--lesson", default="1-from-softmax-to-margins")
    parser.add_argument("--step", type=int, default=1)
    parser.add_argument("--sessions", type=int, default=5, help="fresh browser sessions on the warm server")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    root = Path(tempfile.mkdtemp(prefix="bench-lessons-"))
    store_dir = root / "store"
    lesson, recorded = record(store_dir, args.data_dir, args.lesson, args.step)
    print(json.dumps(recorded))
    url = f"/lessons?lesson={lesson.key}&step={args.step}"
    opens, interactive = [], []
    with serve(store_dir, args.data_dir, root / "server.log") as server, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=list(CHROMIUM_FLAGS))
        for session in range(args.sessions + 1):
            context = browser.new_context(viewport=VIEWPORT)
            page = context.new_page()
            page.goto(server.url + url, wait_until="commit")
            opened = timeline(page, "video")
            page.locator(".st-key-lesson_interactive label").first.click()
            played = timeline(page, "replay")["replay"]
            context.close()
            print(f"{'first open' if session == 0 else f'session {session}'}: {opened}, interactive {played} s")
            opens.append(opened)
            if session:
                interactive.append(played)
        browser.close()
    warm = opens[1:]
    results = {
        "machine": f"{platform.machine()}, {platform.processor() or platform.system()}",
        "viewport": VIEWPORT, "recording": recorded,
        "first_open_s": opens[0],
        "fresh_session_video_s": {"median": median(o["video"] for o in warm), "all": [o["video"] for o in warm],
                                  "shell_median": median(o["shell"] for o in warm),
                                  "controls_median": median(o["controls"] for o in warm)},
        "interactive_replay_s": {"median": median(interactive), "all": interactive},
    }
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
