"""The Runs page through Streamlit's AppTest: the history, a run opened and replayed, renamed, and
deleted (its data gone, the other runs untouched)."""

import pytest
from streamlit.testing.v1 import AppTest

from dmlviz import settings
from dmlviz.config import RunConfig
from dmlviz.engine import train
from dmlviz.runner import StoreSink
from dmlviz.store import RunStore


@pytest.fixture
def stored(tmp_path, monkeypatch):
    monkeypatch.setenv(settings.STORE_DIR_ENV, str(tmp_path / "store"))
    monkeypatch.setenv(settings.DATA_DIR_ENV, str(tmp_path / "data"))
    store = RunStore(tmp_path / "store")
    ids = []
    for loss in ("softmax", "center"):
        config = RunConfig(dataset="digits", device="cpu", loss=loss, steps=15, batch_size=32, probe_size=100,
                           snapshot_steps=5)
        run_id = store.create_run(config.to_dict(), status="running")
        result = train(config, tmp_path / "data", StoreSink(store, run_id))
        store.set_status(run_id, result.outcome)
        ids.append(run_id)
    failed = store.create_run(RunConfig(loss="arcface").to_dict(), status="running")
    store.set_status(failed, "failed", error="the worker process was killed by SIGKILL")
    return store, ids, failed


def runs_page() -> AppTest:
    app = AppTest.from_file("../app.py", default_timeout=60)
    app.run()
    app.switch_page("app_pages/runs.py").run()
    return app


def test_history_replay_rename_and_delete(stored):
    store, (first, second), failed = stored
    app = runs_page()
    assert not app.exception
    table = app.dataframe[0].value
    assert set(table["id"]) == {first, second, failed}
    assert table.set_index("id").loc[failed, "why it ended"].startswith("the worker process was killed")
    assert table.set_index("id")["test accuracy"].isna()[failed]  # nothing measured: shown as the other pages do
    assert app.dataframe[0].proto.placeholder == "—"
    app.session_state["runs_open"] = first
    app.run()
    assert not app.exception
    replay = app.get("plotly_chart")[0]
    assert '"frames"' in replay.proto.spec and "step 15" in replay.proto.spec
    app.text_input(key=f"name-{first}").set_value("petals").run()
    app.button(key="rename").click().run()
    assert store.get_run(first).name == "petals"
    app.checkbox(key=f"confirm-{first}").check().run()
    app.button(key="delete").click().run()
    assert not app.exception
    assert {r.id for r in store.list_runs()} == {second, failed}
    assert store.count_snapshots(second) > 0 and store.series(second)["step"].size > 0


def test_a_failed_run_with_nothing_recorded_says_why(stored):
    store, _, failed = stored
    app = runs_page()
    app.session_state["runs_open"] = failed
    app.run()
    assert not app.exception
    assert any("killed by SIGKILL" in w.value for w in app.warning)
    assert any("recorded nothing" in i.value for i in app.info)


def test_an_interrupted_run_replays_what_it_recorded(stored, tmp_path):
    store, _, _ = stored
    config = RunConfig(dataset="digits", device="cpu", steps=15, batch_size=32, probe_size=100, snapshot_steps=5)
    run_id = store.create_run(config.to_dict(), status="running")
    train(config, tmp_path / "data", StoreSink(store, run_id))  # its process then stops before it records its end
    store.set_status(run_id, "interrupted", error="the app that started this run stopped; what it recorded is kept")
    app = runs_page()
    app.session_state["runs_open"] = run_id
    app.run()
    assert not app.exception
    assert any("interrupted" in w.value for w in app.warning)
    spec = app.get("plotly_chart")[0].proto.spec
    assert all(f'"step {info.step:,}"' in spec for info in store.snapshot_index(run_id))


def test_tags_are_added_and_filter_the_history(stored):
    store, (first, second), failed = stored
    app = runs_page()
    app.session_state["runs_open"] = first
    app.run()
    app.multiselect(key=f"tags-{first}").set_value(["lecture 3", "petals"]).run()
    assert not app.exception
    assert store.get_run(first).tags == ["lecture 3", "petals"]
    app.multiselect(key="runs_tags").set_value(["petals"]).run()
    assert list(app.dataframe[0].value["id"]) == [first]
    app.multiselect(key="runs_tags").set_value([]).run()
    assert set(app.dataframe[0].value["id"]) == {first, second, failed}


