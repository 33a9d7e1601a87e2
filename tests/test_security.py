"""A public host: no setting names a path outside the data folder, no user file is unpickled, and
DMLVIZ_PUBLIC turns custom data off and caps runs, wherever a run is submitted. See docs/RELIABILITY.md."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from pages import page, widget
from streamlit.testing.v1 import AppTest

from dmlviz import settings
from dmlviz.cli import main
from dmlviz.config import ConfigError, RunConfig
from dmlviz.data import DataError, DatasetUnavailable, load_raw
from dmlviz.runner import Runner, default_max_concurrent
from dmlviz.settings import Limits
from dmlviz.store import RunStore

ESCAPES = ["../x", "..", "a/../../b", "/etc/passwd", "a\\b", "x..", "C:x", "%2e%2e%2fetc", "a\x00b", " ", ""]


# -- path traversal ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ESCAPES)
def test_a_custom_name_that_could_leave_the_data_folder_is_refused_by_validation(name):
    with pytest.raises(ConfigError, match="custom dataset names are the name of a folder or .npz file"):
        RunConfig.from_dict({"dataset": f"custom:{name}"})


@pytest.mark.parametrize("name", ESCAPES)
def test_the_loader_refuses_them_too_and_reads_nothing_outside(tmp_path, name):
    """Also for a config built without validation (``RunConfig(...)``): the data layer checks again."""
    (tmp_path / "custom").mkdir()
    (tmp_path / "x").mkdir()  # what "../x" would reach
    with pytest.raises((DataError, DatasetUnavailable)) as caught:  # unavailable: no such dataset in custom/
        load_raw(f"custom:{name}", tmp_path)
    assert str(tmp_path / "custom") in str(caught.value)


def test_cli_refuses_a_custom_name_leading_out(tmp_path, capsys):
    assert main(["--store", str(tmp_path), "train", "--dataset", "custom:../../etc/passwd"]) == 2
    assert "error: custom dataset names are" in capsys.readouterr().err
    assert RunStore(tmp_path).list_runs() == []


@pytest.fixture
def dirs(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv(settings.STORE_DIR_ENV, str(tmp_path / "store"))
    monkeypatch.setenv(settings.DATA_DIR_ENV, str(tmp_path / "data"))
    (tmp_path / "data" / "custom" / "shapes" / "a").mkdir(parents=True)
    return tmp_path


@pytest.mark.parametrize("name", ["../../etc", "..%2F..%2Fetc", "/etc/passwd"])
def test_train_link_naming_a_path_outside_is_refused_and_the_default_dataset_shown(dirs, name):
    app = page("train", {"dataset": f"custom:{name}", "seed": "3"})
    assert any("custom dataset names are" in e.value for e in app.error)
    assert widget(app, "cfg.dataset").value == RunConfig().dataset and widget(app, "cfg.seed").value == 3


def test_compare_link_naming_a_path_outside_is_refused(dirs):
    app = page("compare", {"dataset": "custom:../../etc", "loss1": "softmax", "loss2": "center"})
    assert any("custom dataset names are" in e.value for e in app.error)
    assert widget(app, "cmp.dataset").value == RunConfig().dataset


# -- no pickles ---------------------------------------------------------------------------------------


class Payload:
    """Unpickling this would create a file: the proof that a pickle in a user's .npz was run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


def test_a_pickle_inside_a_users_npz_is_never_run(tmp_path):
    marker = tmp_path / "pwned"
    images = np.zeros((4, 8, 8), np.uint8)
    (tmp_path / "custom").mkdir()
    np.savez(tmp_path / "custom" / "evil.npz", x_train=np.array([Payload(marker)], dtype=object),
             y_train=np.array([0, 1, 0, 1]), x_test=images, y_test=np.array([0, 1, 0, 1]))
    with pytest.raises(DataError, match="Object arrays cannot be loaded"):
        load_raw("custom:evil", tmp_path)
    assert not marker.exists()


# -- the public-demo limits ---------------------------------------------------------------------------


