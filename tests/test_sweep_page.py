"""The Sweep page through Streamlit's AppTest (editing, checking, saving, running, the results), and the
pure figures of ``dmlviz.sweep_figures`` it draws."""

from __future__ import annotations

import base64
import json
import time

import numpy as np
import plotly.io
import pytest
from pages import page

from dmlviz import settings, sweep
from dmlviz.engine import FreeRunning
from dmlviz.status import ACTIVE
from dmlviz.store import RunStore
from dmlviz.sweep_figures import CellSpace, mean_text, metric_figure, results_table, small_multiples

TINY = """\
base: {dataset: digits, device: cpu, steps: 20, probe_size: 100, snapshot_steps: 10, batch_size: 32}
axes:
  loss: [softmax, center]
seeds: 2
"""


@pytest.fixture
def folders(tmp_path, monkeypatch):
    monkeypatch.setenv(settings.STORE_DIR_ENV, str(tmp_path / "store"))
    monkeypatch.setenv(settings.DATA_DIR_ENV, str(tmp_path / "data"))
    return tmp_path / "store", tmp_path / "data"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A store holding the tiny sweep's four runs (2 losses × 2 seeds), trained once for the module."""
    import torch

    root = tmp_path_factory.mktemp("swept")
    store = RunStore(root / "store")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: a second thread only adds waiting
    try:
        outcomes = sweep.run(sweep.parse(TINY), store, root / "data", FreeRunning(), said=lambda _: None)
    finally:
        torch.set_num_threads(threads)
    assert outcomes == ["finished"] * 4
    (root / "data" / "sweeps").mkdir(parents=True)
    (root / "data" / "sweeps" / "tiny.yaml").write_text(TINY)
    return root


def numbers(array) -> np.ndarray:
    """A figure's array as its JSON carries it: plotly writes numeric arrays as base64 bytes with their dtype."""
    if isinstance(array, dict):
        return np.frombuffer(base64.b64decode(array["bdata"]), dtype=array["dtype"])
    return np.asarray(array)


def editor(app):
    return next(w for w in app.text_area if w.key.startswith("sweep_text."))


def test_a_new_sweep_starts_from_the_readme_s_example_on_digits(folders):
    app = page("sweep")
    text = editor(app).value
    assert "dataset: digits" in text and "loss: [normface, cosface, arcface]" in text and "seeds: 3" in text
    # NormFace has no margin: one cell for it, three for each of the others.
    assert [s.value for s in app.success] == ["7 cells × 3 seeds = 21 runs"]
    assert app.button(key="sweep_run").label == "Run sweep (21 runs to train)"
    assert app.selectbox(key="sweep_pick").value == ""


def test_a_broken_sweep_shows_each_mistake_with_its_line(folders):
    app = page("sweep")
    editor(app).set_value("base: {dataset: digits}\naxes:\n  lr: 0.1\n  colour: [red]\nseeds: 0\n").run()
    assert not app.exception
    messages = [e.value for e in app.error]
    assert "line 3: lr takes a list of values, e.g. [0.1, 0.5]" in messages
    assert any(m.startswith("line 4: 'colour' is not a setting to sweep") for m in messages)
    assert any(m.startswith("line 5: seeds is a count") for m in messages)
    assert not app.success and not [button for button in app.button if button.key == "sweep_run"]


@pytest.mark.parametrize("name", ["../outside", "a b", "sweep.yaml", ""])
def test_a_file_name_that_could_be_a_path_is_refused(folders, name):
    _, data = folders
    app = page("sweep")
    app.text_input(key="sweep_name.").set_value(name)
    app.button(key="sweep_save").click().run()
    assert not app.exception
    assert any("cannot be a sweep's name" in e.value for e in app.error)
    assert not (data / "sweeps").exists() and not (data / "outside.yaml").exists()
    assert "sweep" not in app.query_params


def test_a_saved_sweep_is_listed_and_opens_from_its_link(folders):
    _, data = folders
    app = page("sweep")
    editor(app).set_value(TINY).run()
    app.text_input(key="sweep_name.").set_value("tiny-losses")
    app.button(key="sweep_save").click().run()
    assert not app.exception
    assert (data / "sweeps" / "tiny-losses.yaml").read_text() == TINY
    assert app.query_params["sweep"] in ("tiny-losses", ["tiny-losses"])
    assert app.selectbox(key="sweep_pick").value == "tiny-losses"
    assert any("Saved as sweeps/tiny-losses.yaml" in s.value for s in app.success)

    opened = page("sweep", {"sweep": "tiny-losses"})
    assert opened.selectbox(key="sweep_pick").options == ["New sweep", "tiny-losses"]
    assert opened.selectbox(key="sweep_pick").value == "tiny-losses"
    assert editor(opened).value == TINY
    assert [s.value for s in opened.success] == ["2 cells × 2 seeds = 4 runs"]
    # A link naming no saved sweep (or a path) opens a new one, and says so.
    lost = page("sweep", {"sweep": "../../etc/passwd"})
    assert lost.selectbox(key="sweep_pick").value == "" and "no sweep" in lost.warning[0].value


