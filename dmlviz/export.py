"""A stored run taken elsewhere: the feature space over the run as an animated GIF or an MP4, the run
played back as a standalone HTML file, a PNG of a figure at a snapshot, the probe set's features at a
snapshot as CSV or Parquet, the files of TensorBoard's embedding projector, and the run's config as
YAML (which ``python -m dmlviz train --config`` accepts).

``EXPORTERS`` is the one table of them: the CLI's ``export --format`` and the Runs page's download buttons
loop over it. Every function reads the store only; nothing here needs Streamlit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from dmlviz import settings
from dmlviz.config import RunConfig
from dmlviz.data import load_raw
from dmlviz.store import RunStore, StoreError

TABLE_FORMATS = ("csv", "parquet")
MOVIE_FORMATS = ("gif", "mp4")
#: The figures a PNG can show.
PNG_FIGURES = ("features", "histogram", "curves")
MOVIE_FRAMES = 120  # snapshots in a GIF or MP4 (spread over the run): 15 s at 8 frames a second
MOVIE_FPS = 8
REPLAY_FRAMES = 200  # snapshots in an HTML replay
GIF_HOLD_MS = 2000  # the last frame of a GIF stays this long before it loops
SPRITE_SIDE = 8192  # TensorBoard's projector reads sprite images up to 8192 × 8192 pixels


def snapshot_seq(store: RunStore, run_id: int, snapshot: int | None) -> int:
    """The seq of snapshot number ``snapshot`` (negative counts from the end; None: the last)."""
    index = store.snapshot_index(run_id)
    if not index:
        raise StoreError(f"run {run_id} has no snapshots yet")
    position = len(index) - 1 if snapshot is None else snapshot
    if not -len(index) <= position < len(index):
        raise StoreError(f"run {run_id} has {len(index)} snapshots (0 … {len(index) - 1}); there is no {snapshot}")
    return index[position].seq


def features_table(store: RunStore, run_id: int, snapshot: int | None = None) -> pd.DataFrame:
    """One row per probe image: its index in the test set, label, class name, whether its class was
    trained on (``seen``) or held out (``unseen``), and its feature coordinates ``f0 … f{d-1}``."""
    seq = snapshot_seq(store, run_id, snapshot)
    shot = store.get_snapshot(run_id, seq)
    labels = np.asarray(store.get_info(run_id, "probe_labels"))
    names = list(store.get_info(run_id, "class_names"))
    trained = {int(c) for c in store.get_info(run_id, "train_classes")}
    table = pd.DataFrame({
        "index": np.asarray(store.get_info(run_id, "probe_index")),
        "label": labels,
        "class": [names[label] for label in labels],
        "split": ["seen" if int(label) in trained else "unseen" for label in labels],
    })
    coordinates = pd.DataFrame(shot.features, columns=[f"f{i}" for i in range(shot.features.shape[1])])
    table = pd.concat([table, coordinates], axis=1)
    table.attrs.update(run=run_id, step=shot.step, epoch=shot.epoch)
    return table


def write_features(store: RunStore, run_id: int, path: Path, fmt: str, snapshot: int | None = None) -> Path:
    """The probe features of one snapshot as a CSV or Parquet file at ``path``."""
    if fmt not in TABLE_FORMATS:
        raise ValueError(f"features are written as {' or '.join(TABLE_FORMATS)}, not {fmt!r}")
    table = features_table(store, run_id, snapshot)
    if fmt == "csv":
        table.to_csv(path, index=False)
    else:
        table.to_parquet(path, index=False)
    return path


def _options(view, axes: str = "follow", regions: bool = False, forces: bool = False):
    """The run's own view options (directions for a normalised loss, …) with the axes asked for, and its
    decision regions and forces if asked for."""
    return replace(view.default_options(), axes=axes, regions=regions, forces=forces)


def write_replay(store: RunStore, run_id: int, path: Path, max_frames: int = REPLAY_FRAMES,
                 axes: str = "follow", regions: bool = False, forces: bool = False) -> Path:
    """The run's feature space and distance histogram over time as one standalone HTML file (plotly.js
    inside: it plays offline), with play / pause and a slider over up to ``max_frames`` snapshots.
    ``axes``: "follow" (the view follows the run, the histogram fits each frame) or "fixed" (one view
    and one histogram range for the whole run)."""
    from dmlviz.view import RunView

    view = RunView(store, run_id)
    figure = view.replay(_options(view, axes, regions, forces), max_frames=max_frames, height=720)
    figure.write_html(path, include_plotlyjs=True, full_html=True, auto_play=False,
                      config={"displaylogo": False})
    return path


def write_movie(store: RunStore, run_id: int, path: Path, fmt: str, max_frames: int = MOVIE_FRAMES,
                fps: int = MOVIE_FPS, axes: str = "follow", regions: bool = False, forces: bool = False,
                until: int | None = None, view: Mapping[str, Any] | None = None) -> Path:
    """The feature space over the run as an animated GIF or an H.264 MP4 for slides: up to
    ``max_frames`` snapshots spread over it, with trails, each titled with the loss, the dataset and
    the step. ``axes``: "follow" (the view follows the run; still images keep the origin in the
    middle, so each frame shows a square about it that holds the frame's view) or "fixed" (one square
    for the whole run). ``until``: only the snapshots up to that step; ``view``: view options that
    replace the run's own (a lesson step's)."""
    from dmlviz import render
    from dmlviz.view import RunView

    if fmt not in MOVIE_FORMATS:
        raise ValueError(f"a movie is written as {' or '.join(MOVIE_FORMATS)}, not {fmt!r}")
    run = RunView(store, run_id)
    options = replace(_options(run, axes, regions, forces), **(view or {}))
    played = run.replay_frames(options, max_frames=max_frames, histograms=False, until=until)
    labels, names, trained = run.classes
    extents = [float(np.abs(box).max()) for box in played.views] or [played.extent] * len(played.panels)
    images = (render.feature_image(panel, labels, names, trained, extent=extent,
                                   title=f"{played.title}\nstep {shot.step:,} · epoch {shot.epoch:.2f}")
              for shot, panel, extent in zip(played.snapshots, played.panels, extents, strict=True))
    if fmt == "gif":
        _write_gif(images, path, fps)
    else:
        _write_mp4(images, path, fps)
    return path


def _write_gif(images: Iterator[np.ndarray], path: Path, fps: int) -> None:
    from PIL import Image

    # Each frame gets its own 256-colour palette as it comes: a third of the memory of RGB frames.
    frames = [Image.fromarray(image).quantize(colors=256, method=Image.Quantize.MEDIANCUT) for image in images]
    durations = [round(1000 / fps)] * len(frames)
    durations[-1] = GIF_HOLD_MS
    frames[0].save(path, format="GIF", save_all=True, append_images=frames[1:], duration=durations, loop=0)


def _write_mp4(images: Iterator[np.ndarray], path: Path, fps: int) -> None:
    import imageio_ffmpeg

    # imageio-ffmpeg's own ffmpeg binary, fed one frame at a time: nothing is held in memory.
    writer = None
    try:
        for image in images:
            if writer is None:
                height, width = image.shape[:2]
                writer = imageio_ffmpeg.write_frames(str(path), (width, height), fps=fps, codec="libx264",
                                                     pix_fmt_out="yuv420p", macro_block_size=16,
                                                     output_params=["-movflags", "+faststart"])
                writer.send(None)
            writer.send(np.ascontiguousarray(image))
    finally:
        if writer is not None:
            writer.close()


def write_png(store: RunStore, run_id: int, path: Path, figure: str = "features", snapshot: int | None = None,
              regions: bool = False, forces: bool = False) -> Path:
    """One figure at a snapshot as a PNG: the feature space (with its trails), the distance histogram,
    or the curves with a line at the snapshot's step."""
    from dmlviz import geometry, render
    from dmlviz.view import RunView

    if figure not in PNG_FIGURES:
        raise ValueError(f"a PNG shows one of {', '.join(PNG_FIGURES)}, not {figure!r}")
    view = RunView(store, run_id)
    seq = snapshot_seq(store, run_id, snapshot)
    index = view.snapshots()
    position = next(i for i, info in enumerate(index) if info.seq == seq)
    options = _options(view, regions=regions, forces=forces)
    labels, names, trained = view.classes
    shot = index[position]
    title = f"{view.title}\nstep {shot.step:,} · epoch {shot.epoch:.2f}"
    if figure == "features":
        drawing = view.drawing(index, position, options)
        image = render.feature_image(drawing.panel, labels, names, trained, title=title + drawing.note)
    elif figure == "histogram":
        features = store.get_snapshot(run_id, seq).features
        image = render.histogram_image(geometry.distance_histogram(features, labels, metric=options.histogram),
                                       title=title)
    else:
        series = store.series(run_id)
        image = render.curves_image(series.pop("step"), {k: v for k, v in series.items()
                                                         if k not in ("epoch", "elapsed")},
                                    title=view.title, step=shot.step)
    from PIL import Image

    Image.fromarray(image).save(path, format="PNG")
    return path


