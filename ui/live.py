"""The live view of a run: controls, progress and figures, polled from the store.

Training runs in the runner's worker; the page only sends commands and, inside an
``st.fragment(run_every=…)``, reads the newest snapshot and draws it. Nothing here waits for
training. What the page keeps between reruns is its :class:`~ui.job.LiveJob` (``job("train")``).
"""

from __future__ import annotations

import gc
import html
from dataclasses import replace

import numpy as np
import streamlit as st
import torch

from dmlviz import figures, settings
from dmlviz.config import ConfigError, RunConfig
from dmlviz.data import DataError, DatasetUnavailable, load_raw
from dmlviz.metrics import live_numbers
from dmlviz.status import RunStatus
from dmlviz.store import StoreError
from dmlviz.view import AXES, Frame, RunView, ViewOptions
from ui.job import LiveJob, control_buttons, job
from ui.plotly_live import live_plotly_chart
from ui.resources import runner, store

# The server's own torch work (distances, projections) is small, and the training worker needs the
# cores: with two threads here, each fragment rerun would wait on a core the worker holds. Set here,
# with the pages that compute, not on the package's import, which a first page view would wait for.
torch.set_num_threads(1)

REFRESH_S = 0.5  # the page redraws twice a second while a run is active
# A queued run only moves up the queue: its page asks less often, so that many pages waiting on a
# shared server leave its CPU to the run that trains.
QUEUED_REFRESH_S = 2.0
CURVES_EVERY_S = 2.0  # run time between redraws of the curves while training
SPEEDS = {"1 step/s": 1.0, "5 steps/s": 5.0, "20 steps/s": 20.0, "full speed": None}
_ENDED_MESSAGES = {
    RunStatus.FINISHED: ("success", "Finished."),
    RunStatus.STOPPED: ("info", "Stopped; what it recorded is kept."),
    RunStatus.DIVERGED: ("error", "Diverged"),
    RunStatus.FAILED: ("error", "Failed"),
    RunStatus.INTERRUPTED: ("warning", "Interrupted"),
}
_METRICS_STYLE = ("<style>.dmlviz-metrics{display:flex;flex-wrap:wrap;gap:0.5rem 2.5rem}"
                  ".dmlviz-metrics .label{font-size:0.875rem;opacity:0.7}"
                  ".dmlviz-metrics .value{font-size:1.75rem;line-height:1.3}</style>")
# The stage's heights, in pixels. A laptop (1400 × 900, the sidebar open): the feature chart from about a
# fifth of the way down to the bottom of the first screen. A projector (1280 × 720, ``present=1``): the
# chart from just under the buttons to the bottom, the step and loss above the histogram beside it.
CHART_HEIGHT = 620
PRESENT_HEIGHT = 620
PRESENT_HISTOGRAM_HEIGHT = 530
# On a projector the charts take these shares of the window's height, at least the heights above: at
# 1280×720 that is the heights above; at 1920×1080 the feature chart is 929 px high instead of 620.
PRESENT_FILL = 0.86
PRESENT_HISTOGRAM_FILL = 0.74
# The page around the stage (and only a page with one: the style must not outlive it): the padding
# Streamlit leaves for a page title goes (the header's height stays, so nothing slides under it); a
# projector loses the sidebar and header too. At 900 px and narrower the charts take the whole width,
# one under the other.
_LAYOUT_STYLE = """<style>
[data-testid="stMainBlockContainer"]:has(.st-key-stage) {padding: 3.75rem 1.5rem 3rem; max-width: none}
.dmlviz-headline {display: flex; flex-wrap: wrap; align-items: baseline; gap: 0.25rem 2rem}
.dmlviz-headline .label {font-size: 1rem; opacity: 0.7}
.dmlviz-headline .value {font-size: 2.75rem; line-height: 1.1; font-variant-numeric: tabular-nums}
@media (max-width: 900px) {
  [data-testid="stMainBlockContainer"]:has(.st-key-stage) {padding-left: 1rem; padding-right: 1rem}
  .st-key-stage [data-testid="stHorizontalBlock"] {flex-direction: column}
  .st-key-stage [data-testid="stColumn"] {width: 100% !important; flex: 1 1 auto !important; min-width: 100%}
}
</style>"""
_PRESENT_STYLE = """<style>
body:has(.st-key-stage) :is([data-testid="stSidebar"], [data-testid="stExpandSidebarButton"], header)
  {display: none !important}
[data-testid="stMainBlockContainer"]:has(.st-key-stage) {padding-top: 1rem}
</style>"""


# -- controls -----------------------------------------------------------------------------------

