"""Bad input, end to end: every mistake gets a message a person understands (never a traceback), and
nothing valid is lost. docs/RELIABILITY.md lists each case with the test that holds it."""

from __future__ import annotations

import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from pages import page, widget
from PIL import Image
from streamlit.testing.v1 import AppTest

from dmlviz import settings
from dmlviz.cli import main
from dmlviz.comparison import Comparison
from dmlviz.config import ConfigError, RunConfig
from dmlviz.data import DATASETS, DataError, load_raw
from dmlviz.store import MAX_NAME_LENGTH, MAX_TAGS, RunStore, StoreError

# -- custom datasets that cannot be trained on ------------------------------------------------------


def write_images(folder: Path, count: int, size: int = 8) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.new("L", (size, size), i * 20).save(folder / f"{i}.png")


def refuse_to_list(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The folder cannot be read (permissions); chmod does not stop root, so the refusal is simulated."""
    iterdir = Path.iterdir

    def refusing(path: Path):
        if path == folder:
            raise PermissionError(13, "Permission denied", str(path))
        return iterdir(path)

    monkeypatch.setattr(Path, "iterdir", refusing)


def damaged_npz(path: Path) -> None:
    """A real .npz whose first array's compressed bytes were overwritten: a zip that cannot be read back."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    np.savez_compressed(path, x_train=rng.integers(0, 256, (8, 8, 8), np.uint8), y_train=np.arange(8) % 2,
                        x_test=rng.integers(0, 256, (4, 8, 8), np.uint8), y_test=np.arange(4) % 2)
    with zipfile.ZipFile(path) as archive:
        member = archive.getinfo("x_train.npy")
    data = bytearray(path.read_bytes())
    middle = member.header_offset + 30 + len(member.filename) + member.compress_size // 2
    data[middle:middle + 16] = bytes(16)
    path.write_bytes(bytes(data))


# name → (how to make it under <data>/custom/bad, what the message says)
BROKEN: dict[str, tuple[Callable[[Path, pytest.MonkeyPatch], object], str]] = {
    "empty": (lambda root, _: root.mkdir(parents=True), "no class folders in"),
    "unreadable": (lambda root, mp: [write_images(root / "a", 5), write_images(root / "b", 5),
                                     refuse_to_list(root, mp)], "cannot read the custom dataset 'bad'"),
    "one-class": (lambda root, _: write_images(root / "a", 5), "only one class folder ('a')"),
    "mixed-sizes": (lambda root, _: [write_images(root / "a", 5), write_images(root / "b", 5, size=10)],
                    "images must all have the same size"),
}
BROKEN_NPZ: dict[str, tuple[Callable[[Path], object], str]] = {
    "not-a-zip": (lambda path: path.write_bytes(b"x_train,y_train\n1,2\n"), "bad.npz is not a .npz file"),
    "damaged": (damaged_npz, "cannot read"),
}