def write_config(store: RunStore, run_id: int, path: Path) -> Path:
    """The run's config as YAML: ``python -m dmlviz train --config`` trains it again."""
    path.write_text(RunConfig.from_dict(store.get_run(run_id).config).to_yaml())
    return path


def write_projector(store: RunStore, run_id: int, folder: Path, snapshot: int | None = None,
                    data_dir: Path | None = None) -> Path:
    """TensorBoard's embedding projector files in ``folder``: ``tensors.tsv`` (one feature vector a
    line), ``metadata.tsv`` (a header, then each probe image's label, class and split), ``sprite.png``
    (the probe images in a square grid, row by row) and ``projector_config.pbtxt`` naming them; open
    with ``tensorboard --logdir <folder>``."""
    table = features_table(store, run_id, snapshot)
    folder.mkdir(parents=True, exist_ok=True)
    coordinates = table[[c for c in table.columns if c.startswith("f") and c[1:].isdigit()]]
    coordinates.to_csv(folder / "tensors.tsv", sep="\t", header=False, index=False)
    table[["index", "label", "class", "split"]].to_csv(folder / "metadata.tsv", sep="\t", index=False)
    dataset = store.get_run(run_id).config["dataset"]
    images = load_raw(dataset, settings.data_dir(data_dir)).x_test[table["index"].to_numpy().copy()].numpy()
    sprite, side = _sprite(images)
    from PIL import Image

    Image.fromarray(sprite).save(folder / "sprite.png")
    name = f"run {run_id} step {table.attrs['step']}"
    (folder / "projector_config.pbtxt").write_text(
        "embeddings {\n"
        f'  tensor_name: "{name}"\n'
        f"  tensor_shape: {len(table)}\n  tensor_shape: {coordinates.shape[1]}\n"
        '  tensor_path: "tensors.tsv"\n'
        '  metadata_path: "metadata.tsv"\n'
        "  sprite {\n"
        '    image_path: "sprite.png"\n'
        f"    single_image_dim: {side}\n    single_image_dim: {side}\n"
        "  }\n"
        "}\n"
    )
    return folder