def _speed() -> float | None:
    return SPEEDS[st.session_state.get("speed", "full speed")]


def start_run(config: RunConfig, paused: bool = False) -> None:
    """Train ``config`` in a new run and make it the Train page's (Home's demo and the Runs page's
    "Train again" start runs this way too)."""
    job("train").start([config], paused=paused, speed=_speed())


def _reset() -> None:
    """The same run again from step 0, same seed, paused on its first frame."""
    train = job("train")
    record = store().get_run(train.ids[0])
    try:
        config = RunConfig.from_dict(record.config)
        config.check_limits()  # before the run on screen is stopped
    except ConfigError as error:  # recorded by an older version, or beyond this server's limits
        train.error = f"This run cannot be trained again here: {error}"
        return
    if train.state()[1]:
        runner().stop(record.id)
    start_run(config, paused=True)


def _shown_run(train: LiveJob) -> int | None:
    return train.ids[0] if train.ids else None


def controls(config: RunConfig | None, present: bool = False):
    """Start / pause / resume / step / stop / reset, and the speed, on one row; buttons act on this session's
    run. Returns the row, for the view options at its end."""
    train = job("train")
    row = st.container(horizontal=True, vertical_alignment="bottom", key="controls")
    with row:
        active, controlled = control_buttons(
            train, start=lambda: start_run(config), can_start=config is not None, start_label="Start",
            start_help="Train the settings on the left in a new run.", step_help="Pause, then train one batch.",
            stop_help="End the run; everything it recorded is kept.")
        if train.ids:
            st.button("Reset", key="reset", icon=":material/replay:", on_click=_reset,
                      help="The same run again from step 0 with the same seed, paused on its first frame.")
        st.session_state.setdefault("speed", "full speed")
        # 300 px: the narrowest a control may be, so that its label and values are never cut.
        st.select_slider("Speed", list(SPEEDS), key="speed", on_change=lambda: train.set_speed(_speed()), width=300,
                         label_visibility="collapsed" if present else "visible",
                         help="Slow motion for a class: at most this many training steps a second.")
    # Always in place, empty but for a refused command: a message that came and went would move the charts.
    with st.container(key="control_message"):
        if train.error:
            train.say_error()
        elif active and not controlled:
            st.caption(f"Run {train.ids[0]} was started by another visitor: you can watch it and export it, and "
                       "only they can pause or stop it. Start trains your own run.")
    return row


# -- the live view ------------------------------------------------------------------------------

def live_view(config: RunConfig | None, present: bool = False) -> None:
    """The controls and the run on screen, or the empty places its figures will take. The view options
    sit at the end of the controls' row, outside the polling fragment: a change reruns the page anyway,
    and every element the fragment does not have to send again twice a second is work the training
    worker keeps."""
    st.html(_LAYOUT_STYLE + (_PRESENT_STYLE if present else ""))  # style only: it takes no place on the page
    row = controls(config, present)
    train = job("train")
    run_id = _shown_run(train)
    view, record = None, None
    if run_id is not None:
        try:
            view = _view(train)
            record = view.refresh()
        except StoreError:
            train.clear()
            st.warning(f"Run {run_id} is no longer in the store.")
            view = None
    with row:
        options = _view_options(view, present, live=record is not None and record.status == RunStatus.RUNNING)
    # Poll only while something can change; an ended run is drawn once and then scrubbed.
    active = record is not None and record.active
    every = (QUEUED_REFRESH_S if record.status == RunStatus.QUEUED else REFRESH_S) if active else None
    st.fragment(run_every=every)(_draw)(run_id if view else None, record.status if record else None, present, options)


def _view(train: LiveJob) -> RunView:
    return train.view_of(lambda ids: RunView(store(), ids[0]))


