"""Exports of a real short run, each read back: features as CSV and Parquet, TensorBoard projector files,
and the config as YAML that trains the same run again."""

import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dmlviz import export, settings
from dmlviz.cli import main
from dmlviz.config import RunConfig
from dmlviz.engine import train
from dmlviz.runner import StoreSink
from dmlviz.store import RunStore, StoreError

CONFIG = {"dataset": "digits", "device": "cpu", "steps": 20, "batch_size": 64, "probe_size": 120,
          "snapshot_steps": 10, "classes": [0, 1, 2, 3, 4, 5, 6, 7], "feature_dim": 3, "seed": 5}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A real run on scikit-learn's digits (two classes held out), its store and data folder."""
    root = tmp_path_factory.mktemp("export")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(settings.DATA_DIR_ENV, str(root / "data"))
        store = RunStore(root / "store")
        config = RunConfig.from_dict(CONFIG)
        run_id = store.create_run(config.to_dict(), status="running")
        result = train(config, root / "data", StoreSink(store, run_id))
        store.set_status(run_id, result.outcome)
        yield store, run_id, root


def test_features_round_trip_through_csv_and_parquet(recorded, tmp_path):
    store, run_id, _ = recorded
    table = export.features_table(store, run_id)
    last = store.get_snapshot(run_id, store.snapshot_index(run_id)[-1].seq)
    np.testing.assert_array_equal(table[["f0", "f1", "f2"]].to_numpy(), last.features)
    assert list(table.columns[:4]) == ["index", "label", "class", "split"]
    assert set(table.loc[table["label"] >= 8, "split"]) == {"unseen"} and set(table.loc[table["label"] < 8, "split"]) \
        == {"seen"}
    for fmt in export.TABLE_FORMATS:
        path = export.write_features(store, run_id, tmp_path / f"features.{fmt}", fmt, snapshot=0)
        back = pd.read_csv(path, dtype={"class": str}) if fmt == "csv" else pd.read_parquet(path)
        expected = export.features_table(store, run_id, snapshot=0)
        pd.testing.assert_frame_equal(back, expected, check_dtype=False, check_exact=False, rtol=1e-6)
    assert not np.allclose(export.features_table(store, run_id, 0)["f0"], table["f0"])  # snapshot 0 is not the last


def test_tensorboard_projector_files_follow_its_formats(recorded, tmp_path):
    store, run_id, root = recorded
    folder = export.write_projector(store, run_id, tmp_path / "projector", data_dir=root / "data")
    table = export.features_table(store, run_id)
    tensors = np.loadtxt(folder / "tensors.tsv", delimiter="\t")
    np.testing.assert_allclose(tensors, table[["f0", "f1", "f2"]].to_numpy(), rtol=1e-6)
    metadata = pd.read_csv(folder / "metadata.tsv", sep="\t")
    assert list(metadata.columns) == ["index", "label", "class", "split"] and len(metadata) == len(table)
    config = (folder / "projector_config.pbtxt").read_text()
    side = int(re.findall(r"single_image_dim: (\d+)", config)[0])
    assert re.findall(r"tensor_shape: (\d+)", config) == [str(len(table)), "3"]
    assert 'tensor_path: "tensors.tsv"' in config and 'metadata_path: "metadata.tsv"' in config
    sprite = Image.open(folder / "sprite.png")
    cols = int(np.ceil(np.sqrt(len(table))))
    assert sprite.size == (cols * side, cols * side)
    # The first tile is the first probe image, the second the second.
    from dmlviz.data import load_raw

    images = load_raw("digits", root / "data").x_test
    assert side == images.shape[-1]
    for tile in range(2):
        image = images[int(table["index"][tile])].numpy()[0]
        np.testing.assert_array_equal(np.asarray(sprite)[:side, tile * side:(tile + 1) * side, 0], image)


def test_the_yaml_config_trains_the_same_run_again(recorded, tmp_path):
    store, run_id, root = recorded
    path = export.write_config(store, run_id, tmp_path / "run.yaml")
    again = RunConfig.from_yaml(path.read_text())
    assert again == RunConfig.from_dict(CONFIG)
    second = RunStore(tmp_path / "store")
    other = second.create_run(again.to_dict(), status="running")
    train(again, root / "data", StoreSink(second, other))
    for seq in range(2):
        first = store.get_snapshot(run_id, seq).features
        np.testing.assert_array_equal(second.get_snapshot(other, seq).features, first)


