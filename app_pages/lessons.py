"""Lessons: one step of a lesson on screen, made for a projector.

The step's picture takes the screen (no sidebar, no header, as ``present=1`` on Train) and its words stand
beside it in large type; Previous and Next, or the arrow keys, move through the steps; the lesson and the
step live in the URL (``lesson=<key>&step=<n>``). The picture is the step's ready replay (any finished run
of the store with its settings, ``lessons.recording``), which starts playing at once as a video; "Interactive"
swaps it for the plotly replay; "Train it live" starts the same settings on the Train or Compare page.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import streamlit as st

from dmlviz import lessons
from dmlviz.config import ConfigError
from dmlviz.runner import QueueFull
from dmlviz.store import StoreError
from dmlviz.view import ComparisonView, RunView
from ui import live
from ui.job import job
from ui.plotly_live import live_plotly_chart
from ui.resources import runner, store, visitor

PICTURE_FILL = 0.8  # the picture's share of the window's height
_STYLE = """<style>
body:has(.st-key-lesson_controls) :is([data-testid="stSidebar"], [data-testid="stExpandSidebarButton"], header)
  {display: none !important}
[data-testid="stMainBlockContainer"]:has(.st-key-lesson_controls) {padding: 1rem 1.5rem 2rem; max-width: none}
.st-key-lesson_movie video {max-height: 80vh; width: auto; max-width: 100%; display: block; margin: 0 auto}
.st-key-lesson_text h3 {font-size: 2rem; line-height: 1.2}
.st-key-lesson_text p, .st-key-lesson_text li {font-size: 1.45rem; line-height: 1.45}
@media (max-width: 900px) {
  .st-key-lesson_stage [data-testid="stHorizontalBlock"] {flex-direction: column}
  .st-key-lesson_stage [data-testid="stColumn"] {width: 100% !important; flex: 1 1 auto !important}
}
</style>"""
# The arrow keys press Previous and Next (not while typing, and only on this page), also after a click on the
# Interactive toggle or the video. Added once per tab.
_KEYS = """<script>
(() => {
  if (window.__dmlvizLessonKeys) return;
  window.__dmlvizLessonKeys = true;
  document.addEventListener("keydown", (event) => {
    const typing = event.target.closest("textarea, select, input:not([type=checkbox]):not([type=radio])");
    if (!document.querySelector(".st-key-lesson_controls") || typing) return;
    const key = {ArrowRight: "lesson_next", ArrowLeft: "lesson_previous"}[event.key];
    const button = key && document.querySelector(`.st-key-${key} button:not([disabled])`);
    if (button) { event.preventDefault(); button.click(); }
  });
})();
</script>"""


def go(key: str, number: int) -> None:
    st.query_params.update(lesson=key, step=str(number))


def picked() -> None:
    go(st.session_state["lesson_pick"], 1)


def chosen(found: list[lessons.Lesson]) -> tuple[lessons.Lesson, int]:
    """The lesson and step (from 1) the URL names, or the first of them."""
    by_key = {lesson.key: lesson for lesson in found}
    lesson = by_key.get(st.query_params.get("lesson", ""), found[0])
    try:
        number = int(st.query_params.get("step", "1"))
    except ValueError:
        number = 1
    return lesson, min(max(number, 1), len(lesson.steps))


def page() -> None:
    st.html(_STYLE + _KEYS, unsafe_allow_javascript=True)
    found, broken = lessons.all_lessons()
    if not found:
        st.info("No lessons: the built-in ones are missing from this installation.")
        return
    lesson, number = chosen(found)
    step = lesson.steps[number - 1]
    try:
        ids = lessons.recording(store(), step)
    except StoreError as error:
        st.error(f"The stored runs cannot be read: {error}")
        return
    st.session_state["lesson_pick"] = lesson.key
    with st.container(horizontal=True, vertical_alignment="center", key="lesson_controls"):
        st.page_link("app_pages/home.py", label="Home", icon=":material/home:")
        st.selectbox("Lesson", [item.key for item in found], key="lesson_pick", on_change=picked, width=300,
                     format_func=lambda key: next(item.title for item in found if item.key == key),
                     label_visibility="collapsed")
        st.button("Previous", key="lesson_previous", icon=":material/arrow_back:", disabled=number == 1,
                  on_click=go, args=(lesson.key, number - 1))
        st.markdown(f"**{number} / {len(lesson.steps)}**")
        st.button("Next", key="lesson_next", icon=":material/arrow_forward:", disabled=number == len(lesson.steps),
                  on_click=go, args=(lesson.key, number + 1))
        live_button(step)
        if ids is not None and len(ids) == 1:
            st.toggle("Interactive", key="lesson_interactive", help="The replay as a chart to turn, zoom and scrub "
                      "(with the distance histogram) in place of the video, which starts at once.")
    for error in broken:
        st.warning(f"The lesson file {error.path.name} is left out: " + "; ".join(error.problems))
    with st.container(key="lesson_stage"):
        left, right = st.columns([3, 1])
    with right, st.container(key="lesson_text"):
        st.markdown(f"### {step.title}")
        st.markdown(step.text)
    with left:
        if ids is None:
            waiting(lesson, number, step)
        else:
            picture(ids, step)


def live_button(step: lessons.LessonStep) -> None:
    """Train the step's settings live, on the Train page (one run) or the Compare page (several)."""
    if not st.button("Train it live", key="lesson_live", type="primary", icon=":material/play_arrow:"):
        return
    if step.run is not None:
        live.start_run(step.run)
        st.switch_page("app_pages/train.py", query_params=step.run.to_query())
    job("compare").start(step.comparison.configs())
    st.switch_page("app_pages/compare.py", query_params=step.comparison.to_query())