def test_a_swept_store_shows_each_cell_s_mean_interval_plot_and_feature_space(trained, monkeypatch):
    monkeypatch.setenv(settings.STORE_DIR_ENV, str(trained / "store"))
    monkeypatch.setenv(settings.DATA_DIR_ENV, str(trained / "data"))
    app = page("sweep", {"sweep": "tiny"})
    plan, store = sweep.parse(TINY), RunStore(trained / "store")
    rows = sweep.results(plan, store)
    # Every run is stored: nothing to train, and the progress says so.
    assert app.button(key="sweep_run").disabled and app.get("progress")[0].proto.text == "4 of 4 runs finished"

    table = app.dataframe[0].value
    assert list(table["loss"]) == ["softmax", "center"] and list(table["runs"]) == ["2/2", "2/2"]
    for shown, row in zip(table["test accuracy"], rows, strict=True):
        assert shown == f"{row['test accuracy']:.3f} ± {row['test accuracy ± 95 %']:.3f}"

    chart = json.loads(app.get("plotly_chart")[0].proto.spec)
    assert [trace["x"] for trace in chart["data"]] == [["softmax", "center"]]
    assert chart["data"][0]["y"] == pytest.approx([row["test accuracy"] for row in rows])
    assert chart["data"][0]["error_y"]["array"] == pytest.approx([row["test accuracy ± 95 %"] for row in rows])

    grid = plotly.io.from_json(json.loads(app.get("component_instance")[0].proto.json_args)["spec"])
    titles = [a.text for a in grid.layout.annotations]
    assert titles == ["loss softmax<br>seed 0", "loss center<br>seed 0"]
    # Seed 0's final snapshot, drawn as stored (2-D features): every probe point, on shared ranges.
    first = min(r.id for r in store.list_runs() if r.config["loss"] == "softmax")
    final = store.get_snapshot(first, store.snapshot_index(first)[-1].seq).features
    drawn = np.concatenate([numbers(trace.x) for trace in grid.data if trace.xaxis == "x"])
    assert sorted(drawn) == pytest.approx(sorted(final[:, 0]))
    assert grid.layout.xaxis.range == grid.layout.xaxis2.range and grid.layout.xaxis.range[1] >= np.abs(final).max()

    app.selectbox(key="sweep_metric").set_value("P@1").run()
    chart = json.loads(app.get("plotly_chart")[0].proto.spec)
    assert chart["data"][0]["y"] == pytest.approx([row["P@1"] for row in rows])


def test_run_sweep_queues_only_what_the_store_lacks_and_names_its_runs(folders):
    store_dir, data = folders
    two = "base: {dataset: digits, device: cpu, steps: 5, probe_size: 50, batch_size: 16}\naxes: {loss: [softmax]}\n" \
          "seeds: 2\n"
    (data / "sweeps").mkdir(parents=True)
    (data / "sweeps" / "two.yaml").write_text(two)
    seed0, seed1 = sweep.parse(two).cells[0].configs
    store = RunStore(store_dir)
    # Seed 0 is in the store already (finished under another name): the sweep uses it again.
    kept = store.create_run(seed0.to_dict(), name="mine", config_hash=seed0.config_hash(), status="finished")
    app = page("sweep", {"sweep": "two"})
    assert app.button(key="sweep_run").label == "Run sweep (1 run to train)"
    app.button(key="sweep_run").click().run()
    assert not app.exception
    runs = store.list_runs()
    assert [(r.id == kept, r.name, r.config_hash) for r in runs] == [
        (False, "sweep · loss=softmax · seed 1", seed1.config_hash()), (True, "mine", seed0.config_hash())]
    deadline = time.monotonic() + 120
    while store.get_run(runs[0].id).status in ACTIVE and time.monotonic() < deadline:
        time.sleep(0.2)
    assert store.get_run(runs[0].id).status == "finished"
    again = page("sweep", {"sweep": "two"})
    assert again.button(key="sweep_run").disabled and again.button(key="sweep_run").label.endswith("is stored)")
    assert again.get("progress")[0].proto.text == "2 of 2 runs finished"