def test_the_cli_exports_and_explains_what_it_cannot(recorded, tmp_path, capsys):
    store, run_id, root = recorded
    store_dir = str(store.root)
    out = tmp_path / "f.csv"
    assert main(["--store", store_dir, "export", str(run_id), "--format", "csv", "--out", str(out)]) == 0
    assert len(pd.read_csv(out)) == CONFIG["probe_size"]
    page = tmp_path / "replay.html"
    assert main(["--store", store_dir, "export", str(run_id), "--format", "html", "--out", str(page)]) == 0
    assert page.stat().st_size > 1_000_000  # plotly.js and the frames
    assert main(["--store", store_dir, "export", str(run_id), "--format", "csv", "--snapshot", "99"]) == 2
    assert "there is no 99" in capsys.readouterr().err
    assert main(["--store", store_dir, "export", "999", "--format", "yaml", "--out", str(tmp_path / "x")]) == 2
    assert "no run with id 999" in capsys.readouterr().err
    with pytest.raises(StoreError):
        export.snapshot_seq(RunStore(tmp_path / "empty"), RunStore(tmp_path / "empty").create_run({}), None)


def test_the_cli_exports_into_the_store_without_out_and_says_where(tmp_path, monkeypatch, capsys):
    store = RunStore(tmp_path / "store")
    run_id = store.create_run(RunConfig.from_dict(CONFIG).to_dict())
    monkeypatch.chdir(tmp_path)  # not where the file goes
    assert main(["--store", str(store.root), "export", str(run_id), "--format", "yaml"]) == 0
    written = settings.export_dir(store.root) / f"run{run_id}.yaml"
    assert RunConfig.from_yaml(written.read_text()) == RunConfig.from_dict(CONFIG)
    assert capsys.readouterr().out.strip() == f"wrote {written.resolve()}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]


def test_the_replay_is_one_offline_page_with_a_frame_per_snapshot(recorded, tmp_path):
    store, run_id, _ = recorded
    path = export.write_replay(store, run_id, tmp_path / "replay.html")
    page = path.read_text()
    assert "plotly.js v" in page  # plotly.js itself is inside
    assert '<script src="http' not in page  # nothing to fetch
    steps = [info.step for info in store.snapshot_index(run_id)]
    assert all(f'"step {step:,}"' in page for step in steps)


def _span(axis) -> float:
    return axis.range[1] - axis.range[0]


def test_a_replay_follows_the_run_or_holds_it_whole_and_thins_long_runs(recorded):
    from dataclasses import replace

    from dmlviz.view import RunView

    store, run_id, _ = recorded
    view = RunView(store, run_id)
    figure = view.replay(max_frames=2)  # the axes follow the run by default
    steps = [info.step for info in store.snapshot_index(run_id)]
    assert [frame.name for frame in figure.frames] == [f"step {steps[0]:,}", f"step {steps[-1]:,}"]
    assert len(figure.frames[0].data) == len(figure.frames[1].data)
    assert "run" in figure.layout.title.text and len(figure.layout.sliders[0].steps) == 2
    # The run is 3-D: each frame carries its own cube (the scene's ranges take effect with the redraw).
    scenes = [frame.layout.scene for frame in figure.frames]
    for scene in scenes:
        assert scene.aspectmode == "cube" and scene.xaxis.autorange is False
        assert _span(scene.xaxis) == pytest.approx(_span(scene.yaxis)) == pytest.approx(_span(scene.zaxis))
    assert _span(scenes[0].xaxis) < _span(scenes[1].xaxis)  # the features grew: the first frame is no dot
    assert figure.layout.scene.xaxis.range == scenes[0].xaxis.range

    fixed = view.replay(replace(view.default_options(), axes="fixed"), max_frames=2)
    scene = fixed.layout.scene  # one cube for the whole run, that the frames leave alone
    assert scene.xaxis.autorange is False and _span(scene.xaxis) == pytest.approx(_span(scene.zaxis))
    assert all(frame.layout.scene.xaxis.range is None for frame in fixed.frames)
    assert _span(scene.xaxis) >= _span(scenes[1].xaxis) * 0.99