def test_limits_come_from_the_environment(monkeypatch):
    for name in (settings.PUBLIC_ENV, settings.MAX_EPOCHS_ENV, settings.MAX_RUNS_ENV, settings.MAX_RUN_MB_ENV,
                 settings.MAX_RUN_MEMORY_MB_ENV, settings.MAX_QUEUE_ENV, settings.MAX_CUSTOM_MB_ENV):
        monkeypatch.delenv(name, raising=False)
    assert settings.limits() == Limits()
    monkeypatch.setenv(settings.PUBLIC_ENV, "1")
    public = Limits(custom_datasets=False, max_epochs=settings.PUBLIC_MAX_EPOCHS, max_runs=settings.PUBLIC_MAX_RUNS,
                    max_run_mb=settings.PUBLIC_MAX_RUN_MB, max_run_memory_mb=settings.PUBLIC_MAX_RUN_MEMORY_MB,
                    max_queue=settings.PUBLIC_MAX_QUEUE, owner_only=True)
    assert settings.limits() == public
    monkeypatch.setenv(settings.MAX_EPOCHS_ENV, "2.5")
    monkeypatch.setenv(settings.MAX_RUNS_ENV, "3")
    monkeypatch.setenv(settings.MAX_RUN_MB_ENV, "50")
    monkeypatch.setenv(settings.MAX_QUEUE_ENV, "4")
    assert settings.limits() == replace(public, max_epochs=2.5, max_runs=3, max_run_mb=50.0, max_queue=4)
    monkeypatch.setenv(settings.MAX_EPOCHS_ENV, "lots")
    with pytest.raises(settings.SettingsError, match="\\$DMLVIZ_MAX_EPOCHS must be a positive number, got 'lots'"):
        settings.limits()
    monkeypatch.setenv(settings.MAX_EPOCHS_ENV, "5")
    monkeypatch.setenv(settings.MAX_RUNS_ENV, "1.5")
    with pytest.raises(settings.SettingsError, match="\\$DMLVIZ_MAX_RUNS must be a positive whole number"):
        settings.limits()


PUBLIC = Limits(custom_datasets=False, max_epochs=5.0)


@pytest.mark.parametrize(("settings_", "message"), [
    ({"dataset": "custom:shapes"}, "custom datasets are turned off on this server; choose mnist, fashion-mnist, "
                                   "cifar10, digits"),
    ({"epochs": 6}, "epochs must be at most 5 on this server, got 6"),
    # 5 epochs of digits' 1348 training images in batches of 128: 52 steps.
    ({"dataset": "digits", "steps": 53, "batch_size": 128}, "steps must be at most 52 with batch_size 128 on this "
     "server (5 epochs of Digits (scikit-learn, offline)), got 53"),
])
def test_a_public_server_refuses_custom_data_and_long_runs(settings_, message):
    config = RunConfig.from_dict(settings_)
    assert config.limit_problems(PUBLIC) == [message]
    assert config.limit_problems(Limits()) == []  # an ordinary installation allows them


def test_a_browser_is_one_visitor_whatever_mask_its_cookie_comes_with():
    """Streamlit sends its XSRF cookie again with every page, masked anew: the token inside is what stays."""
    from ui.resources import _browser_token

    token = bytes(range(16))
    masked = [f"2|{mask.hex()}|{bytes(b ^ mask[i % 4] for i, b in enumerate(token)).hex()}|1700000000"
              for mask in (b"\x01\x02\x03\x04", b"\xff\x00\xaa\x55")]
    assert masked[0] != masked[1] and {_browser_token(m) for m in masked} == {token.hex()}
    assert _browser_token(None) is None and _browser_token("") is None
    assert _browser_token("2|zz|yy|1") == "2|zz|yy|1"  # not tornado's format: the cookie as it is


def test_only_a_runs_visitor_owns_it_on_a_public_server(monkeypatch):
    from ui import resources

    monkeypatch.setattr(resources, "visitor", lambda: "me")
    monkeypatch.delenv(settings.PUBLIC_ENV, raising=False)
    assert resources.owns("them") and resources.owns(None)  # a classroom server: everyone may
    monkeypatch.setenv(settings.PUBLIC_ENV, "1")
    assert resources.owns("me") and not resources.owns("them") and not resources.owns(None)


def test_a_public_server_allows_runs_within_its_caps():
    assert RunConfig.from_dict({"dataset": "digits", "steps": 52, "epochs": 900}).limit_problems(PUBLIC) == []
    assert RunConfig.from_dict({"epochs": 5}).limit_problems(PUBLIC) == []