def make_broken(kind: str, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Make the broken dataset ``kind`` in ``data_dir``; return the message its loading must give."""
    (data_dir / "custom").mkdir(parents=True, exist_ok=True)
    if kind in BROKEN:
        build, message = BROKEN[kind]
        build(data_dir / "custom" / "bad", monkeypatch)
    else:
        build, message = BROKEN_NPZ[kind]
        build(data_dir / "custom" / "bad.npz")
    return message


# -- the library ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["unreadable", "not-a-zip", "damaged"])
def test_unreadable_custom_data_is_a_data_error_naming_it(tmp_path, monkeypatch, kind):
    # The empty, one-class and mixed-size folders: tests/test_data.py::test_bad_custom_image_folders_are_explained.
    message = make_broken(kind, tmp_path, monkeypatch)
    with pytest.raises(DataError, match=message) as caught:
        load_raw("custom:bad", tmp_path)
    assert "allow_pickle" not in str(caught.value)  # never a hint to load a user's file unsafely


@pytest.mark.parametrize(("settings", "message"), [
    ({"dataset": "mnist", "loss": "fixed-simplex", "feature_dim": 2},
     "the fixed simplex needs feature_dim ≥ C − 1 = 9 for 10 classes, got 2"),
    ({"dataset": "custom:mine", "classes": "0,1,2,3", "loss": "fixed-simplex", "feature_dim": 2},
     "the fixed simplex needs feature_dim ≥ C − 1 = 3 for 4 classes, got 2"),
    ({"dataset": "digits", "classes": "0,1", "loss": "adacos"}, "AdaCos needs at least 3 classes"),
    ({"dataset": "digits", "classes": "0,1", "loss": "ring", "hp.base": "adacos"}, "AdaCos needs at least 3 classes"),
])
def test_a_loss_that_cannot_use_the_feature_dim_is_refused_before_any_run(settings, message):
    rng = torch.get_rng_state()
    with pytest.raises(ConfigError) as caught:
        RunConfig.from_dict(settings)
    assert any(message in error for error in caught.value.errors), caught.value.errors
    assert torch.equal(torch.get_rng_state(), rng)  # checking builds the loss, but draws nothing from the caller's RNG


def test_a_loss_that_fits_its_classes_and_dims_is_accepted():
    assert RunConfig.from_dict({"loss": "fixed-simplex", "classes": "0,1,2", "feature_dim": 2}).loss == "fixed-simplex"
    # A custom dataset's classes are counted only when its files are read, when the run starts.
    assert RunConfig.from_dict({"dataset": "custom:mine", "loss": "fixed-simplex"}).feature_dim == 2


def test_classes_a_builtin_dataset_lacks_are_refused():
    with pytest.raises(ConfigError, match="MNIST has classes 0–9, so not 10, 12"):
        RunConfig.from_dict({"dataset": "mnist", "classes": "0,12,10"})


@pytest.mark.parametrize(("settings", "message"), [
    ({"name": "x" * 201}, "name must be at most 200 characters, got 201"),
    ({"dataset": "custom:mine", "classes": list(range(1001)), "feature_dim": 4096},
     "classes must name at most 1000 classes, got 1001"),
])
def test_settings_that_would_make_the_server_hold_too_much_are_refused(settings, message):
    with pytest.raises(ConfigError, match=message):
        RunConfig.from_dict(settings)


def test_range_messages_write_whole_numbers_in_full():
    with pytest.raises(ConfigError, match="seed must be between 0 and 2147483647, got 10000000000"):
        RunConfig.from_dict({"seed": "10000000000"})


def test_digits_training_split_has_the_size_epochs_are_counted_against(tmp_path):
    assert len(load_raw("digits", tmp_path).y_train) == DATASETS["digits"].train_images


def test_salvage_keeps_every_valid_setting_and_lists_the_others():
    config, problems = RunConfig.salvage({"dataset": "digits", "seed": "7", "lr": "fast", "loss": "arcface",
                                          "hp.margin": "9", "hp.scale": "20", "bogus": "1"})
    assert (config.dataset, config.seed, config.loss, config.loss_params) == ("digits", 7, "arcface", {"scale": 20.0})
    assert config.lr == RunConfig().lr
    assert len(problems) == 3 and any("lr must be a number" in p for p in problems)
    assert RunConfig.salvage({"seed": "7"}) == (RunConfig(seed=7), [])


def test_comparison_salvage_keeps_the_valid_losses_and_settings():
    comparison, problems = Comparison.salvage({"dataset": "digits", "epochs": "x", "loss1": "arcface",
                                               "hp1.margin": "abc", "loss2": "center", "hp2.lambda": "0.5",
                                               "loss3": "nope", "loss_lr2": "fast"})
    assert comparison is not None and comparison.shared.dataset == "digits"
    assert [(c.loss, dict(c.params), c.loss_lr) for c in comparison.losses] == [
        ("arcface", {}, None), ("center", {"lambda": 0.5}, None)]
    text = " | ".join(problems)
    assert "epochs must be a number" in text and "loss1: margin must be a number" in text
    assert "loss2: loss_lr must be a number" in text and "loss3: unknown loss 'nope'" in text
    assert Comparison.salvage({"loss1": "softmax", "loss2": "nope"})[0] is None  # one loss is no comparison


# -- the CLI --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("argv", "message"), [
    (["train", "--dataset", "imagenet"], "error: unknown dataset 'imagenet'"),
    (["train", "--loss", "fixed-simplex", "--dataset", "digits"], "error: the fixed simplex needs feature_dim ≥"),
    (["train", "--dataset", "digits", "--classes", "0,10"], "error: Digits (scikit-learn, offline) has classes 0–9"),
    (["train", "--seed", "-1", "--feature-dim", "two"], "error: feature_dim must be a whole number, got 'two'; "
                                                         "seed must be between 0 and 2147483647, got -1"),
    (["runs", "show", "99999999999999999999"], "a run id is a whole number from 1"),
    (["runs", "delete", "abc"], "a run id is a whole number from 1"),
])
def test_cli_bad_input_gets_one_line_and_exit_status_2(tmp_path, capsys, argv, message):
    try:
        code = main(["--store", str(tmp_path), *argv])
    except SystemExit as exit_:  # argparse's own refusal of a value
        code = exit_.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert RunStore(tmp_path).list_runs() == []  # nothing half-made is left behind


def test_cli_garbage_config_file_gets_one_line(tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text("dataset: [digits\nloss: {")
    assert main(["--store", str(tmp_path / "store"), "train", "--config", str(config)]) == 2
    assert capsys.readouterr().err.startswith("error: the config is not valid YAML")


@pytest.mark.parametrize("kind", [*BROKEN, *BROKEN_NPZ])
def test_cli_broken_custom_dataset_fails_its_run_with_the_reason(tmp_path, capsys, monkeypatch, kind):
    message = make_broken(kind, tmp_path / "data", monkeypatch)
    code = main(["--store", str(tmp_path / "store"), "train", "--dataset", "custom:bad", "--data-dir",
                 str(tmp_path / "data"), "--device", "cpu", "--quiet"])
    assert code == 1
    err = capsys.readouterr().err
    assert "error: " in err and message in err and "Traceback" not in err
    (record,) = RunStore(tmp_path / "store").list_runs()
    assert record.status == "failed" and message in record.error  # the store keeps why


# -- the pages ------------------------------------------------------------------------------------


@pytest.fixture
def dirs(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv(settings.STORE_DIR_ENV, str(tmp_path / "store"))
    monkeypatch.setenv(settings.DATA_DIR_ENV, str(tmp_path / "data"))
    return tmp_path


def query_of(app: AppTest) -> dict[str, str]:
    return {k: v[-1] if isinstance(v, list) else v for k, v in app.query_params.items()}


def errors_of(app: AppTest) -> str:
    assert not app.exception, app.exception
    return " | ".join(e.value for e in app.error)


def test_train_link_with_garbage_keeps_its_valid_settings(dirs):
    app = page("train", {"dataset": "digits", "seed": "7", "feature_dim": "3", "lr": "fast", "loss": "arcfase",
                         "hp.margin": "abc", "epochs": "1e999", "bogus": "1"})
    text = errors_of(app)
    assert "lr must be a number, got 'fast'" in text and "unknown loss 'arcfase'" in text
    assert "epochs must be a finite number" in text and "unknown setting 'bogus'" in text
    assert (widget(app, "cfg.dataset").value, widget(app, "cfg.seed").value) == ("digits", 7)
    assert widget(app, "cfg.feature_dim").value == 3
    assert query_of(app) == {"dataset": "digits", "seed": "7", "feature_dim": "3"}  # the link, less its mistakes
    assert not app.button(key="start").disabled


def test_train_settings_a_loss_cannot_use_disable_start_until_fixed(dirs):
    app = page("train", {"dataset": "digits"})
    widget(app, "cfg.loss").set_value("fixed-simplex").run()
    assert "the fixed simplex needs feature_dim ≥ C − 1 = 9 for 10 classes, got 2" in errors_of(app)
    assert app.button(key="start").disabled
    widget(app, "cfg.classes").input("0,1,2").run()
    assert not errors_of(app) and not app.button(key="start").disabled


@pytest.mark.parametrize(("key", "value", "message"), [
    ("cfg.classes", "0,12", "Digits (scikit-learn, offline) has classes 0–9, so not 12"),
    ("cfg.classes", "zero,one", "classes must be a list of class numbers like 0,1,2, got 'zero,one'"),
    ("cfg.device", "gpu", "device must be auto, cpu, cuda, cuda:N or mps, got 'gpu'"),
])
def test_train_text_settings_that_cannot_train_are_explained(dirs, key, value, message):
    app = page("train", {"dataset": "digits", "seed": "5"})
    widget(app, key).input(value).run()
    assert message in errors_of(app)
    assert app.button(key="start").disabled
    assert query_of(app) == {"dataset": "digits", "seed": "5"}  # the URL keeps the last valid settings


def test_train_page_shows_why_a_broken_custom_dataset_failed(dirs, monkeypatch):
    message = make_broken("one-class", dirs / "data", monkeypatch)
    app = page("train", {"dataset": "custom:bad", "device": "cpu"})
    app.button(key="start").click().run()
    assert not app.exception
    store = RunStore(dirs / "store")
    (record,) = store.list_runs()
    deadline = time.monotonic() + 60
    while store.get_run(record.id).active and time.monotonic() < deadline:
        time.sleep(0.2)
    assert store.get_run(record.id).status == "failed"
    app.run()
    assert any(message in e.value for e in app.error)
    assert widget(app, "cfg.dataset").value == "custom:bad"  # the settings stay, to be fixed


def test_compare_link_with_garbage_keeps_its_valid_losses(dirs):
    app = page("compare", {"dataset": "digits", "epochs": "x", "loss1": "arcface", "hp1.margin": "abc",
                           "loss2": "cosface", "loss3": "nope"})
    text = errors_of(app)
    assert "epochs must be a number" in text and "loss1: margin must be a number" in text
    assert "loss3: unknown loss 'nope'" in text
    assert [widget(app, k).value for k in ("cmp.count", "cmp.loss1", "cmp.loss2", "cmp.dataset")] == [
        2, "arcface", "cosface", "digits"]
    assert not app.button(key="compare_start").disabled


@pytest.mark.parametrize(("name", "key", "value", "message"), [
    *(("train", "run", run, f"run must be the number of a stored run, like 3, got '{run}'")
      for run in ("abc", "-1", "99999999999999999999", "²")),
    *(("compare", "runs", runs, f"runs must be 2 to 4 numbers of stored runs, like 3,4, got '{runs}'")
      for runs in ("abc,2", "3", "1,2,3,4,5", "1,99999999999999999999")),
])
def test_a_link_with_run_ids_that_cannot_be_says_so(dirs, name, key, value, message):
    assert message in errors_of(page(name, {key: value}))


@pytest.mark.parametrize(("name", "key", "value", "message"), [
    ("train", "run", "4242", "Run 4242 is no longer in the store"),
    ("compare", "runs", "4242,4243", "A run of this comparison is no longer in the store"),
])
def test_a_link_to_runs_not_in_the_store_says_so(dirs, name, key, value, message):
    app = page(name, {key: value})
    assert not app.exception
    assert any(message in w.value for w in app.warning)


# -- text a person gives is bounded where it enters (issue 15) -------------------------------------

CONFIG_FILES = {
    # name → (the file's bytes, or a path to read; what the one line says)
    "binary": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "is a binary file, not a YAML or JSON text"),
    "latin-1": ("name: café\n".encode("latin-1"), "is not UTF-8 text (byte 10 cannot be read)"),
    "non-text-key": (b"1: 2\n", "error: setting names are text (like seed), got 1"),
    "deep-yaml": (b"[" * 10_000 + b"]" * 10_000, "nested too deeply: at most 8 levels"),
    "100k-deep-yaml": (b"[" * 100_000 + b"]" * 100_000, "is too large (200000 bytes): a run config is at most 65536"),
    "billion-laughs": (BILLION := b"a0: &a0 lol\n" + b"".join(
        f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n".encode() for i in range(1, 9)) + b"name: *a8\n",
        "repeats a list or mapping with the YAML alias *a1"),
    "huge-name": (b"dataset: " + b"x" * 60_000, "unknown dataset 'xxxxx"),
    "dev-zero": ("/dev/zero", "/dev/zero is too large (over 65536 bytes): a run config is at most 65536 bytes"),
}


@pytest.mark.parametrize(("suffix", "kind"), [(".yaml", k) for k in CONFIG_FILES] + [(".json", "deep-yaml")])
def test_cli_config_file_that_cannot_be_a_config_gets_one_line(tmp_path, capsys, suffix, kind):
    content, message = CONFIG_FILES[kind]
    if isinstance(content, str):
        path = Path(content)
        if not path.exists():
            pytest.skip(f"no {content} here")
    else:
        path = tmp_path / f"run{suffix}"
        path.write_bytes(content)
    started = time.perf_counter()
    assert main(["--store", str(tmp_path / "store"), "train", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert time.perf_counter() - started < 5
    assert message in err and "Traceback" not in err
    assert err.count("\n") == 1 and len(err) < 400, err  # one short line: never the value in full
    assert RunStore(tmp_path / "store").list_runs() == []


@pytest.mark.parametrize(("value", "message"), [
    ("", "classes must be a list of class numbers like 0,1,2, got ''; leave --classes out to train on every class"),
    ("  ", "classes must be a list of class numbers like 0,1,2, got '  '; leave --classes out"),
    ("0,0,1", "classes must name each class once, got 0 more than once"),
])
def test_cli_classes_that_name_nothing_or_a_class_twice_are_refused(tmp_path, capsys, value, message):
    assert main(["--store", str(tmp_path), "train", "--dataset", "digits", "--classes", value]) == 2
    assert f"error: {message}" in capsys.readouterr().err
    assert RunStore(tmp_path).list_runs() == []


def test_the_store_bounds_names_and_tags(tmp_path):
    store = RunStore(tmp_path)
    run_id = store.create_run({}, name="first")
    with pytest.raises(StoreError, match="a run's name has at most 200 characters, got 100000"):
        store.rename(run_id, "x" * 100_000)
    store.rename(run_id, " " + "x" * MAX_NAME_LENGTH + " ")  # trimmed
    assert store.get_run(run_id).name == "x" * MAX_NAME_LENGTH
    with pytest.raises(StoreError, match="a run has at most 20 tags, got 21"):
        store.set_tags(run_id, [f"t{i}" for i in range(MAX_TAGS + 1)])
    with pytest.raises(StoreError) as caught:
        store.set_tags(run_id, ["y" * 100_000])
    assert str(caught.value).startswith("a tag has at most 40 characters, got 100000") and len(str(caught.value)) < 200
    assert store.set_tags(run_id, [f"t{i}" for i in range(MAX_TAGS)] + ["t0", " "]) == [f"t{i}" for i in range(20)]


def runs_page_with_run_open(run_id: int) -> AppTest:
    """The Runs page, in a fresh session, with run ``run_id`` opened."""
    app = AppTest.from_file("../app.py", default_timeout=60)
    app.run()
    app.switch_page("app_pages/runs.py").run()
    app.session_state["runs_open"] = run_id
    app.run()
    assert not app.exception, app.exception
    return app


def test_the_runs_page_bounds_the_name_and_the_tags(dirs):
    store = RunStore(dirs / "store")
    run_id = store.create_run(RunConfig(dataset="digits").to_dict(), name="mine", status="running")
    store.set_status(run_id, "finished")
    app = runs_page_with_run_open(run_id)
    name = app.text_input(key=f"name-{run_id}")
    assert name.proto.max_chars == MAX_NAME_LENGTH  # the browser takes no more
    assert app.multiselect(key=f"tags-{run_id}").proto.max_selections == MAX_TAGS
    # A client that ignores max_chars: Streamlit's server cuts the value to it (the store would refuse more).
    name.set_value("x" * 100_000).run()
    app.button(key="rename").click().run()
    assert not app.exception, app.exception
    assert store.get_run(run_id).name == "x" * MAX_NAME_LENGTH


def test_a_name_and_tags_from_before_the_caps_still_open(dirs):
    import json
    import sqlite3

    store = RunStore(dirs / "store")
    run_id = store.create_run(RunConfig(dataset="digits").to_dict(), name="y" * 300, status="running")
    store.set_status(run_id, "finished")
    with sqlite3.connect(store.path) as db:  # an older dmlviz stored any number of tags
        db.execute("UPDATE runs SET tags = ? WHERE id = ?", (json.dumps([f"t{i}" for i in range(30)]), run_id))
    app = runs_page_with_run_open(run_id)
    assert app.text_input(key=f"name-{run_id}").value == "y" * 300
    assert len(app.multiselect(key=f"tags-{run_id}").value) == 30