def picture(ids: list[int], step: lessons.LessonStep) -> None:
    """The step's ready replay, playing: its video, or the interactive chart (a comparison's is a chart)."""
    movie = lessons.movie(store(), ids, step)
    if movie is None and len(ids) == 1:
        make_movie_soon(ids, step)
    if movie is not None and not st.session_state.get("lesson_interactive"):
        with st.container(key="lesson_movie"):
            st.video(str(movie), autoplay=True, muted=True)
        return
    # A finished run never changes: its picture is made once for every visitor (a class opens the same step).
    made = tuple(store().get_run(run_id).finished_at for run_id in ids)
    spec = step_picture(tuple(ids), made, tuple(sorted(step.view.items())), step.stop_at)
    live_plotly_chart(spec, key="lesson_chart", autoplay=len(ids) == 1, fill=PICTURE_FILL)


@st.cache_resource(show_spinner=False)
def _movie_maker() -> tuple[ThreadPoolExecutor, set[Path]]:
    """One thread for the whole server that makes the videos of steps recorded here, and what it was given."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="lesson-movie"), set()


def make_movie_soon(ids: list[int], step: lessons.LessonStep) -> None:
    """A step recorded on this server (Record this step) plays as a chart until its video is made here."""
    if store().read_only:
        return
    maker, given = _movie_maker()
    path = lessons.movie_path(store(), ids[0], step)
    if path not in given:
        given.add(path)
        maker.submit(lessons.make_movie, store(), ids, step)


@st.cache_resource(max_entries=32, show_spinner=False)
def step_picture(ids: tuple[int, ...], made: tuple[float | None, ...], view: tuple, stop_at: int | None) -> str:
    """The plotly JSON of a step's recording: one run's replay, or several runs' feature spaces side by side
    at their last snapshot (up to ``stop_at``). ``made`` tells a run recorded again under the same id apart."""
    if len(ids) == 1:
        run = RunView(store(), ids[0])
        options = replace(run.default_options(), **dict(view))
        return run.replay(options, max_frames=lessons.REPLAY_FRAMES, until=stop_at).to_json()
    runs = ComparisonView(store(), list(ids))
    options = replace(runs.views[0].default_options(), **dict(view))
    indexes = runs.indexes()
    steps = [s for s in runs.steps(indexes) if stop_at is None or s <= stop_at] or runs.steps(indexes)[:1]
    return runs.frame(indexes, steps[-1], options).features_figure.to_json()


def waiting(lesson: lessons.Lesson, number: int, step: lessons.LessonStep) -> None:
    """A step with no ready replay yet: record it here in the background, or all of them from a terminal."""
    st.info(f"This step has no recording yet. Record it here (it trains in the background; the picture plays "
            f"as soon as it has finished), press **Train it live**, or record every step of every lesson "
            f"beforehand with `python -m dmlviz lessons build {lesson.key}`.")
    if st.button("Record this step", key="lesson_record", icon=":material/fiber_manual_record:"):
        try:
            runner().submit_together(step.configs(), visitor=visitor())
        except (ConfigError, QueueFull, StoreError) as error:
            st.warning(f"Not started: {error}")

    @st.fragment(run_every=2.0)
    def ready() -> None:
        if lessons.recording(store(), step) is not None:
            st.rerun()

    ready()


page()