def test_every_export_is_offered_for_the_run_and_a_chosen_snapshot(stored):
    store, (first, _), _ = stored
    app = runs_page()
    app.session_state["runs_open"] = first
    app.run()
    labels = [button.proto.label for button in app.get("download_button")]
    assert labels == ["Replay (HTML)", "Animation (GIF)", "Animation (MP4)", "Config (YAML)", "Features (PNG)",
                      "Histogram (PNG)", "Curves (PNG)", "Features (CSV)", "Features (Parquet)",
                      "TensorBoard projector (zip)"]
    snapshot = app.select_slider(key=f"export_snapshot-{first}")
    index = store.snapshot_index(first)
    assert snapshot.options == [f"step {info.step:,} · epoch {info.epoch:.2f}" for info in index]
    assert snapshot.value == len(index) - 1  # the last, unless another is chosen


def test_on_a_public_server_only_the_visitor_who_started_a_run_may_change_it(stored, monkeypatch):
    """Another visitor's run (or the command line's) can be replayed and exported, not renamed, tagged or
    deleted; the visitor's own run can."""
    from ui import resources

    store, _, _ = stored
    monkeypatch.setenv(settings.PUBLIC_ENV, "1")
    monkeypatch.setattr(resources, "visitor", lambda: "me")
    config = RunConfig(dataset="digits", device="cpu", steps=5, probe_size=100, snapshot_steps=5).to_dict()
    theirs, mine = store.create_run(config, owner="them"), store.create_run(config, owner="me")
    for run_id in (theirs, mine):
        store.set_status(run_id, "stopped")
    app = runs_page()
    for run_id, allowed in ((theirs, False), (mine, True)):
        app.session_state["runs_open"] = run_id
        app.run()
        assert not app.exception
        said = "Another visitor started this run" in " ".join(c.value for c in app.caption)
        assert said != allowed
        assert app.button(key="rename").disabled != allowed and app.text_input(key=f"name-{run_id}").disabled != allowed
        assert app.multiselect(key=f"tags-{run_id}").disabled != allowed
        app.checkbox(key=f"confirm-{run_id}").check().run()
        assert app.button(key="delete").disabled != allowed
        assert app.get("download_button")  # exports stay
    monkeypatch.delenv(settings.PUBLIC_ENV)  # a classroom server: everyone may
    app.session_state["runs_open"] = theirs
    app.run()
    assert not app.button(key="rename").disabled


def test_a_store_that_fails_while_the_server_runs_is_said_not_raised(stored, monkeypatch):
    """A store that opened at start and then fails (its log removed under running writers, a disk gone):
    the Runs page says so instead of showing a raw exception."""
    from dmlviz.store import StoreFault

    app = runs_page()
    assert not app.exception

    def fail(self, *args, **kwargs):
        raise StoreFault("the run store's write-ahead log was removed while it was in use")

    monkeypatch.setattr(RunStore, "list_runs", fail)
    app.run()
    assert not app.exception
    assert any("The stored runs cannot be read: the run store's write-ahead log" in e.value for e in app.error)


def test_the_runs_page_offers_a_download_for_every_exporter(stored):
    """The page's buttons come from export.EXPORTERS: one per exporter and figure, keyed export_<format>[_<figure>]."""
    from dmlviz.export import EXPORTERS

    _, (first, _), _ = stored
    app = runs_page()
    app.session_state["runs_open"] = first
    app.run()
    buttons = {button.key: button.proto.label for button in app.get("download_button")}
    expected = {f"export_{e.format}" + (f"_{figure}" if figure else ""): e.label_for(figure)
                for e in EXPORTERS.values() for figure in e.figures or (None,)}
    assert buttons == expected
    assert set(buttons) == {"export_html", "export_gif", "export_mp4", "export_yaml", "export_png_features",
                            "export_png_histogram", "export_png_curves", "export_csv", "export_parquet",
                            "export_tensorboard"}