def _draw(run_id: int | None, status_seen: RunStatus | None, present: bool, options: ViewOptions) -> None:
    # The same elements in the same places whatever the state (no run, starting, running, ended): an
    # element that moves makes the charts after it mount afresh, reload plotly.js (a second or more)
    # and lose the user's zoom. So the charts are in place, empty, before Start is pressed.
    train = job("train")
    view = _view(train) if run_id is not None else None
    record = view.refresh() if view is not None else None
    if record is not None and train.controls_change([status_seen], [record]):
        # The controls outside this fragment show the old state, or the fragment polls at a queued
        # run's pace: redraw the whole page once.
        st.rerun()
    if record is not None:
        train.watch([record])
    index = view.snapshots() if view is not None else []
    # The stage: the feature chart at the top, the histogram beside it (below it in a narrow window).
    # On a projector the step and loss stand in big type above the histogram, and the chart starts
    # right under the buttons; on a laptop the status line and the timeline run above both.
    if present:
        left, right = _stage(present)
        with right:
            status_slot, timeline_slot = st.container(key="run_status"), st.container(key="timeline_slot")
    else:
        status_slot, timeline_slot = st.container(key="run_status"), st.container(key="timeline_slot")
        left, right = _stage(present)
    drawable = bool(index) and view is not None and view.info is not None
    with timeline_slot:
        position = train.timeline(
            list(range(len(index))), live=record.status in (RunStatus.RUNNING, RunStatus.QUEUED),
            live_value=len(index) - 1, label="Timeline", help="Scrub back through the run's snapshots.",
            format_func=lambda i: f"step {index[i].step} (epoch {index[i].epoch:.2f})") if drawable else None
    if record is not None and record.status == RunStatus.RUNNING and options.method != "pca":
        options = replace(options, method="pca")  # UMAP / t-SNE only while paused or ended
    selected = train.selected
    height = PRESENT_HEIGHT if present else CHART_HEIGHT
    histogram_height = PRESENT_HISTOGRAM_HEIGHT if present else CHART_HEIGHT
    frame = None
    if position is not None:
        # Figures are built once per snapshot; a poll that finds no new one sends the same ones again.
        frame = train.cached("frame", (run_id, index[position].seq, options, selected, height, histogram_height),
                       lambda: _sized(view.frame(index, position, options, selected=selected, height=height),
                                      histogram_height))
    with status_slot:
        if view is None:
            st.info("Choose settings (or a preset) on the left and press **Start**: the features of "
                    f"{RunConfig().probe_size:,} test images will appear and move as the network learns.")
        else:
            _status(view, index, frame if present else None)
    waiting = "Starting…" if record is not None and record.active else "Press Start"
    with left:
        fill = PRESENT_FILL if present else None
        if frame is None:
            live_plotly_chart(_placeholder("features", waiting, height), key="features_chart", fill=fill)
        else:
            live_plotly_chart(frame.features_figure, key="features_chart", on_click=train.select,
                              camera_key=frame.features_figure.layout.uirevision, fill=fill)
        # Every number of the snapshot, under the feature chart (beside the inspector, when it is open).
        with st.container(key="metrics"):
            if frame is not None:
                _metrics(frame)
    with right:
        live_plotly_chart(frame.histogram_figure if frame is not None
                          else _placeholder("histogram", waiting, histogram_height), key="histogram_chart",
                          fill=PRESENT_HISTOGRAM_FILL if present else None)
        if frame is not None:
            _inspector(train, view, frame, frame.points.shape[1] == 2)
    curves_height = 420 if present else 380
    if frame is None:
        curves = _placeholder("curves", waiting, curves_height)
    else:
        # While training, the curves (a history of many small panels, ~65 ms for the browser to redraw)
        # are rebuilt every CURVES_EVERY_S of run time; the feature space, histogram and numbers follow
        # every snapshot. Paused or ended, they follow every snapshot too (single steps).
        latest = index[-1]
        version = int(latest.elapsed // CURVES_EVERY_S) if record.status == RunStatus.RUNNING else latest.seq
        curves = train.cached("curves", (run_id, record.status, version, curves_height),
                        lambda: view.curves(height=curves_height))
    live_plotly_chart(curves, key="curves_chart")
    if frame is not None and not present:
        # Last on the page, so that it moves nothing when it appears; as often as the curves while training.
        shown = (run_id, version) if record.status == RunStatus.RUNNING else (run_id, frame.info.seq)
        margin = train.cached("margin", shown, lambda: view.margin(frame.snapshot, frame.info.step))
        if margin is not None:
            with st.expander("The margin now: target logit against θ, and each probe image's angle to its class"):
                st.plotly_chart(margin, key="margin_chart")
                st.caption("The curve at the run's schedule values now (a margin's warm-up, SphereFace's λ, "
                           "Cam-Softmax's c), divided by the scale s; under it, the angle θ_y of each probe image "
                           "to its own class weight. Images where the curve lies below cos θ (dashed) are still "
                           "pushed towards their class.")


def _stage(present: bool):
    """The two columns of the feature chart and the histogram, in a container the layout's CSS finds."""
    with st.container(key="stage"):
        return st.columns([3, 1] if present else [2, 1])


def _sized(frame: Frame | None, histogram_height: int) -> Frame | None:
    """The frame with its histogram as high as the stage wants it (the view leaves that to the page)."""
    if frame is not None:
        frame.histogram_figure.layout.height = histogram_height
    return frame


@st.cache_resource(max_entries=8)
def _placeholder(kind: str, text: str, height: int | None = None):
    """The empty figure in a chart's place before a run has a frame (shared by all sessions)."""
    notes = {"features": f"{text}: the probe images' features appear here",
             "histogram": "distances within and between classes", "curves": "loss, accuracy and geometry over time"}
    return figures.placeholder_figure(notes[kind], height=height, webgl=kind == "features")


def _status(view: RunView, index: list, headline: Frame | None = None) -> None:
    """Where the run stands: a progress bar with its words, or (on a projector) the step and loss of
    ``headline``, the frame on screen, in big type."""
    record = view.record
    info = view.info or {}
    total = int(info.get("total_steps") or 0)
    if record.status == RunStatus.QUEUED:
        position = runner().queue_position(record.id)
        where = f" (position {position} in the queue)" if position else ""
        st.progress(0.0, text=f"Waiting for a free slot{where}: {runner().max_concurrent} run(s) at a time "
                    "on this machine.")
        return
    if not index:
        if record.active:
            st.progress(0.0, text="Starting: loading the data and building the model…")
        else:
            _ended(record)
        return
    if headline is not None:
        _headline(headline, total, record.status)
        _ended(record)
        return
    latest = index[-1]
    rate = latest.step / latest.elapsed if latest.elapsed > 0 else 0.0
    speed = record.summary.get("images_per_s") if record.status == RunStatus.RUNNING else None
    parts = [f"step {latest.step} / {total}", f"epoch {latest.epoch:.2f}"]
    if speed and np.isfinite(speed):
        parts.append(f"{speed:,.0f} images/s")
    if record.status == RunStatus.RUNNING and rate > 0 and total:
        parts.append(f"{_duration((total - latest.step) / rate)} left")
    parts.append(record.status)
    st.progress(min(1.0, latest.step / total) if total else 0.0, text=" · ".join(parts))
    _ended(record)


def _headline(frame: Frame, total: int, status: RunStatus) -> None:
    """Step and loss in type a class can read from the back of the room; one element."""
    loss = frame.snapshot.metrics.get("loss")
    cells = [("step", f"{frame.info.step:,} / {total:,}" if total else f"{frame.info.step:,}")]
    if loss is not None:
        cells.append(("loss", figures.short_number(loss)))
    html_cells = "".join(f"<div><div class='label'>{label}</div><div class='value'>{html.escape(value)}</div></div>"
                         for label, value in cells)
    st.markdown(f"<div class='dmlviz-headline'>{html_cells}<div class='label'>{html.escape(status)}</div></div>",
                unsafe_allow_html=True)


def _ended(record) -> None:
    """How a run ended, in words; a failed run's reason (a missing dataset, a divergence) included."""
    if record.status in _ENDED_MESSAGES:
        kind, text = _ENDED_MESSAGES[record.status]
        getattr(st, kind)(f"{text}: {record.error}" if record.error else text)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


def _view_options(view: RunView | None, present: bool, live: bool) -> ViewOptions:
    """How to draw the run: in a popover at the end of the controls' row (always there, so nothing after it
    moves when a run appears). A projector gets the defaults and no popover."""
    if present:
        if view is None:
            return ViewOptions()
        return ViewOptions(directions=view.normalized, dims=min(view.feature_dim, 3) if view.feature_dim > 3 else 2)
    with st.popover("View", icon=":material/tune:", disabled=view is None, key="view_options",
                    help="How the features are drawn: normalised or not, the projection, trails, distances."):
        if view is None:
            return ViewOptions()
        directions = st.toggle("Normalised features", value=view.normalized, key=f"directions-{view.run_id}",
                               help="Draw each feature at unit length: what a normalised loss reads.")
        dims, method = 2, "pca"
        if view.feature_dim > 3:
            choice = st.segmented_control(
                "Projection", ("PCA 2-D", "PCA 3-D", "UMAP", "t-SNE"), default="PCA 2-D",
                key=f"projection-{view.run_id}",
                help="Features wider than 3-D: a PCA kept aligned from frame to frame, so the picture does not "
                     "flip; UMAP and t-SNE (a few seconds each) while the run is paused or has ended.") or "PCA 2-D"
            if choice.startswith("PCA"):
                dims = int(choice[4])
            else:
                method = "umap" if choice == "UMAP" else "tsne"
                if live:
                    st.caption("UMAP and t-SNE are drawn while the run is paused or has ended.")
        regions = view.has_regions and st.toggle(
            "Decision regions", key="regions",
            help="Where the loss's classifier picks each class (the nearest class mean for a loss without one), "
                 "shaded in the class colours with the boundaries between them, and, for a margin loss, the band "
                 "where a sample of the winning class would still lose once its margin counts.")
        forces = view.feature_dim <= 3 and method == "pca" and st.toggle(
            "Forces", key="forces",
            help="Arrows on about 13 probe images of each class: where the loss pushes each feature now (minus its "
                 "gradient, from the loss's current parameters, those images as its batch), scaled together.")
        trail = st.slider("Trail", 0, 60, 20, key="trail", width=320,  # wide enough to aim at a value
                          help="How many earlier snapshots the class trails reach back.")
        histogram = st.segmented_control("Distances", ("euclidean", "angular"),
                                         default="angular" if view.normalized else "euclidean",
                                         key=f"histogram-{view.run_id}") or "euclidean"
        axes = st.segmented_control("Axes", AXES, default="follow", key="axes", format_func=str.capitalize,
                                    help="Follow: zoom out as soon as the features would leave the view, back in "
                                         "once they have stayed small for a while. Fixed: keep the view of the "
                                         "moment.") or "follow"
    return ViewOptions(directions=directions, dims=dims, trail=trail, histogram=histogram, method=method, axes=axes,
                       regions=regions, forces=forces)


def _metrics(frame: Frame) -> None:
    metrics = frame.snapshot.metrics
    shown = [(spec.label, value) for spec, value in live_numbers(metrics)]
    if not shown:
        return
    # One element, not a column and an st.metric per number: the fragment sends it twice a second,
    # and each element costs the browser layout and React work that the training worker needs.
    cells = "".join(f"<div><div class='label'>{html.escape(label)}</div>"
                    f"<div class='value'>{figures.short_number(value)}</div></div>" for label, value in shown)
    st.markdown(f"{_METRICS_STYLE}<div class='dmlviz-metrics'>{cells}</div>", unsafe_allow_html=True)


def _inspector(train: LiveJob, view: RunView, frame: Frame, two_d: bool) -> None:
    """The selected probe image and its nearest neighbours in the feature space, with distances."""
    labels, names, _ = view.classes
    with st.container(border=True, key="inspector"):
        selected = st.number_input("Inspect probe image #", 0, len(labels) - 1, value=train.selected,
                                   placeholder="click a point" if two_d else "a probe index",
                                   help="Click a point in the 2-D view, or type its index (hover shows it). "
                                        "Its nearest neighbours are found in the feature space itself: by "
                                        "Euclidean distance, or by angle for a normalised loss.")
        if selected is None:
            st.caption("Select a point to see its image and its nearest neighbours in the feature space.")
            return
        train.selected = int(selected)
        neighbours, distances = view.neighbours(frame.snapshot, int(selected), k=6)
        try:
            images = _probe_images(view.record.config["dataset"], np.asarray(view.info["probe_index"]))
        except (DataError, DatasetUnavailable) as error:  # gone since the run, or turned off on this server
            st.caption(f"The images cannot be shown: {error}")
            return
        captions = [f"#{selected} · {names[labels[selected]]}"]
        captions += [neighbour_caption(labels[n] == labels[selected], names[labels[n]], float(d), view.normalized)
                     for n, d in zip(neighbours, distances, strict=True)]
        st.image([images[selected], *images[neighbours]], caption=captions, width=72)


def neighbour_caption(same_class: bool, name: str, distance: float, angular: bool) -> str:
    """"✓ 1 · distance 0.165" or, for a normalised loss, "✗ 7 · angle 12.3°": whether a neighbour is of
    the selected image's class, its class, and how far it is in the feature space (not the picture)."""
    far = f"angle {figures.short_number(distance)}°" if angular else f"distance {figures.short_number(distance)}"
    return f"{'✓' if same_class else '✗'} {name} · {far}"


@st.cache_resource(max_entries=2)
def _probe_images(dataset: str, probe_index: np.ndarray) -> np.ndarray:
    """The probe's test images as H × W (× 3) uint8 arrays, loaded once per dataset and probe set."""
    images = load_raw(dataset, settings.data_dir()).x_test[probe_index].numpy()
    return images[:, 0] if images.shape[1] == 1 else images.transpose(0, 2, 3, 1)


# What the server has imported by now (torch, plotly, Streamlit: ~300k objects) lives as long as the
# process. Out of the garbage collector's sight, the full collection Streamlit runs after every rerun
# takes ~0 ms instead of ~100 ms, twice a second per polling page.
gc.freeze()