# -- the figures -------------------------------------------------------------------------------------------

ROWS = [
    {"loss": "normface", "hp.margin": "—", "runs": 3, "test accuracy": 0.90, "test accuracy ± 95 %": 0.01},
    {"loss": "cosface", "hp.margin": 0.5, "runs": 3, "test accuracy": 0.93, "test accuracy ± 95 %": 0.03},
    {"loss": "cosface", "hp.margin": 0.2, "runs": 3, "test accuracy": 0.91, "test accuracy ± 95 %": 0.02},
    {"loss": "arcface", "hp.margin": 0.2, "runs": 1, "test accuracy": 0.92, "test accuracy ± 95 %": None},
    {"loss": "arcface", "hp.margin": 0.5, "runs": 0, "test accuracy": None, "test accuracy ± 95 %": None},
]


def test_a_metric_against_a_numeric_axis_is_a_line_per_group_with_its_intervals():
    figure = metric_figure(ROWS, ["loss", "hp.margin"], "hp.margin", "test accuracy")
    assert figure.layout.xaxis.type == "linear"
    by_name = {trace.name: trace for trace in figure.data}
    assert list(by_name) == ["loss=normface (hp.margin —)", "loss=cosface", "loss=arcface"]
    # Sorted by the margin, the bars the rows' half-widths; a cell with no finished run is left out.
    cos = by_name["loss=cosface"]
    assert cos.x == (0.2, 0.5) and cos.y == (0.91, 0.93) and cos.error_y.array == (0.02, 0.03)
    assert by_name["loss=arcface"].x == (0.2,) and by_name["loss=arcface"].error_y.array == (None,)
    # The cell the margin does not reach: flat across the margins, a baseline.
    base = by_name["loss=normface (hp.margin —)"]
    assert base.x == (0.2, 0.5) and base.y == (0.90, 0.90) and base.error_y.array == (0.01, 0.01)


def test_a_metric_against_a_categorical_axis_groups_by_the_other_axes():
    figure = metric_figure(ROWS, ["loss", "hp.margin"], "loss", "test accuracy")
    assert figure.layout.xaxis.type == "category"
    assert [(t.name, t.x) for t in figure.data] == [("hp.margin=—", ("normface",)),
                                                   ("hp.margin=0.5", ("cosface",)),
                                                   ("hp.margin=0.2", ("cosface", "arcface"))]
    assert figure.data[2].error_y.array == (0.02, None)


def test_the_table_writes_mean_and_interval_with_each_number_s_decimals():
    row = {"loss": "arcface", "runs": 2, **{f"{c}{s}": None for c in sweep.RESULTS.values() for s in ("", " ± 95 %")}}
    row.update({"test accuracy": 0.91234, "test accuracy ± 95 %": 0.0123, "intra angle (°)": 12.34})
    line = results_table([row], ["loss"], seeds=3)[0]
    assert line["loss"] == "arcface" and line["runs"] == "2/3"
    assert line["test accuracy"] == "0.912 ± 0.012" and line["intra angle (°)"] == "12.3" and line["MAP@R"] == "—"
    assert mean_text(3.0, 0.5, 0) == "3 ± 0"


def test_small_multiples_share_their_ranges_and_project_wider_features():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 20)
    names = ["zero", "one", "two"]
    spaces = [CellSpace("2-D", rng.normal(size=(60, 2)), labels, names),
              CellSpace("wide", 5 * rng.normal(size=(60, 8)), labels, names),
              CellSpace("3-D", rng.normal(size=(60, 3)), labels, names)]
    figure = small_multiples(spaces)
    ranges = [figure.layout[f"{axis}{suffix}"].range for axis in ("xaxis", "yaxis") for suffix in ("", "2", "3")]
    assert all(r == ranges[0] for r in ranges)
    extent = ranges[0][1]
    assert extent >= max(np.abs(np.concatenate([t.x for t in figure.data])).max(), 1.0)
    assert figure.layout.annotations[1].text.startswith("wide · PCA ")
    assert len(figure.data) == 9 and [t.showlegend for t in figure.data[:4]] == [True, True, True, False]
    # Every cell 3-D: scenes with the same cube.
    cubes = small_multiples([spaces[2], CellSpace("3-D b", 3 * rng.normal(size=(60, 3)), labels, names)])
    assert {t.type for t in cubes.data} == {"scatter3d"}
    assert cubes.layout.scene.xaxis.range == cubes.layout.scene2.zaxis.range
    # Directions: unit length, so the square is about the unit circle.
    assert small_multiples(spaces, directions=True).layout.xaxis.range == pytest.approx((-1.05, 1.05), abs=0.01)