def _sprite(images: np.ndarray) -> tuple[np.ndarray, int]:
    """N × C × H × W uint8 images tiled row by row into one square image, and each tile's side, shrunk
    (by an integer step) when the grid would exceed what the projector reads."""
    n, channels, height, width = images.shape
    cols = math.ceil(math.sqrt(n))
    step = max(1, math.ceil(cols * max(height, width) / SPRITE_SIDE))
    images = images[:, :, ::step, ::step]
    side = max(images.shape[2], images.shape[3])
    grid = np.zeros((cols * side, cols * side, 3), dtype=np.uint8)
    rgb = np.repeat(images, 3, axis=1) if channels == 1 else images[:, :3]
    for i, image in enumerate(rgb):
        row, col = divmod(i, cols)
        grid[row * side:row * side + image.shape[1], col * side:col * side + image.shape[2]] = image.transpose(1, 2, 0)
    return grid, side


@dataclass(frozen=True)
class ExportOptions:
    """What an export can be asked for; each exporter reads the options it has a use for."""

    snapshot: int | None = None  # snapshot exports: its number (negative counts from the end; None: the last)
    figure: str = "features"  # png: one of PNG_FIGURES
    axes: str = "follow"  # html, gif, mp4: the view follows the run, or one view holds it all ("fixed")
    frames: int | None = None  # html, gif, mp4: at most this many snapshots (None: REPLAY_FRAMES, MOVIE_FRAMES)
    fps: int = MOVIE_FPS  # gif, mp4
    regions: bool = False  # html, gif, mp4, png: shade the decision regions and margin band
    forces: bool = False  # html, gif, mp4, png: arrows where the loss pushes some probe points
    data_dir: Path | None = None  # tensorboard: the dataset cache, for the sprite of the probe images


