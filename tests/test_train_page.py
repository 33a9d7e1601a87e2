"""The Train page's flow in Streamlit's AppTest: presets and links to settings, settings to the URL,
bad settings to messages, and Start to a real run in the store that the page then draws."""

import base64
import json
import time

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from dmlviz import settings
from dmlviz.config import RunConfig
from dmlviz.presets import get_preset
from dmlviz.store import RunStore
from ui.live import neighbour_caption


@pytest.fixture
def store_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(settings.STORE_DIR_ENV, str(tmp_path / "store"))
    monkeypatch.setenv(settings.DATA_DIR_ENV, str(tmp_path / "data"))
    return tmp_path / "store"


def array_length(value) -> int:
    """Plotly writes NumPy arrays as base64 typed arrays."""
    if isinstance(value, dict):
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"]).size
    return len(value)


def train_page(query: dict[str, str] | None = None) -> AppTest:
    app = AppTest.from_file("../app.py", default_timeout=60)
    app.query_params.update(query or {})
    app.run()
    app.switch_page("app_pages/train.py").run()
    return app


def widget(app: AppTest, key: str):
    return next(w for w in app.sidebar if getattr(w, "key", None) == key)


def test_a_link_sets_every_setting_and_the_url_keeps_them(store_dir):
    query = {"dataset": "digits", "loss": "arcface", "feature_dim": "3", "hp.margin": "0.3", "seed": "7",
             "epochs": "2"}
    app = train_page(query)
    assert not app.exception and not app.error
    assert widget(app, "cfg.loss").value == "arcface"
    assert widget(app, "cfg.feature_dim").value == 3
    assert widget(app, "hp.arcface.margin").value == pytest.approx(0.3)
    assert widget(app, "cfg.seed").value == 7
    assert RunConfig.from_query(dict(app.query_params)).config_hash() == RunConfig.from_query(query).config_hash()


def test_a_preset_fills_the_settings_and_the_url(store_dir):
    app = train_page()
    preset = get_preset("center-loss")
    widget(app, "preset").select(preset.title).run()
    assert not app.exception
    assert widget(app, "cfg.loss").value == "center"
    assert RunConfig.from_query(dict(app.query_params)).config_hash() == preset.config().config_hash()
    assert any(preset.what_to_watch in i.value for i in app.info)


def test_changing_a_setting_rewrites_the_url(store_dir):
    app = train_page({"dataset": "digits"})
    widget(app, "cfg.feature_dim").set_value(3).run()
    assert app.query_params["feature_dim"] == ["3"] or app.query_params["feature_dim"] == "3"


def test_bad_settings_in_a_link_are_listed_and_the_defaults_shown(store_dir):
    app = train_page({"loss": "arcfase", "lr": "-1", "hp.margin": "9"})
    assert not app.exception
    (message,) = [e.value for e in app.error]
    assert "arcfase" in message and "did you mean 'arcface'" in message and "lr must be between" in message
    assert widget(app, "cfg.loss").value == RunConfig().loss


def test_settings_that_cannot_train_disable_start(store_dir):
    app = train_page({"dataset": "digits"})
    widget(app, "cfg.classes").input("3").run()
    assert any("at least 2 different classes" in e.value for e in app.error)
    assert app.button(key="start").disabled


@pytest.mark.slow
def test_start_trains_a_real_run_and_the_page_draws_it(store_dir):
    app = train_page({"dataset": "digits", "steps": "30", "probe_size": "200", "batch_size": "32"})
    app.button(key="start").click().run()
    assert not app.exception
    store = RunStore(store_dir)
    (record,) = store.list_runs()
    assert record.config["dataset"] == "digits" and record.config["steps"] == 30
    assert app.query_params["run"] in (str(record.id), [str(record.id)])
    deadline = time.monotonic() + 90
    while store.get_run(record.id).active and time.monotonic() < deadline:
        time.sleep(0.2)
    assert store.get_run(record.id).status == "finished"
    app.run()  # AppTest does not tick run_every: redraw by hand
    app.run()
    assert not app.exception
    status = app.get("progress")[0].proto.text
    assert "step 30 / 30" in status and "finished" in status
    charts = [json.loads(c.proto.json_args)["spec"] for c in app.get("component_instance")]
    assert len(charts) == 3  # features, histogram, curves
    features = json.loads(charts[0])
    points = sum(array_length(trace["x"]) for trace in features["data"] if "customdata" in trace)
    assert points == 200  # every probe image
    assert any("Timeline" in s.label for s in app.select_slider)
    numbers = next(m.value for m in app.markdown if "dmlviz-metrics" in m.value)
    assert all(f">{label}<" in numbers for label in ("probe accuracy", "P@1", "Fisher ratio"))


def test_the_charts_are_in_place_before_a_run_starts(store_dir):
    # Mounted before Start, the charts have plotly.js loaded when the first frame arrives.
    app = train_page()
    assert not app.exception
    assert any("press **Start**" in i.value for i in app.info)
    specs = [json.loads(json.loads(c.proto.json_args)["spec"]) for c in app.get("component_instance")]
    assert len(specs) == 3
    assert [t["type"] for t in specs[0]["data"]] == ["scattergl"]  # WebGL ready for the first frame
    assert "Press Start" in specs[0]["layout"]["annotations"][0]["text"]


def test_the_inspector_says_which_distance_each_neighbour_is_at():
    assert neighbour_caption(True, "1", 0.16512, angular=False) == "✓ 1 · distance 0.165"
    assert neighbour_caption(False, "7", 12.345, angular=True) == "✗ 7 · angle 12.3°"



def walk(node):
    """The page's elements in the order they are drawn."""
    yield node
    for child in getattr(node, "children", {}).values():
        yield from walk(child)


def test_the_charts_come_first_and_a_projector_gets_nothing_else(store_dir):
    # The feature space is the page's first thing: what the run is and its terminal recipe come after the
    # charts; with present=1 they are left out, and so are the view options.
    app = train_page({"dataset": "digits"})
    order = [node.type for node in walk(app.main)]
    assert order.index("expander") > max(i for i, kind in enumerate(order) if kind == "component_instance")
    assert [node.label for node in walk(app.main) if node.type == "expander"] == ["Reproduce from a terminal"]
    assert any(node.type == "popover" for node in walk(app.main))  # the view options, at the end of the buttons
    present = train_page({"dataset": "digits", "present": "1"})
    assert not present.exception
    assert not [node for node in walk(present.main) if node.type in ("expander", "caption")]
    assert not any(node.type == "popover" for node in walk(present.main))
    assert len(present.get("component_instance")) == 3