def test_the_replay_moves_trails_and_histograms_with_the_slider(recorded):
    from dmlviz import geometry
    from dmlviz.view import RunView

    store, run_id, _ = recorded
    view = RunView(store, run_id)
    figure = view.replay()
    index = store.snapshot_index(run_id)
    labels = np.asarray(store.get_info(run_id, "probe_labels"))
    assert len(figure.frames) == len(index)
    for frame, info in zip(figure.frames, index, strict=True):
        bars = [trace for trace in frame.data if trace.type == "bar"]
        assert [(bar.name, bar.xaxis) for bar in bars] == [("same class", "x2"), ("different classes", "x2")]
        expected = geometry.distance_histogram(store.get_snapshot(run_id, info.seq).features, labels,
                                               metric=view.default_options().histogram)
        np.testing.assert_allclose(bars[0].y, expected.intra)
        assert f"step {info.step:,}" in frame.layout.title.text and f"overlap {expected.overlap:.1%}" in \
            frame.layout.title.text
        # Fitted to each frame: from 0 to its largest distance, and to its tallest bar with 5 % to spare.
        assert tuple(frame.layout.xaxis2.range) == pytest.approx((0.0, float(np.max(expected.edges))))
        tallest = max(np.max(expected.intra), np.max(expected.inter))
        assert tuple(frame.layout.yaxis2.range) == pytest.approx((0.0, 1.05 * tallest))
    # The legend in the right margin, beside neither plot: between them it covered the histogram's axis.
    from dmlviz.figures import LEGEND_MARGIN_PX

    space = figure.layout.scene.domain.x if figure.layout.scene.domain.x else figure.layout.xaxis.domain
    plots_end = max(space[1], figure.layout.xaxis2.domain[1])
    assert figure.layout.legend.x > plots_end and figure.layout.legend.xanchor == "left"
    assert figure.layout.margin.r == LEGEND_MARGIN_PX
    # The class means' trail grows frame by frame (up to the trail's length).
    trail_lengths = [len(next(t for t in frame.data if t.name == "class_means trail").x) for frame in figure.frames]
    assert trail_lengths == sorted(trail_lengths) and trail_lengths[-1] > trail_lengths[0]


def test_gif_and_mp4_have_a_frame_per_snapshot_at_slide_size(recorded, tmp_path):
    import imageio_ffmpeg

    from dmlviz import render

    store, run_id, _ = recorded
    count = len(store.snapshot_index(run_id))
    gif = Image.open(export.write_movie(store, run_id, tmp_path / "run.gif", "gif", fps=10))
    assert (gif.n_frames, gif.size, gif.info["loop"]) == (count, render.SIZE, 0)
    frames = []
    for i in range(count):
        gif.seek(i)
        frames.append(np.asarray(gif.convert("RGB")))
        assert gif.info["duration"] == (export.GIF_HOLD_MS if i == count - 1 else 100)
    assert not np.array_equal(frames[0], frames[-1])  # the features moved
    mp4 = export.write_movie(store, run_id, tmp_path / "run.mp4", "mp4", max_frames=3, fps=5)
    reader = imageio_ffmpeg.read_frames(str(mp4))
    meta = next(reader)
    assert tuple(meta["size"]) == render.SIZE and meta["fps"] == 5 and meta["codec"] == "h264"
    decoded = [np.frombuffer(frame, np.uint8).reshape(render.SIZE[1], render.SIZE[0], 3) for frame in reader]
    assert len(decoded) == 3
    assert np.abs(decoded[0].astype(int) - frames[0]).mean() < 8  # the same first picture, up to compression


def test_a_png_of_each_figure_at_a_snapshot(recorded, tmp_path):
    from dmlviz import render

    store, run_id, _ = recorded
    images = {}
    for figure in export.PNG_FIGURES:
        for snapshot in (0, -1):
            path = export.write_png(store, run_id, tmp_path / f"{figure}{snapshot}.png", figure, snapshot)
            image = Image.open(path)
            assert image.format == "PNG" and image.size == render.SIZE
            images[figure, snapshot] = np.asarray(image.convert("RGB"))
    for figure in export.PNG_FIGURES:
        assert not np.array_equal(images[figure, 0], images[figure, -1])  # each shows its own snapshot
    with pytest.raises(ValueError, match="features, histogram, curves"):
        export.write_png(store, run_id, tmp_path / "x.png", "weights")


def test_the_cli_writes_animations_and_pngs(recorded, tmp_path, capsys):
    store, run_id, _ = recorded
    store_dir = str(store.root)
    gif = tmp_path / "a.gif"
    assert main(["--store", store_dir, "export", str(run_id), "--format", "gif", "--frames", "2",
                 "--out", str(gif)]) == 0
    assert Image.open(gif).n_frames == 2
    png = tmp_path / "h.png"
    assert main(["--store", store_dir, "export", str(run_id), "--format", "png", "--figure", "histogram",
                 "--snapshot", "0", "--out", str(png)]) == 0
    assert Image.open(png).format == "PNG"
    assert main(["--store", store_dir, "export", str(run_id), "--format", "mp4", "--fps", "0"]) == 2
    assert "--fps must be at least 1" in capsys.readouterr().err