@dataclass(frozen=True)
class Exporter:
    """One way to take a run elsewhere. ``write(store, run_id, path, options)`` writes it at ``path`` and
    returns it; a ``folder`` exporter writes a folder there (no extension), which the Runs page offers as a
    zip, so ``mime`` is the zip's."""

    format: str  # the CLI's --format; the Runs page's widget key is export_<format>[_<figure>]
    label: str  # the Runs page's button; "{figure}" stands for each of ``figures``
    extension: str
    mime: str
    scope: Literal["run", "snapshot"]  # the whole run, or one snapshot of it
    help: str
    write: Callable[[RunStore, int, Path, ExportOptions], Path]
    needs: Literal["snapshots", "config"] = "snapshots"  # what of the run it reads (a config: one still valid)
    figures: tuple[str, ...] = ()  # the figures it draws, a file each: a button each, --figure in the CLI
    content: str = ""  # what the file holds, where its name says so
    folder: bool = False

    def label_for(self, figure: str | None = None) -> str:
        return self.label.format(figure=(figure or "").capitalize())

    def file_name(self, run_id: int, figure: str | None = None, step: int | None = None) -> str:
        """``run<id>``, then the figure or the content where the extension does not say it (a folder), or
        beside a snapshot's step (the Runs page's names), then the extension."""
        what = figure or (self.content if self.folder or step is not None else "")
        parts = [f"run{run_id}", what, f"step{step}" if step is not None else ""]
        return "-".join(part for part in parts if part) + self.extension


_MOVIE_HELP = (f"The feature space over up to {MOVIE_FRAMES} snapshots, titled with loss, dataset and step, for "
               "slides (takes a few seconds).")
_TABLE_HELP = ("One row per probe image: its index in the test set, label, class, seen or unseen, and its "
               "feature coordinates.")


def _movie(fmt: str, mime: str) -> Exporter:
    return Exporter(fmt, f"Animation ({fmt.upper()})", f".{fmt}", mime, "run", _MOVIE_HELP,
                    lambda store, run_id, path, options: write_movie(store, run_id, path, fmt,
                                                                     options.frames or MOVIE_FRAMES, options.fps,
                                                                     options.axes, options.regions, options.forces))


def _table(fmt: str, label: str, mime: str) -> Exporter:
    return Exporter(fmt, f"Features ({label})", f".{fmt}", mime, "snapshot", _TABLE_HELP,
                    lambda store, run_id, path, options: write_features(store, run_id, path, fmt, options.snapshot),
                    content="features")


#: Every export, in the order the Runs page offers them.
EXPORTERS: dict[str, Exporter] = {exporter.format: exporter for exporter in (
    Exporter("html", "Replay (HTML)", ".html", "text/html", "run",
             "The replay as one page that plays offline: plotly.js is inside.",
             lambda store, run_id, path, options: write_replay(store, run_id, path, options.frames or REPLAY_FRAMES,
                                                               options.axes, options.regions, options.forces)),
    _movie("gif", "image/gif"),
    _movie("mp4", "video/mp4"),
    Exporter("yaml", "Config (YAML)", ".yaml", "application/yaml", "run",
             "The config: `python -m dmlviz train --config` trains it again.",
             lambda store, run_id, path, options: write_config(store, run_id, path), needs="config"),
    Exporter("png", "{figure} (PNG)", ".png", "image/png", "snapshot",
             "A figure at the snapshot: the feature space with its trails, the distance histogram, or the curves "
             "with a line at its step.",
             lambda store, run_id, path, options: write_png(store, run_id, path, options.figure, options.snapshot,
                                                            options.regions, options.forces),
             figures=PNG_FIGURES),
    _table("csv", "CSV", "text/csv"),
    _table("parquet", "Parquet", "application/vnd.apache.parquet"),
    Exporter("tensorboard", "TensorBoard projector (zip)", "", "application/zip", "snapshot",
             "The files of TensorBoard's embedding projector, with a sprite of the probe images: open them with "
             "`tensorboard --logdir`.",
             lambda store, run_id, path, options: write_projector(store, run_id, path, options.snapshot,
                                                                  options.data_dir),
             content="projector", folder=True),
)}
