"""The pages render over real data: the home page lists stored runs, Learn shows every loss."""

import numpy as np
from streamlit.testing.v1 import AppTest

from dmlviz import settings
from dmlviz.config import RunConfig
from dmlviz.losses import get_spec, loss_names
from dmlviz.losses.catalog import preset
from dmlviz.snapshot import Snapshot
from dmlviz.store import RunStore


def test_home_lists_stored_runs(tmp_path, monkeypatch):
    monkeypatch.setenv(settings.STORE_DIR_ENV, str(tmp_path))
    store = RunStore(tmp_path)
    run_id = store.create_run({"loss": "center", "dataset": "mnist", "feature_dim": 2}, name="petals")
    store.add_snapshot(run_id, Snapshot(5, 0.1, 1.0, "final", {"test_acc": 0.93}, np.zeros((3, 2), np.float32),
                                        np.zeros((10, 2), np.float32)))
    app = AppTest.from_file("../app.py").run(timeout=30)
    assert not app.exception
    table = app.dataframe[0].value
    assert list(table["name"]) == ["petals"] and list(table["test accuracy"]) == [0.93]


def learn_page() -> AppTest:
    app = AppTest.from_file("../app.py").run(timeout=30)
    app.switch_page("app_pages/learn.py").run(timeout=60)
    assert not app.exception
    return app


def card_titles(app: AppTest) -> list[str]:
    return [m.value for m in app.markdown if m.value.startswith("#### ")]


def test_learn_shows_a_card_per_loss_with_reconstructed_ones_marked():
    app = learn_page()
    assert not app.exception
    titles = card_titles(app)
    assert len(titles) == len(loss_names())
    for name in loss_names():
        spec = get_spec(name)
        (title,) = [t for t in titles if t.startswith(f"#### {spec.display_name} ")]
        assert ("reconstructed from the abstract" in title) == spec.reconstructed
        assert ("our design from published parts" in title) == spec.our_design
    assert len(app.latex) == len(loss_names())


def test_learn_search_filters_cards():
    app = learn_page()
    app.text_input(key="learn_search").input("Softmax + center loss").run(timeout=60)
    assert [t.split("  ")[0] for t in card_titles(app)] == ["#### Softmax + center loss"]


def test_train_page_reads_a_preset_from_the_url():
    query = RunConfig.from_dict(preset(get_spec("center"), 3)).to_query()
    app = AppTest.from_file("../app.py")
    app.query_params.update(query)
    app.run(timeout=30).switch_page("app_pages/train.py").run(timeout=30)
    assert not app.exception
    assert "loss: center" in app.code[0].value and "feature_dim: 3" in app.code[0].value


def test_train_page_explains_a_garbled_url():
    app = AppTest.from_file("../app.py")
    app.query_params.update({"loss": "nope", "lr": "fast"})
    app.run(timeout=30).switch_page("app_pages/train.py").run(timeout=30)
    assert not app.exception
    assert "lr must be a number" in app.error[0].value and "unknown loss 'nope'" in app.error[0].value


def test_the_demo_button_starts_a_run_and_a_missing_dataset_is_explained(tmp_path, monkeypatch):
    import time

    monkeypatch.setenv(settings.STORE_DIR_ENV, str(tmp_path / "store"))
    monkeypatch.setenv(settings.DATA_DIR_ENV, str(tmp_path / "empty"))  # no MNIST here, and no network
    app = AppTest.from_file("../app.py", default_timeout=60).run()
    app.button(key="demo").click().run()
    assert not app.exception
    store = RunStore(tmp_path / "store")
    (record,) = store.list_runs()
    assert record.config["loss"] == "center" and record.config["dataset"] == "mnist"
    deadline = time.monotonic() + 60
    while store.get_run(record.id).active and time.monotonic() < deadline:
        time.sleep(0.2)
    record = store.get_run(record.id)
    assert record.status == "failed" and "MNIST" in record.error
    app.run()
    assert any("MNIST" in e.value for e in app.error)  # the live page says why, in words
