"""The live view of a comparison: one set of controls for all its runs, synchronised feature panels,
overlaid histograms and curves, a table of numbers, one timeline, and the exports.

Runs launched here train together in one worker (``Runner.submit_together``), so one control drives
them all and their snapshots share steps; stored runs picked here are shown on the same timeline.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dmlviz.comparison import Comparison
from dmlviz.config import ConfigError
from dmlviz.runner import QueueFull
from dmlviz.status import RunStatus
from dmlviz.store import StoreError
from dmlviz.view import TABLE_METRICS, ComparisonView
from ui.live import CURVES_EVERY_S, QUEUED_REFRESH_S, REFRESH_S, cached
from ui.plotly_live import live_plotly_chart
from ui.resources import owns, runner, store, visitor

IDS = "compare_ids"  # the runs on screen, in session state
# The page's sides narrow to the Train page's (and only on this page: the style goes with it), so three
# feature panels of a laptop's screen (1400 px, the sidebar open) are each over 300 px wide.
_LAYOUT_STYLE = """<style>
[data-testid="stMainBlockContainer"]:has(.st-key-compare_controls) {padding-left: 1.5rem; padding-right: 1.5rem;
                                                                    max-width: none}
@media (max-width: 900px) {
  [data-testid="stMainBlockContainer"]:has(.st-key-compare_controls) {padding-left: 1rem; padding-right: 1rem}
}
</style>"""


def start(comparison: Comparison) -> None:
    try:
        ids = runner().submit_together(comparison.configs(), visitor=visitor())
    except (ConfigError, QueueFull, StoreError) as error:  # a server's limits, its share, a full disk
        st.session_state["compare_error"] = f"Not started: {error}"
        return
    show(ids, command="run")


def show(ids: list[int], command: str | None = None) -> None:
    """Put these runs on screen (``command``: the last one this session gave them)."""
    st.session_state[IDS] = list(ids)
    st.session_state["compare_command"] = command
    st.session_state.pop("compare_view", None)
    st.session_state.pop("compare_selected", None)
    st.session_state.pop("compare_step", None)


def _controlled(ids: list[int]) -> bool:
    """Whether this app drives the runs and this visitor may (on a public server, the one who started them)."""
    active = runner().active_runs()
    try:
        return bool(ids) and all(run_id in active and owns(store().get_run(run_id).owner) for run_id in ids)
    except StoreError:  # deleted meanwhile
        return False


def _command(action: str) -> None:
    ids = st.session_state.get(IDS) or []
    try:
        getattr(runner(), action)(ids[0])  # one control drives the runs trained together
    except KeyError:
        st.session_state["compare_error"] = "These runs are no longer controlled by this app."
        return
    st.session_state["compare_command"] = {"resume": "run", "step": "pause"}.get(action, action)


def controls(comparison: Comparison | None) -> None:
    ids = st.session_state.get(IDS) or []
    controlled = _controlled(ids)
    command = st.session_state.get("compare_command")
    st.html(_LAYOUT_STYLE)  # style only: it takes no place on the page
    with st.container(horizontal=True, vertical_alignment="center", key="compare_controls"):
        if not controlled:
            st.button("Start all", key="compare_start", type="primary", icon=":material/play_arrow:",
                      disabled=comparison is None, on_click=start, args=(comparison,),
                      help="Train every loss on the left together, on the same batches.")
        elif command == "stop":
            st.button("Stopping…", key="compare_stopping", icon=":material/hourglass_top:", disabled=True)
        elif command == "pause":
            st.button("Resume", key="compare_resume", type="primary", icon=":material/play_arrow:",
                      on_click=_command, args=("resume",))
        else:
            st.button("Pause", key="compare_pause", icon=":material/pause:", on_click=_command, args=("pause",))
        if controlled and command != "stop":
            st.button("Step", key="compare_step_button", icon=":material/skip_next:", on_click=_command,
                      args=("step",), help="Pause, then train every run one batch.")
            st.button("Stop", key="compare_stop", icon=":material/stop:", on_click=_command, args=("stop",),
                      help="End every run; what they recorded is kept.")
    if message := st.session_state.pop("compare_error", None):
        st.warning(message)


def live_view() -> None:
    ids = st.session_state.get(IDS)
    if not ids:
        st.info("Choose two to four losses (or a comparison preset) on the left and press **Start all**, or pick "
                "stored runs above.")
        return
    try:
        view = _view(ids)
        records = view.refresh()
    except StoreError:
        st.session_state.pop(IDS, None)
        st.warning("A run of this comparison is no longer in the store.")
        return
    active = any(record.active for record in records)
    queued = active and all(record.status == RunStatus.QUEUED for record in records)
    every = (QUEUED_REFRESH_S if queued else REFRESH_S) if active else None
    st.fragment(run_every=every)(_draw)(tuple(ids), active, queued)


def _view(ids: list[int]) -> ComparisonView:
    view = st.session_state.get("compare_view")
    if view is None or view.run_ids != list(ids):
        view = st.session_state["compare_view"] = ComparisonView(store(), list(ids))
    return view


def _draw(ids: tuple[int, ...], was_active: bool, was_queued: bool) -> None:
    view = _view(list(ids))
    records = view.refresh()
    active = any(record.active for record in records)
    if active != was_active or was_queued and any(record.status != RunStatus.QUEUED for record in records):
        st.rerun()  # the runs ended (the controls outside this fragment change) or left the queue (the pace)
    # Watching changes nothing of the runs (any visitor's page may, as on the Train page), and the records
    # were just read: the runner alone says whether it drives them.
    if active and set(ids) <= set(runner().active_runs()):
        try:
            runner().watch(ids[0])
        except KeyError:
            pass
    status = " · ".join(f"**{label}** {record.status}" for label, record in zip(view.labels, records, strict=True))
    if active and st.session_state.get("compare_command") == "stop":
        # The runs end with a pass over the whole test set, which takes a while on a CPU: say so at once.
        status = f":material/hourglass_top: **Stopping:** evaluating every run on the test set… ({status})"
    st.caption(status)
    if not view.ready:
        st.progress(0.0, text="Starting: loading the data and building the models…")
        return
    if problem := view.probe_problem():
        st.error(problem)
        return
    indexes = view.indexes()
    steps = view.steps(indexes)
    running = any(record.status == RunStatus.RUNNING for record in records)
    step = _timeline(steps, running, _common_step(indexes, records))
    options = view.views[0].default_options()
    selected = st.session_state.get("compare_selected")
    frame = cached("compare-frame", (ids, step, tuple(len(i) for i in indexes) if running else None, selected),
                    lambda: view.frame(indexes, step, options, selected=selected,
                                       height=_grid_height(len(ids))))
    live_plotly_chart(frame.features_figure, key="compare_chart", on_click=_select,
                      camera_key=frame.features_figure.layout.uirevision)
    # The table and the histogram each take the whole width, one under the other: beside each other, the
    # table's eleven columns were cut and the histogram's plot was a strip beside its legend.
    rows = view.table(frame.snapshots)
    with st.container(key="compare_table"):
        st.table(_styled(rows).hide(axis="index"))
    st.caption("Best value of each column in bold. Test accuracy is measured on the whole test set when a "
               "run ends.")
    live_plotly_chart(frame.histogram_figure, key="compare_histogram")
    latest = max(info.elapsed for index in indexes for info in index[-1:])
    version = int(latest // CURVES_EVERY_S) if running else tuple(len(i) for i in indexes)
    curves = cached("compare-curves", (ids, version), lambda: view.curves(height=None))
    live_plotly_chart(curves, key="compare_curves")
    if not active:
        _exports(view, frame, rows)


def _grid_height(runs: int) -> int:
    """The feature panels' chart in pixels, legend included: one row of two or three panels, or four
    panels two by two, each row about as tall as the one row."""
    return 880 if runs == 4 else 520


def _select(index: int) -> None:
    st.session_state["compare_selected"] = index


def _common_step(indexes: list[list], records: list) -> int:
    """The newest step that every run still training has stored. Runs trained together are snapshotted
    at the same steps, but each writes its own snapshot in turn: the newest step of all would show a run
    that has not written it yet at its previous one. A run that has ended shows its last snapshot."""
    active = [index[-1].step for index, record in zip(indexes, records, strict=True) if record.active and index]
    return min(active) if active else max(index[-1].step for index in indexes if index)


def _timeline(steps: list[int], running: bool, live_step: int) -> int:
    """One slider for every run: while they train, the newest step they all have; else any step."""
    if running or len(steps) < 2:
        st.session_state.pop("compare_step", None)
        return live_step if running else steps[-1]
    shown = st.session_state.get("compare_step")
    if shown not in steps or shown == st.session_state.get("compare_step_end"):
        st.session_state["compare_step"] = steps[-1]
    st.session_state["compare_step_end"] = steps[-1]
    return st.select_slider("Timeline (every run)", options=steps, key="compare_step",
                            format_func=lambda s: f"step {s:,}",
                            help="Scrub back: every panel, the histograms and the table move to this step.")


def _styled(rows: list[dict[str, object]]):
    """The table with the best value of each numeric column in bold."""
    frame = pd.DataFrame(rows)
    specs = {spec.column: spec for spec in TABLE_METRICS if spec.column in frame and frame[spec.column].notna().any()}
    columns = list(specs)
    frame = frame[["run", "status", "step", *columns]]

    def bold_best(values: pd.Series) -> list[str]:
        best = values.max() if specs[values.name].higher_is_better else values.min()
        return ["font-weight: bold" if pd.notna(v) and v == best and values.notna().sum() > 1 else "" for v in values]

    return frame.style.apply(bold_best, subset=columns).format(
        {c: "{:,.0f}" if specs[c].name == "images_per_s" else "{:.4g}" for c in columns}, na_rep="—")


def _exports(view: ComparisonView, frame, rows: list[dict[str, object]]) -> None:
    """The grid as one standalone HTML file (plotly.js inside, works offline) and the table as CSV."""
    name = "dmlviz-compare-" + "-".join(map(str, view.run_ids))
    left, right = st.columns(2)
    figure = frame.features_figure
    # Built on the click (plotly.js makes the file ~5 MB), not on every rerun.
    left.download_button("Grid as HTML", lambda: grid_html(figure), file_name=f"{name}-step{frame.step}.html",
                         mime="text/html", key="compare_html", icon=":material/download:", on_click="ignore")
    right.download_button("Table as CSV", pd.DataFrame(rows).to_csv(index=False), file_name=f"{name}.csv",
                          mime="text/csv", key="compare_csv", icon=":material/download:", on_click="ignore")


def grid_html(figure) -> str:
    """The comparison grid as a standalone page: plotly.js inside, so it opens offline."""
    return figure.to_html(include_plotlyjs=True, full_html=True, config={"displaylogo": False})

