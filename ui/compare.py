"""The live view of a comparison: one set of controls for all its runs, synchronised feature panels,
overlaid histograms and curves, a table of numbers, one timeline, and the exports.

Runs launched here train together in one worker (``Runner.submit_together``), so one control drives
them all and their snapshots share steps; stored runs picked here are shown on the same timeline. What
the page keeps between reruns is its :class:`~ui.job.LiveJob` (``job("compare")``), as the Train page's.
"""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import streamlit as st

from dmlviz.comparison import Comparison
from dmlviz.status import RunStatus
from dmlviz.store import StoreError
from dmlviz.view import TABLE_METRICS, ComparisonView
from ui.job import LiveJob, control_buttons, job
from ui.live import CURVES_EVERY_S, QUEUED_REFRESH_S, REFRESH_S
from ui.plotly_live import live_plotly_chart
from ui.resources import store

# The page's sides narrow to the Train page's (and only on this page: the style goes with it), so three
# feature panels of a laptop's screen (1400 px, the sidebar open) are each over 300 px wide.
_LAYOUT_STYLE = """<style>
[data-testid="stMainBlockContainer"]:has(.st-key-compare_controls) {padding-left: 1.5rem; padding-right: 1.5rem;
                                                                    max-width: none}
@media (max-width: 900px) {
  [data-testid="stMainBlockContainer"]:has(.st-key-compare_controls) {padding-left: 1rem; padding-right: 1rem}
}
</style>"""


def controls(comparison: Comparison | None) -> None:
    compare = job("compare")
    st.html(_LAYOUT_STYLE)  # style only: it takes no place on the page
    with st.container(horizontal=True, vertical_alignment="center", key="compare_controls"):
        control_buttons(compare, start=lambda: compare.start(comparison.configs()), can_start=comparison is not None,
                        start_label="Start all", start_help="Train every loss on the left together, on the same "
                        "batches.", step_help="Pause, then train every run one batch.",
                        stop_help="End every run; what they recorded is kept.")
    compare.say_error()


def live_view() -> None:
    compare = job("compare")
    ids = compare.ids
    if not ids:
        st.info("Choose two to four losses (or a comparison preset) on the left and press **Start all**, or pick "
                "stored runs above.")
        return
    try:
        view = _view(compare)
        records = view.refresh()
    except StoreError:
        compare.clear()
        st.warning("A run of this comparison is no longer in the store.")
        return
    active = any(record.active for record in records)
    queued = active and all(record.status == RunStatus.QUEUED for record in records)
    every = (QUEUED_REFRESH_S if queued else REFRESH_S) if active else None
    st.fragment(run_every=every)(_draw)(tuple(ids), tuple(record.status for record in records))


def _view(compare: LiveJob) -> ComparisonView:
    return compare.view_of(lambda ids: ComparisonView(store(), ids))


def _draw(ids: tuple[int, ...], seen: tuple[RunStatus, ...]) -> None:
    compare = job("compare")
    view = _view(compare)
    records = view.refresh()
    if compare.controls_change(seen, records):
        st.rerun()  # the runs ended, were paused or resumed elsewhere (the controls outside this fragment
        # change) or left the queue (the pace)
    active = any(record.active for record in records)
    # Watching changes nothing of the runs (any visitor's page may, as on the Train page).
    compare.watch(records)
    status = " · ".join(f"**{label}** {record.status}" for label, record in zip(view.labels, records, strict=True))
    if active and compare.command == "stop":
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
    step = compare.timeline(steps, live=running, live_value=_common_step(indexes, records),
                            label="Timeline (every run)", format_func=lambda s: f"step {s:,}",
                            help="Scrub back: every panel, the histograms and the table move to this step.")
    options = view.views[0].default_options()
    if view.views[0].has_regions and st.toggle(
            "Decision regions", key="compare_regions",
            help="In every panel: where its loss's classifier picks each class, with the boundaries and a margin "
                 "loss's band."):
        options = replace(options, regions=True)
    selected = compare.selected
    frame = compare.cached("compare-frame", (ids, step, options.regions,
                                             tuple(len(i) for i in indexes) if running else None, selected),
                           lambda: view.frame(indexes, step, options, selected=selected,
                                              height=_grid_height(len(ids))))
    live_plotly_chart(frame.features_figure, key="compare_chart", on_click=compare.select,
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
    curves = compare.cached("compare-curves", (ids, version), lambda: view.curves(height=None))
    live_plotly_chart(curves, key="compare_curves")
    if not active:
        _exports(view, frame, rows)


def _grid_height(runs: int) -> int:
    """The feature panels' chart in pixels, legend included: one row of two or three panels, or four
    panels two by two, each row about as tall as the one row."""
    return 880 if runs == 4 else 520


def _common_step(indexes: list[list], records: list) -> int:
    """The newest step that every run still training has stored. Runs trained together are snapshotted
    at the same steps, but each writes its own snapshot in turn: the newest step of all would show a run
    that has not written it yet at its previous one. A run that has ended shows its last snapshot."""
    active = [index[-1].step for index, record in zip(indexes, records, strict=True) if record.active and index]
    return min(active) if active else max(index[-1].step for index in indexes if index)


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

