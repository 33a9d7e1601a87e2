"""What a page draws of one run: a snapshot turned into figures, with the projection and the trails
kept between frames.

A :class:`RunView` belongs to one page session and one run. It reads the store, projects features
wider than 3-D with a PCA that is Procrustes-aligned to the previous frame (so the picture does not
flip or spin while it updates or while a person scrubs through the run), and remembers the class
means and class vectors of earlier snapshots for the trails. Nothing here imports Streamlit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import plotly.graph_objects as go

from dmlviz import figures, geometry, projection
from dmlviz.losses import UnknownLoss, get_spec
from dmlviz.snapshot import Snapshot
from dmlviz.store import RunRecord, RunStore, SnapshotInfo


@dataclass(frozen=True)
class ViewOptions:
    """How a person wants to see the feature space."""

    directions: bool = False  # draw normalised features (what a normalised loss reads)
    dims: int = 2  # 2 or 3: the drawing's dimension when features are wider than 3
    trail: int = 20  # how many earlier snapshots the class trails reach back
    histogram: str = "euclidean"  # or "angular"
    # Features wider than 3-D: "pca" (live), or "umap" / "tsne" on request (seconds per frame).
    method: str = "pca"


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


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """Unit-length rows; zero rows stay zero and NaN rows (classes absent from the probe) stay NaN."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norms > 0, x / norms, x)


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
                    "steps_per_epoch", "model", "device", "precision")
            values = {key: self.store.get_info(self.run_id, key) for key in keys}
            if values["probe_labels"] is not None and values["train_classes"] is not None:
                self._info = values
        return self._info

    @property
    def normalized(self) -> bool:
        """Whether the run's loss reads only directions (as its base loss does, for wrappers)."""
        config = self.record.config
        loss = config.get("loss_params", {}).get("base", config["loss"])
        try:
            return get_spec(loss).normalized
        except UnknownLoss:
            return False

    @property
    def feature_dim(self) -> int:
        return int(self.record.config["feature_dim"])

    def snapshots(self) -> list[SnapshotInfo]:
        return self.store.snapshot_index(self.run_id)

    # -- frames ---------------------------------------------------------------------------------

    def frame(self, index: list[SnapshotInfo], position: int, options: ViewOptions, *,
              selected: int | None = None, height: int | None = None) -> Frame | None:
        """The figures of snapshot ``index[position]``; None before the run has written its facts."""
        info = self.info
        if info is None or not index:
            return None
        current = index[position]
        snapshot = self.store.get_snapshot(self.run_id, current.seq)
        self._remember(current.seq, snapshot)
        labels = np.asarray(info["probe_labels"])
        train_classes = [int(c) for c in info["train_classes"]]
        uirevision = f"run-{self.run_id}-{options.directions}-{options.dims}-{options.method}"
        title = f"step {current.step:,} · epoch {current.epoch:.2f}"
        if options.method != "pca" and self.feature_dim > 3:
            # A non-linear map has no meaning for vectors outside the data: draw the points and
            # the class means of the drawing only, and say that distances are not to be read.
            points = self._nonlinear(current.seq, snapshot.features, options)
            means = np.stack([points[labels == c].mean(0) if (labels == c).any() else np.full(options.dims, np.nan)
                              for c in range(len(info["class_names"]))])
            class_vectors, trails, explained = None, None, None
            title += f" · {'UMAP' if options.method == 'umap' else 't-SNE'} of {self.feature_dim}-D (distances " \
                     "in the drawing are not distances in the feature space)"
        else:
            to_view, explained = self._projector(snapshot.features, options)
            points, means = to_view(snapshot.features), to_view(snapshot.class_means)
            class_vectors = {k: to_view(v) for k, v in snapshot.class_vectors.items()}
            trails = self._trails(index[max(0, position - options.trail):position + 1], to_view)
            if explained is not None:
                title += f" · PCA of {self.feature_dim}-D, {explained:.0%} of variance"
        features_figure = figures.feature_figure(
            points, labels, list(info["class_names"]), train_classes, normalized=options.directions,
            class_vectors=class_vectors, class_means=means, trails=trails, selected=selected,
            uirevision=uirevision, height=height, title=title,
        )
        metric = options.histogram
        histogram = geometry.distance_histogram(snapshot.features, labels, metric=metric)
        return Frame(current, snapshot, points, features_figure, histogram,
                     figures.histogram_figure(histogram, uirevision=f"hist-{self.run_id}-{metric}"), explained)

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
                self._remember(info.seq, self.store.get_snapshot(self.run_id, info.seq))
        entries = [self._history[info.seq] for info in window]
        trails = {figures.MEANS: np.stack([to_view(means) for means, _ in entries])}
        for name in entries[-1][1]:
            if all(name in vectors for _, vectors in entries):
                trails[name] = np.stack([to_view(vectors[name]) for _, vectors in entries])
        return trails