@pytest.fixture
def public(monkeypatch):
    monkeypatch.setenv(settings.PUBLIC_ENV, "1")
    monkeypatch.setenv(settings.MAX_EPOCHS_ENV, "5")


def test_the_runner_refuses_what_the_server_does_not_allow(tmp_path, public):
    runner = Runner(RunStore(tmp_path), max_concurrent=1)
    try:
        with pytest.raises(ConfigError, match="epochs must be at most 5"):
            runner.submit(RunConfig.from_dict({"dataset": "digits", "epochs": 6}))
        with pytest.raises(ConfigError, match="custom datasets are turned off"):
            runner.submit_together([RunConfig(), RunConfig.from_dict({"dataset": "custom:shapes"})])
        assert runner.store.list_runs() == []
    finally:
        runner.shutdown()


def test_no_custom_data_is_read_at_all(tmp_path, public):
    """Not by a run that slipped past the checks, nor by a page showing a stored run's images."""
    for label in ("a", "b"):
        (tmp_path / "custom" / "shapes" / label).mkdir(parents=True)
    with pytest.raises(DataError, match="custom datasets are turned off on this server"):
        load_raw("custom:shapes", tmp_path)


def test_runs_at_once_are_capped(monkeypatch):
    monkeypatch.delenv(settings.MAX_RUNS_ENV, raising=False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert default_max_concurrent() == 4  # one per GPU
    monkeypatch.setenv(settings.MAX_RUNS_ENV, "2")
    assert default_max_concurrent() == 2


def test_the_cli_refuses_it_too(tmp_path, capsys, public, monkeypatch):
    assert main(["--store", str(tmp_path), "train", "--dataset", "custom:shapes", "--epochs", "50"]) == 2
    assert capsys.readouterr().err.strip() == ("error: custom datasets are turned off on this server; choose mnist, "
                                               "fashion-mnist, cifar10, digits; epochs must be at most 5 on this "
                                               "server, got 50")
    monkeypatch.setenv(settings.MAX_EPOCHS_ENV, "-1")  # the owner's typo: no run rather than no cap
    assert main(["--store", str(tmp_path), "train", "--dataset", "digits"]) == 2
    assert capsys.readouterr().err.strip() == "error: $DMLVIZ_MAX_EPOCHS must be a positive number, got '-1'"
    assert RunStore(tmp_path).list_runs() == []


def test_the_train_page_offers_no_custom_data_and_explains_the_caps(dirs, public):
    app = page("train", {"dataset": "digits", "epochs": "50"})
    assert "custom:shapes" not in widget(app, "cfg.dataset").options
    assert any("epochs must be at most 5 on this server, got 50" in e.value for e in app.error)
    assert app.button(key="start").disabled
    assert widget(app, "cfg.epochs").value == 50  # kept, to be lowered


def test_without_the_flag_custom_data_is_offered(dirs):
    assert "custom:shapes" in widget(page("train"), "cfg.dataset").options


def test_the_compare_page_explains_the_caps(dirs, public):
    app = page("compare", {"loss1": "softmax", "loss2": "center", "epochs": "50"})
    assert any("epochs must be at most 5 on this server, got 50" in e.value for e in app.error)
    assert app.button(key="compare_start").disabled


def test_a_demo_beyond_the_caps_is_not_started_and_says_why(dirs, monkeypatch):
    monkeypatch.setenv(settings.MAX_EPOCHS_ENV, "1")
    app = AppTest.from_file("../app.py", default_timeout=60).run()
    app.button(key="demo").click().run()
    assert not app.exception
    assert any("Not started: epochs must be at most 1 on this server" in w.value for w in app.warning)
    assert RunStore(dirs / "store").list_runs() == []


def test_reset_beyond_the_caps_leaves_the_run_and_says_why(dirs, monkeypatch):
    store = RunStore(dirs / "store")
    run_id = store.create_run(RunConfig.from_dict({"dataset": "digits", "epochs": 3}).to_dict())
    store.set_status(run_id, "finished")
    monkeypatch.setenv(settings.MAX_EPOCHS_ENV, "1")
    app = page("train", {"dataset": "digits", "run": str(run_id)})
    app.button(key="reset").click().run()
    assert not app.exception
    assert any("This run cannot be trained again here: epochs must be at most 1 on this server" in w.value
               for w in app.warning)
    assert [r.id for r in store.list_runs()] == [run_id]
