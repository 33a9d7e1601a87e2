"""What a page draws of one run: a snapshot turned into figures, with the projection and the trails
kept between frames.

A :class:`RunView` belongs to one page session and one run. It reads the store, projects features
wider than 3-D with a PCA that is Procrustes-aligned to the previous frame (so the picture does not
flip or spin while it updates or while a person scrubs through the run), and remembers the class
means and class vectors of earlier snapshots for the trails. Nothing here imports Streamlit.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace
from typing import NamedTuple

import numpy as np
import plotly.graph_objects as go

from dmlviz import figures, geometry, margins, projection
from dmlviz.config import ConfigError, RunConfig
from dmlviz.data import display_name
from dmlviz.losses import UnknownLoss, get_spec
from dmlviz.metrics import MetricSpec, metric_spec
from dmlviz.snapshot import Snapshot
from dmlviz.store import RunRecord, RunStore, SnapshotInfo, StoreError

#: How the feature space's axes move from frame to frame. "follow": they zoom out at once when something
#: would leave the view and zoom in only once the drawing has stayed small for a while (``AxisFollower``).
#: "fixed": live, the view of the moment the person fixed it (the first frame's when it was never
#: followed); in a replay, one view that holds the whole run. Either way a replay's histogram fits each
#: frame ("follow") or the whole run ("fixed").
AXES = ("follow", "fixed")


@dataclass(frozen=True)
class ViewOptions:
    """How a person wants to see the feature space."""

    directions: bool = False  # draw normalised features (what a normalised loss reads)
    dims: int = 2  # 2 or 3: the drawing's dimension when features are wider than 3
    trail: int = 20  # how many earlier snapshots the class trails reach back
    histogram: str = "euclidean"  # or "angular"
    # Features wider than 3-D: "pca" (live), or "umap" / "tsne" on request (seconds per frame).
    method: str = "pca"
    axes: str = "follow"  # or "fixed": see AXES
    regions: bool = False  # shade a 2-D run's decision regions and margin band under the features
    forces: bool = False  # arrows: where the loss pushes some probe points now (features up to 3-D)

    def __post_init__(self) -> None:
        if self.axes not in AXES:
            raise ValueError(f"axes must be one of {AXES}, not {self.axes!r}")


@dataclass
class AxisFollower:
    """Axis ranges that follow a drawing from frame to frame without jitter.

    ``update(extent)`` takes the box that holds everything drawn (k × 2: low, high of each axis, as
    ``figures.drawing_box`` gives it) and returns the view (k × 2). The view zooms out on the first
    frame whose extent reaches into the band of width ``edge`` (a share of the view's span) along its
    edges, to hold the old view and the extent with ``margin`` to spare; it zooms in, fitted to the
    extent with the same margin, only once the extent has spanned less than ``zoom_in_below`` of the
    view on every axis for ``patience`` frames in a row. Between these the view does not move. Frames
    seen again (the same ``key``, e.g. a snapshot redrawn with another point selected) do not count twice.
    ``square``: the same span on every axis (a 3-D scene drawn as a cube stays in true proportions).
    """

    margin: float = 0.15  # room around the extent on a fit, as a share of its half-span on each side
    edge: float = 0.02  # the band along the view's edges, as a share of its span, that counts as clipped
    zoom_in_below: float = 0.4  # zoom in once the extent spans less than this share of the view ...
    patience: int = 6  # ... on this many frames in a row
    square: bool = False
    view: np.ndarray | None = field(default=None, init=False)
    small: int = field(default=0, init=False)  # frames in a row with the extent small in the view
    _last_key: object = field(default=None, init=False)

    def __post_init__(self) -> None:
        if (1 + self.margin) * (1 - 2 * self.edge) <= 1:
            raise ValueError("the margin must leave a fitted extent clear of the edge band")
        if not 0 < self.zoom_in_below < 1 / (1 + self.margin) or self.patience < 1:
            raise ValueError("zoom in below a share that a fitted extent does not reach, after a frame or more")

    def fit(self, extent: np.ndarray) -> np.ndarray:
        """The view that holds ``extent`` with ``margin`` to spare (a point gets a small view around it)."""
        box = np.asarray(extent, dtype=float)
        centre, half = box.mean(axis=1), (box[:, 1] - box[:, 0]) / 2
        if self.square:
            half = np.full_like(half, half.max())
        # A point, or all points on a line, still gets a view with some size.
        floor = max(1e-6, 1e-3 * float(np.abs(box).max()), 1e-3 * float(half.max()))
        half = np.maximum(half, floor) * (1 + self.margin)
        return np.stack([centre - half, centre + half], axis=1)

    def clipped(self, extent: np.ndarray) -> bool:
        """Whether some of ``extent`` lies outside the view or in the band along its edges."""
        if self.view is None:
            return True
        band = self.edge * (self.view[:, 1] - self.view[:, 0])
        return bool(np.any(extent[:, 0] < self.view[:, 0] + band) or np.any(extent[:, 1] > self.view[:, 1] - band))

    def occupancy(self, extent: np.ndarray) -> float:
        """The largest share of the view's span that the extent spans on any axis."""
        return float(np.max((extent[:, 1] - extent[:, 0]) / (self.view[:, 1] - self.view[:, 0])))

    def update(self, extent: np.ndarray | None, key: object = None) -> np.ndarray | None:
        """The view for a frame whose drawing spans ``extent`` (None: nothing to draw; the view stays)."""
        if extent is None:
            return None if self.view is None else self.view.copy()
        extent = np.asarray(extent, dtype=float)
        seen = key is not None and key == self._last_key
        self._last_key = key
        if self.clipped(extent):
            self.view = self.fit(extent if self.view is None else figures.hull(self.view, extent))
            self.small = 0
        elif not seen:
            self.small = self.small + 1 if self.occupancy(extent) < self.zoom_in_below else 0
            if self.small >= self.patience:
                self.view, self.small = self.fit(extent), 0
        return self.view.copy()

    def hold(self, extent: np.ndarray | None) -> np.ndarray | None:
        """A fixed view: the one there is, or (the first time) one fitted to ``extent``."""
        if self.view is None and extent is not None:
            self.view = self.fit(np.asarray(extent, dtype=float))
        self.small = 0
        return None if self.view is None else self.view.copy()


@dataclass
class Frame:
    """The figures of one snapshot and the numbers around them."""

    info: SnapshotInfo
    snapshot: Snapshot
    points: np.ndarray
    features_figure: go.Figure
    histogram: geometry.DistanceHistogram
    histogram_figure: go.Figure
    explained: float | None  # variance captured by the projection, when there is one


@dataclass
class Drawing:
    """A snapshot in drawing coordinates (see :meth:`RunView.drawing`)."""

    snapshot: Snapshot
    panel: figures.FeaturePanel
    explained: float | None
    note: str  # how the drawing was made, for a title: " · PCA of 64-D, 83 % of variance"


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """Unit-length rows; zero rows stay zero and NaN rows (classes absent from the probe) stay NaN."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norms > 0, x / norms, x)


class Classes(NamedTuple):
    """Who the probe points are: each one's label, every class's name, and the classes trained on."""

    labels: np.ndarray
    names: list[str]
    trained: list[int]


@dataclass
class Replay:
    """Snapshots spread over a run, drawn alike for playback (see :meth:`RunView.replay_frames`)."""

    snapshots: list[SnapshotInfo]
    panels: list[figures.FeaturePanel]
    histograms: list[geometry.DistanceHistogram]  # one a frame, or none
    extent: float  # half the side of the square (cube) about the origin that holds every frame
    title: str
    axes: str = "follow"  # how ``views`` were chosen (see AXES)
    # Each frame's view (k × 2: low, high of each axis): followed frame by frame, or the whole run's.
    views: list[np.ndarray] = field(default_factory=list)


def _trails(panels: list[figures.FeaturePanel]) -> dict[str, np.ndarray]:
    """The class means and class vectors of consecutive panels, oldest first (T × rows × k)."""
    trails = {figures.MEANS: np.stack([panel.class_means for panel in panels])}
    for kind in panels[-1].class_vectors or {}:
        trails[kind] = np.stack([panel.class_vectors[kind] for panel in panels])
    return trails


@dataclass
class RunView:
    store: RunStore
    run_id: int
    record: RunRecord = field(init=False)
    _map: projection.LinearMap | None = field(default=None, init=False)
    _map_key: tuple | None = field(default=None, init=False)
    _history: dict[int, tuple[np.ndarray, dict[str, np.ndarray]]] = field(default_factory=dict, init=False)
    _embedded: dict[tuple, np.ndarray] = field(default_factory=dict, init=False)
    _embedded_last: np.ndarray | None = field(default=None, init=False)
    _info: dict | None = field(default=None, init=False)
    # One follower per way of drawing (directions, dimensions, method): their coordinates differ.
    _followers: dict[tuple, AxisFollower] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.refresh()

    def refresh(self) -> RunRecord:
        self.record = self.store.get_run(self.run_id)
        return self.record

    # -- run-level facts ------------------------------------------------------------------------

    @property
    def info(self) -> dict | None:
        """Probe labels, class names and training classes, once the worker has written them."""
        if self._info is None:
            keys = ("probe_labels", "probe_index", "class_names", "train_classes", "total_steps",
                    "steps_per_epoch", "model", "device", "precision", "normalized")
            values = {key: self.store.get_info(self.run_id, key) for key in keys}
            if values["probe_labels"] is not None and values["train_classes"] is not None:
                self._info = values
        return self._info

    @property
    def classes(self) -> Classes:
        """The probe's labels, the class names and the training classes (StoreError before the run wrote them)."""
        info = self.info
        if info is None:
            raise StoreError(f"run {self.run_id} has nothing to draw yet")
        return Classes(np.asarray(info["probe_labels"]), list(info["class_names"]),
                       [int(c) for c in info["train_classes"]])

    @property
    def normalized(self) -> bool:
        """Whether the run's loss reads only directions, as the engine recorded it (from the config for
        a run recorded before the engine did)."""
        recorded = self.info.get("normalized") if self.info is not None else None
        return bool(recorded) if recorded is not None else self._normalized_by_config

    @functools.cached_property
    def _normalized_by_config(self) -> bool:
        """Validating the config builds its loss: once per view, not on every redraw."""
        try:
            return RunConfig.from_dict(self.record.config).feature_spec().normalized
        except (ValueError, UnknownLoss):  # a config this version no longer reads
            return False

    @property
    def has_regions(self) -> bool:
        """Whether the run records decision maps: 2-D features, or 3-D ones of a loss that reads directions."""
        return self.feature_dim == 2 or (self.feature_dim == 3 and self.normalized)

    @property
    def feature_dim(self) -> int:
        return int(self.record.config["feature_dim"])

    def snapshots(self) -> list[SnapshotInfo]:
        return self.store.snapshot_index(self.run_id)

    # -- frames ---------------------------------------------------------------------------------

    def frame(self, index: list[SnapshotInfo], position: int, options: ViewOptions, *,
              selected: int | None = None, height: int | None = None) -> Frame | None:
        """The figures of snapshot ``index[position]``; None before the run has written its facts."""
        if self.info is None or not index:
            return None
        current = index[position]
        drawing = self.drawing(index, position, options)
        title = f"step {current.step:,} · epoch {current.epoch:.2f}{drawing.note}"
        labels, names, trained = self.classes
        features_figure = figures.feature_figure(
            drawing.panel.points, labels, names, trained,
            normalized=options.directions, class_vectors=drawing.panel.class_vectors,
            class_means=drawing.panel.class_means, trails=drawing.panel.trails, selected=selected,
            decision=drawing.panel.decision, forces=drawing.panel.forces,
            uirevision=f"run-{self.run_id}-{options.directions}-{options.dims}-{options.method}", height=height,
            title=title, axis_range=self.axis_range([drawing.panel], options, key=current.seq),
        )
        metric = options.histogram
        histogram = geometry.distance_histogram(drawing.snapshot.features, labels, metric=metric)
        return Frame(current, drawing.snapshot, drawing.panel.points, features_figure, histogram,
                     figures.histogram_figure(histogram, uirevision=f"hist-{self.run_id}-{metric}"), drawing.explained)

    def drawing(self, index: list[SnapshotInfo], position: int, options: ViewOptions, title: str = "") -> Drawing:
        """Snapshot ``index[position]`` in drawing coordinates: its points, class vectors, class means and
        trails, projected when the features are wider than 3-D (needs ``info``)."""
        info = self.info
        current = index[position]
        snapshot = self.store.get_snapshot(self.run_id, current.seq)
        self._remember(current.seq, snapshot)
        labels = np.asarray(info["probe_labels"])
        note = ""
        if options.method != "pca" and self.feature_dim > 3:
            # A non-linear map has no meaning for vectors outside the data: draw the points and
            # the class means of the drawing only, and say that distances are not to be read.
            points = self._nonlinear(current.seq, snapshot.features, options)
            means = np.stack([points[labels == c].mean(0) if (labels == c).any() else np.full(options.dims, np.nan)
                              for c in range(len(info["class_names"]))])
            class_vectors, trails, explained = None, None, None
            note = f" · {'UMAP' if options.method == 'umap' else 't-SNE'} of {self.feature_dim}-D (distances " \
                   "in the drawing are not distances in the feature space)"
        else:
            to_view, explained = self._projector(snapshot.features, options)
            points, means = to_view(snapshot.features), to_view(snapshot.class_means)
            class_vectors = {k: to_view(v) for k, v in snapshot.class_vectors.items()}
            trails = self._trails(index[max(0, position - options.trail):position + 1], to_view)
            if explained is not None:
                note = f" · PCA of {self.feature_dim}-D, {explained:.0%} of variance"
        panel = figures.FeaturePanel(title, points, options.directions, class_vectors, means, trails,
                                     self._decision(snapshot, options), self._forces(snapshot, points, options))
        return Drawing(snapshot, panel, explained, note)

    def _forces(self, snapshot: Snapshot, points: np.ndarray, options: ViewOptions) -> figures.Forces | None:
        """The snapshot's forces in drawing coordinates when they are asked for (features up to 3-D, drawn
        as they are): for directions on the circle or sphere, the push on each feature's direction,
        (I − f̂f̂ᵀ)·g / ‖f‖, the part of the force that turns it."""
        if not options.forces or self.feature_dim > 3 or options.method != "pca":
            return None
        if not snapshot.forces:
            return figures.Forces(np.empty((0, points.shape[1])), np.empty((0, points.shape[1])), np.empty(0, int))
        rows, pull = snapshot.forces["rows"], np.asarray(snapshot.forces["vectors"], dtype=float)
        if options.directions:
            raw = np.asarray(snapshot.features[rows], dtype=float)
            length = np.linalg.norm(raw, axis=1, keepdims=True).clip(min=1e-12)
            unit = raw / length
            pull = (pull - (pull * unit).sum(1, keepdims=True) * unit) / length
        pull = np.pad(pull, ((0, 0), (0, points.shape[1] - pull.shape[1])))
        labels = np.asarray(self.info["probe_labels"])[rows]
        return figures.Forces(points[rows], pull, labels)

    def margin(self, snapshot: Snapshot, step: int) -> go.Figure | None:
        """For a margin loss: its target logit against θ at the run's schedule values at ``step`` (warm-ups,
        SphereFace's λ, Cam-Softmax's c), over the histogram of the probe images' angles θ_y to their own
        class weight in ``snapshot``, so that one sees which of them the margin still acts on. None for
        other losses."""
        name = self.record.config.get("loss")
        weights = snapshot.class_vectors.get("weights")
        if name not in margins.MARGIN_LOSSES or weights is None or self.info is None:
            return None
        try:
            hp = RunConfig.from_dict(self.record.config).loss_hparams()
        except ConfigError:  # recorded by an older version
            return None
        total = max(1, int(self.info.get("total_steps") or 1))
        curve = margins.target_logit(name, margins.THETAS, progress=min(1.0, step / total), **hp)
        labels, _, trained = self.classes
        slot = {int(c): i for i, c in enumerate(trained)}
        rows = np.flatnonzero([int(label) in slot for label in labels])
        own = np.asarray(weights, dtype=float)[[slot[int(labels[r])] for r in rows]]
        features = np.asarray(snapshot.features, dtype=float)[rows]
        cos = (features * own).sum(1) / (np.linalg.norm(features, axis=1) * np.linalg.norm(own, axis=1)).clip(1e-12)
        angles = np.degrees(np.arccos(np.clip(cos, -1, 1)))
        label = get_spec(name).display_name.split(" (")[0]
        return figures.target_logit_figure({label: (margins.THETAS, curve)}, angles=angles, height=420)

    def _decision(self, snapshot: Snapshot, options: ViewOptions) -> dict[str, np.ndarray] | None:
        """The snapshot's decision map when it is asked for and drawn as the loss reads the features: 2-D
        features as they are, or as directions (on the unit circle, where its map lies) for a loss that reads
        only those; 3-D features of such a loss as directions, on the sphere."""
        if not options.regions or not self.has_regions or options.directions != self.normalized:
            return None
        return snapshot.decision

    def follower(self, options: ViewOptions, dims: int) -> AxisFollower:
        """The axes' memory for one way of drawing the run (kept between frames, like the projection)."""
        key = (options.directions, dims, options.method if self.feature_dim > 3 else "pca")
        if key not in self._followers:
            self._followers[key] = AxisFollower(square=dims == 3)
        return self._followers[key]

    def axis_range(self, panels: list[figures.FeaturePanel], options: ViewOptions,
                   key: object = None) -> np.ndarray | None:
        """The view of the next frame drawn (k × 2), which holds these panels: followed (``options.axes``
        "follow") or held where it is ("fixed"); ``key`` names the frame, so one redrawn counts once."""
        trained = self.classes.trained
        extent = figures.panels_box(panels, trained)
        follower = self.follower(options, panels[0].points.shape[1])
        return follower.update(extent, key) if options.axes == "follow" else follower.hold(extent)

    @property
    def title(self) -> str:
        """What the run is, for a figure's title: "ArcFace on MNIST, 2-D features (run 3)"."""
        config = self.record.config
        try:
            loss = get_spec(config["loss"]).display_name
        except UnknownLoss:
            loss = config["loss"]
        return f"{loss} on {display_name(config['dataset'])}, {self.feature_dim}-D features (run {self.run_id})"

    def default_options(self) -> ViewOptions:
        """How the run is best seen: directions (and angles) for a normalised loss, 3-D features in 3-D."""
        return ViewOptions(directions=self.normalized, dims=3 if self.feature_dim == 3 else 2,
                           histogram="angular" if self.normalized else "euclidean")

    def replay_frames(self, options: ViewOptions | None = None, max_frames: int = 200,
                      histograms: bool = True, until: int | None = None) -> Replay:
        """Up to ``max_frames`` snapshots spread over the run (the last one always among them), drawn
        alike for playback: PCA, the same traces in each, trails of the class means and class vectors
        through the ``options.trail`` frames before each, and each frame's view: followed from the first
        frame on (``options.axes`` "follow", a replay's own ``AxisFollower``) or one that holds the
        whole run ("fixed"). ``until``: only the snapshots up to that step (a lesson's stop)."""
        index = [info for info in self.snapshots() if until is None or info.step <= until] or self.snapshots()[:1]
        if self.info is None or not index:
            raise StoreError(f"run {self.run_id} has nothing to replay yet")
        options = options or self.default_options()
        positions = sorted({int(i) for i in np.linspace(0, len(index) - 1, min(max_frames, len(index))).round()})
        labels = self.classes.labels
        still = replace(options, trail=0, method="pca")
        panels, hists = [], []
        for position in positions:
            drawing = self.drawing(index, position, still)
            panels.append(drawing.panel)
            if histograms:
                hists.append(geometry.distance_histogram(drawing.snapshot.features, labels, metric=options.histogram))
        if options.trail > 0:
            # Trails join the frames' own drawings (each frame's PCA is aligned to the one before).
            panels = [replace(panel, trails=_trails(panels[max(0, i - options.trail):i + 1]))
                      for i, panel in enumerate(panels)]
        trained = self.classes.trained
        boxes = [figures.panels_box([panel], trained) for panel in panels]
        square = panels[0].points.shape[1] == 3
        if options.axes == "follow":
            follower = AxisFollower(square=square)
            views = [follower.update(box) for box in boxes]
        else:
            whole = figures.hull(*boxes)
            views = [AxisFollower(square=square).fit(whole) if whole is not None else None] * len(panels)
        if any(view is None for view in views):
            views = []  # nothing finite to draw somewhere: plotly fits the axes itself
        extent = float(np.abs(views).max()) if views else figures.panel_extent(panels)
        return Replay([index[p] for p in positions], panels, hists, extent, self.title, options.axes, views)

    def replay(self, options: ViewOptions | None = None, max_frames: int = 200,
               height: int | None = None, until: int | None = None) -> go.Figure:
        """The run as a figure that plays itself back in the browser (see ``figures.replay_figure``):
        the feature space with its trails, and the distance histogram beside it, at each replay frame."""
        played = self.replay_frames(options, max_frames, until=until)
        labels, names, trained = self.classes
        follow = played.axes == "follow" and bool(played.views)
        frames = []
        for i, (snapshot, panel, hist) in enumerate(zip(played.snapshots, played.panels, played.histograms,
                                                        strict=True)):
            traces = figures.feature_traces(panel.points, labels, names, trained, normalized=panel.normalized,
                                            class_vectors=panel.class_vectors, class_means=panel.class_means,
                                            trails=panel.trails, decision=panel.decision, forces=panel.forces)
            frames.append(figures.ReplayFrame(f"step {snapshot.step:,}", traces, hist,
                                              f"step {snapshot.step:,} · epoch {snapshot.epoch:.2f}",
                                              played.views[i] if follow else None))
        fixed = played.axes == "fixed"
        return figures.replay_figure(
            frames, three_d=played.panels[0].points.shape[1] == 3, normalized=played.panels[0].normalized,
            title=played.title, height=height, axis_range=played.views[0] if fixed and played.views else None,
            histogram_range=figures.histogram_ranges(played.histograms) if fixed else None)

    def curves(self, height: int | None = None) -> go.Figure:
        series = self.store.series(self.run_id)
        steps = series.pop("step")
        for axis in ("epoch", "elapsed"):
            series.pop(axis, None)
        return figures.curves_figure(steps, series, uirevision=f"curves-{self.run_id}", height=height)

    def neighbours(self, snapshot: Snapshot, query: int, k: int = 8) -> tuple[np.ndarray, np.ndarray]:
        """The probe points nearest to ``query`` in the feature space itself (not the projection)."""
        return geometry.nearest_neighbours(snapshot.features, query, k=k, normalized=self.normalized)

    # -- internals ------------------------------------------------------------------------------

    def _projector(self, features: np.ndarray, options: ViewOptions):
        """A function from d-wide rows (features, means, class vectors) to drawing coordinates."""
        d = features.shape[1]

        def prepare(x: np.ndarray) -> np.ndarray:
            x = np.asarray(x, dtype=np.float32)
            return normalize_rows(x) if options.directions else x

        if d <= 3:
            def to_view(x: np.ndarray) -> np.ndarray:
                x = prepare(x)
                # 1-D features are drawn on a line.
                return np.pad(x, ((0, 0), (0, 2 - d))) if d < 2 else x

            return to_view, None
        key = (options.directions, options.dims)
        if key != self._map_key:
            self._map, self._map_key = None, key
        clean = prepare(features)
        # Around the origin for directions, so the unit sphere stays where it is.
        self._map = projection.pca_map(clean, options.dims, previous=self._map, center=not options.directions)
        linear = self._map

        def to_view(x: np.ndarray) -> np.ndarray:
            return linear(prepare(x))

        return to_view, linear.explained

    def _nonlinear(self, seq: int, features: np.ndarray, options: ViewOptions) -> np.ndarray:
        """UMAP / t-SNE of one snapshot, computed once and aligned to the last one drawn."""
        key = (seq, options.method, options.dims, options.directions)
        if key not in self._embedded:
            x = normalize_rows(features) if options.directions else features
            reference = self._embedded_last
            if reference is not None and reference.shape != (len(x), options.dims):
                reference = None
            self._embedded[key] = projection.nonlinear(x, options.dims, options.method, reference=reference)
        self._embedded_last = self._embedded[key]
        return self._embedded[key]

    def _remember(self, seq: int, snapshot: Snapshot) -> None:
        self._history[seq] = (snapshot.class_means, snapshot.class_vectors)

    def _trails(self, window: list[SnapshotInfo], to_view) -> dict[str, np.ndarray] | None:
        if len(window) < 2:
            return None
        for info in window:
            if info.seq not in self._history:
                try:
                    self._remember(info.seq, self.store.get_snapshot(self.run_id, info.seq))
                except StoreError:
                    pass  # thinned out of a long run since the index was read
        entries = [self._history[info.seq] for info in window if info.seq in self._history]
        if len(entries) < 2:
            return None
        trails = {figures.MEANS: np.stack([to_view(means) for means, _ in entries])}
        for name in entries[-1][1]:
            if all(name in vectors for _, vectors in entries):
                trails[name] = np.stack([to_view(vectors[name]) for _, vectors in entries])
        return trails


@dataclass
class ComparisonFrame:
    """The figures of a comparison at one step, and the snapshot each run shows there."""

    step: int
    snapshots: list[Snapshot | None]
    features_figure: go.Figure
    histogram_figure: go.Figure


@dataclass
class ComparisonView:
    """One page session's view of several runs side by side, on one timeline of steps."""

    store: RunStore
    run_ids: list[int]
    views: list[RunView] = field(init=False)

    def __post_init__(self) -> None:
        self.views = [RunView(self.store, run_id) for run_id in self.run_ids]

    def refresh(self) -> list[RunRecord]:
        return [view.refresh() for view in self.views]

    @property
    def labels(self) -> list[str]:
        """Each run's name for legends and titles: its loss, or its name when it has one."""
        return [view.record.name or view.record.config["loss"] for view in self.views]

    @property
    def ready(self) -> bool:
        """Every run has written its facts and has a snapshot."""
        return all(view.info is not None for view in self.views) and all(self.indexes())

    def indexes(self) -> list[list[SnapshotInfo]]:
        return [view.snapshots() for view in self.views]

    def probe_problem(self) -> str | None:
        """Why the runs cannot share a grid (different probe sets), or None."""
        labels = [np.asarray(view.info["probe_labels"]) for view in self.views if view.info is not None]
        if any(len(other) != len(labels[0]) or not np.array_equal(other, labels[0]) for other in labels[1:]):
            return "These runs track different probe images (another dataset or probe size), so their points " \
                   "cannot be matched panel to panel."
        return None

    @staticmethod
    def steps(indexes: list[list[SnapshotInfo]]) -> list[int]:
        """The timeline: every step at which some run has a snapshot (runs trained together share them)."""
        return sorted({info.step for index in indexes for info in index})

    def frame(self, indexes: list[list[SnapshotInfo]], step: int, options: ViewOptions, *,
              selected: int | None = None, height: int | None = None) -> ComparisonFrame:
        """Every run at its latest snapshot at or before ``step`` (its first, if it has none by then)."""
        labels, names, trained = self.views[0].classes
        panels, snapshots, histograms = [], [], []
        for view, index, label in zip(self.views, indexes, self.labels, strict=True):
            position = max(0, int(np.searchsorted([i.step for i in index], step, side="right")) - 1)
            drawing = view.drawing(index, position, options, title=f"{label} · step {index[position].step:,}")
            panels.append(drawing.panel)
            snapshots.append(drawing.snapshot)
            histograms.append((label, geometry.distance_histogram(drawing.snapshot.features, labels,
                                                                  metric=options.histogram)))
        key = "-".join(map(str, self.run_ids))
        # One view for the grid (its panels share their axes), kept between frames by the first run's view.
        axis_range = self.views[0].axis_range(panels, options, key=step)
        features = figures.comparison_figure(
            panels, labels, names, trained, selected=selected,
            uirevision=f"compare-{key}-{options.directions}-{options.dims}", height=height, axis_range=axis_range)
        overlay = figures.histogram_overlay_figure(histograms, uirevision=f"hist-{key}-{options.histogram}")
        return ComparisonFrame(step, snapshots, features, overlay)

    def curves(self, height: int | None = None) -> go.Figure:
        runs = []
        for view, label in zip(self.views, self.labels, strict=True):
            series = self.store.series(view.run_id)
            runs.append((label, series.pop("step"), series))
        return figures.comparison_curves_figure(runs, uirevision=f"curves-{'-'.join(map(str, self.run_ids))}",
                                                height=height)

    def table(self, snapshots: list[Snapshot | None]) -> list[dict[str, object]]:
        """One row per run: what it is, where it stands, and its numbers at the snapshot shown (test
        accuracy once it has been measured, at the end)."""
        rows = []
        for view, label, snapshot in zip(self.views, self.labels, snapshots, strict=True):
            metrics = snapshot.metrics if snapshot is not None else {}
            summary = view.record.summary
            rows.append({"run": label, "id": view.run_id, "status": view.record.status,
                         "step": snapshot.step if snapshot is not None else None,
                         **{spec.column: _table_value(spec.name, metrics, summary) for spec in TABLE_METRICS}})
        return rows


#: The numbers of a comparison's table, in its order; the catalog names each column and says which
#: way is better.
TABLE_METRICS: tuple[MetricSpec, ...] = tuple(metric_spec(name) for name in (
    "test_acc", "probe_acc", "p_at_1", "map_at_r", "fisher_ratio", "intra_angle", "inter_angle", "images_per_s"))


def _table_value(name: str, metrics: dict[str, float], summary: dict[str, float]) -> float | None:
    """A table cell: the snapshot's number; the test accuracy once it has been measured, at the end; the
    run's latest speed (its summary), whatever the step shown."""
    if name == "images_per_s":
        return summary.get(name)
    return metrics.get(name, summary.get(name) if name == "test_acc" else None)
