"""The Compare page through Streamlit's AppTest: presets and links fill the settings, Start all trains
the losses together on equal terms, and the page draws them side by side."""

import json
import time

import pytest
from streamlit.testing.v1 import AppTest

from dmlviz import settings
from dmlviz.store import RunStore


@pytest.fixture
def store_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(settings.STORE_DIR_ENV, str(tmp_path / "store"))
    monkeypatch.setenv(settings.DATA_DIR_ENV, str(tmp_path / "data"))
    return tmp_path / "store"


def compare_page(query: dict[str, str] | None = None) -> AppTest:
    app = AppTest.from_file("../app.py", default_timeout=60)
    app.query_params.update(query or {})
    app.run()
    app.switch_page("app_pages/compare.py").run()
    return app


def sidebar_widget(app: AppTest, key: str):
    return next(w for w in app.sidebar if getattr(w, "key", None) == key)


def test_a_preset_fills_the_losses_and_the_url(store_dir):
    app = compare_page()
    sidebar_widget(app, "cmp.preset").set_value("NormFace vs CosFace vs ArcFace (3-D sphere, MNIST)").run()
    assert not app.exception
    assert [sidebar_widget(app, f"cmp.loss{i}").value for i in (1, 2, 3)] == ["normface", "cosface", "arcface"]
    query = {k: v[0] if isinstance(v, list) else v for k, v in app.query_params.items()}
    assert query["loss1"] == "normface" and query["loss3"] == "arcface" and query["feature_dim"] == "3"
    assert any("same backbone weights" in c.value for c in app.caption)


def test_a_bad_link_is_explained(store_dir):
    app = compare_page({"loss1": "softmax", "loss2": "no-such-loss", "epochs": "-1"})
    assert not app.exception
    text = " ".join(e.value for e in app.error)
    assert "no-such-loss" in text and "epochs" in text


def test_start_all_trains_the_losses_together_on_equal_terms(store_dir):
    app = compare_page({"dataset": "digits", "loss1": "softmax", "loss2": "center", "steps": "30",
                        "probe_size": "200", "batch_size": "32"})
    app.button(key="compare_start").click().run()
    assert not app.exception
    store = RunStore(store_dir)
    runs = sorted(store.list_runs(), key=lambda r: r.id)
    assert [r.config["loss"] for r in runs] == ["softmax", "center"]
    deadline = time.monotonic() + 120
    while any(store.get_run(r.id).active for r in runs) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [store.get_run(r.id).status for r in runs] == ["finished", "finished"]
    first, second = (r.id for r in runs)
    assert store.get_info(first, "backbone_hash") == store.get_info(second, "backbone_hash")
    assert (store.get_info(first, "first_batch") == store.get_info(second, "first_batch")).all()
    assert [i.step for i in store.snapshot_index(first)] == [i.step for i in store.snapshot_index(second)]
    app.run()
    app.run()
    assert not app.exception
    specs = [json.loads(json.loads(c.proto.json_args)["spec"]) for c in app.get("component_instance")]
    grid = specs[0]
    assert [a["text"] for a in grid["layout"]["annotations"]] == ["softmax · step 30", "center · step 30"]
    table = app.table[0].value
    assert list(table["run"]) == ["softmax", "center"] and table["test accuracy"].notna().all()
    assert app.query_params["runs"] in (f"{first},{second}", [f"{first},{second}"])
    timeline = next(s for s in app.select_slider if "Timeline" in s.label)
    timeline.set_value(0).run()  # back to the start: every panel moves there
    assert not app.exception
    grid = json.loads(json.loads(app.get("component_instance")[0].proto.json_args)["spec"])
    assert [a["text"] for a in grid["layout"]["annotations"]] == ["softmax · step 0", "center · step 0"]


def test_stored_runs_that_differ_in_more_than_the_loss_are_flagged(store_dir):
    from dmlviz.config import RunConfig

    store = RunStore(store_dir)
    a = store.create_run(RunConfig(loss="softmax", seed=0).to_dict(), status="finished")
    b = store.create_run(RunConfig(loss="center", seed=3).to_dict(), status="finished")
    app = compare_page()
    app.multiselect(key="compare_pick").set_value([a, b]).run()
    assert not app.exception
    warning = " ".join(w.value for w in app.warning)
    assert "not on equal terms" in warning and "seed: 0 / 3" in warning
    app.button(key="compare_show").click().run()
    assert not app.exception
    assert app.query_params["runs"] in (f"{a},{b}", [f"{a},{b}"])


def test_the_live_step_is_one_every_training_run_has_stored():
    from types import SimpleNamespace as NS

    from ui.compare import _common_step

    def index(*steps):
        return [NS(step=s) for s in steps]

    running, ended = NS(active=True), NS(active=False)
    # The third run has not yet written step 5: every panel shows step 1, not two at 5 and one at 1.
    assert _common_step([index(0, 1, 5), index(0, 1, 5), index(0, 1)], [running] * 3) == 1
    # A run that diverged at step 1 does not hold the others back.
    assert _common_step([index(0, 1, 5), index(0, 1)], [running, ended]) == 5
    assert _common_step([index(0, 1, 5), index(0, 1, 7)], [ended, ended]) == 7
