from __future__ import annotations

import re
import shutil
import socket
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dmlviz.data import (
    DATASETS,
    DataError,
    DatasetUnavailable,
    TrainingData,
    dataset_names,
    load_raw,
    prepare,
)

CPU = torch.device("cpu")


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def within_one_of_proportional(counts: torch.Tensor, population: torch.Tensor, total: int) -> bool:
    expected = population.double() * total / population.sum()
    return bool(((counts.double() - expected).abs() < 1.0).all())


@pytest.fixture(scope="module")
def cifar_dir(shared_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cifar")
    shutil.copyfile(shared_data_dir / "cifar10_subset.npz", root / "cifar10.npz")
    return root


@pytest.fixture(scope="module")
def mnist_subset(data_dir_with_mnist: Path) -> TrainingData:
    return prepare("mnist", data_dir_with_mnist, CPU, classes=[4, 0, 2, 1, 3], seed=1)


def write_images(folder: Path, count: int, size: int = 12, mode: str = "RGB", seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    shape = (size, size, 3) if mode == "RGB" else (size, size)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(folder / f"{i}.png")


def write_bytes(path: Path, content: bytes = b"not an image") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)


def write_npz(path: Path, **arrays: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)


# --- built-in datasets ---------------------------------------------------------------------------


def test_mnist_loads_whole_splits_as_uint8_and_is_cached(data_dir_with_mnist: Path) -> None:
    raw = load_raw("mnist", data_dir_with_mnist)
    assert raw.x_train.shape == (60000, 1, 28, 28) and raw.x_train.dtype == torch.uint8
    assert raw.x_test.shape == (10000, 1, 28, 28) and raw.x_test.dtype == torch.uint8
    assert raw.y_train.dtype == torch.int64 and raw.y_train.shape == (60000,)
    assert int(raw.y_train[0]) == 5 and int(raw.y_test[0]) == 7
    assert raw.class_names == DATASETS["mnist"].class_names and not raw.augment
    assert load_raw("mnist", data_dir_with_mnist) is raw


def test_full_mnist_statistics_match_the_well_known_values(data_dir_with_mnist: Path) -> None:
    data = prepare("mnist", data_dir_with_mnist, CPU, probe_size=500)
    assert data.mean.shape == data.std.shape == (1, 1, 1, 1)
    assert data.mean.item() == pytest.approx(0.1307, abs=1e-4)
    assert data.std.item() == pytest.approx(0.3081, abs=1e-4)
    assert data.train_classes == tuple(range(10)) and data.num_classes == 10
    assert not data.noisy.any()


def test_unseen_classes_leave_training_but_stay_in_test_and_probe(
    data_dir_with_mnist: Path, mnist_subset: TrainingData
) -> None:
    raw = load_raw("mnist", data_dir_with_mnist)
    data = mnist_subset
    seen = raw.y_train < 5
    assert data.train_classes == (0, 1, 2, 3, 4) and data.num_train_classes == 5
    assert torch.equal(data.x_train, raw.x_train[seen])
    assert torch.equal(data.y_train, raw.y_train[seen])  # training index == class id for classes 0..4
    assert data.to_train_label.tolist() == [0, 1, 2, 3, 4, -1, -1, -1, -1, -1]
    assert data.x_test.shape == (10000, 1, 28, 28) and torch.equal(data.y_test, raw.y_test)

    index, labels = data.test_seen()
    assert torch.equal(index, torch.nonzero(raw.y_test < 5).squeeze(1))
    assert torch.equal(labels, raw.y_test[index])


def test_probe_is_stratified_over_all_classes_and_independent_of_the_run_seed(
    data_dir_with_mnist: Path, mnist_subset: TrainingData
) -> None:
    data = mnist_subset
    assert len(data.probe_index) == 2000
    assert torch.equal(data.probe_index, data.probe_index.sort().values)
    assert torch.equal(data.probe_labels, data.y_test[data.probe_index])
    counts = torch.bincount(data.probe_labels, minlength=10)
    assert (counts > 0).all()
    assert within_one_of_proportional(counts, torch.bincount(data.y_test), 2000)

    other = prepare("mnist", data_dir_with_mnist, CPU, classes=[5, 6], label_noise=0.1, seed=7)
    assert torch.equal(other.probe_index, data.probe_index)
    probe = data.probe_batch()
    assert probe.shape == (2000, 1, 28, 28) and probe.dtype == torch.float32
    assert torch.equal(probe, data.normalize(data.x_test[data.probe_index]))


def test_label_noise_flips_exactly_the_rounded_fraction_to_other_classes(
    data_dir_with_mnist: Path, mnist_subset: TrainingData
) -> None:
    clean = mnist_subset
    noisy = prepare("mnist", data_dir_with_mnist, CPU, classes=[0, 1, 2, 3, 4], label_noise=0.2, seed=1)
    assert int(noisy.noisy.sum()) == round(0.2 * len(clean.y_train))
    flipped = noisy.noisy
    assert (noisy.y_train[flipped] != clean.y_train[flipped]).all()
    assert torch.equal(noisy.y_train[~flipped], clean.y_train[~flipped])
    assert noisy.y_train.min() >= 0 and noisy.y_train.max() <= 4
    # Every wrong class gets used: flips are spread, not shifted by a constant.
    pairs = clean.y_train[flipped] * 5 + noisy.y_train[flipped]
    assert len(torch.unique(pairs)) == 20

    again = prepare("mnist", data_dir_with_mnist, CPU, classes=[0, 1, 2, 3, 4], label_noise=0.2, seed=1)
    assert torch.equal(again.y_train, noisy.y_train) and torch.equal(again.noisy, noisy.noisy)
    reseeded = prepare("mnist", data_dir_with_mnist, CPU, classes=[0, 1, 2, 3, 4], label_noise=0.2, seed=2)
    assert not torch.equal(reseeded.noisy, noisy.noisy)


def test_train_size_keeps_a_stratified_deterministic_subset(data_dir_with_mnist: Path) -> None:
    raw = load_raw("mnist", data_dir_with_mnist)

    def subset(seed: int) -> TrainingData:
        return prepare("mnist", data_dir_with_mnist, CPU, train_size=1000, seed=seed)

    data = subset(3)
    assert data.x_train.shape == (1000, 1, 28, 28)
    counts = torch.bincount(data.y_train, minlength=10)
    assert within_one_of_proportional(counts, torch.bincount(raw.y_train), 1000)
    assert torch.equal(subset(3).x_train, data.x_train)
    assert not torch.equal(subset(4).x_train, data.x_train)


def test_epoch_order_and_batches_are_deterministic(mnist_subset: TrainingData) -> None:
    data = mnist_subset
    order = data.epoch_order(generator(0))
    assert torch.equal(order, data.epoch_order(generator(0)))
    assert torch.equal(order.sort().values, torch.arange(len(data.y_train)))
    x, y = data.train_batch(order[:64], generator(5))
    assert x.shape == (64, 1, 28, 28) and x.dtype == torch.float32
    assert torch.equal(y, data.y_train[order[:64]])
    expected = (data.x_train[order[:64]].float() / 255 - data.mean) / data.std
    assert torch.allclose(x, expected)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"classes": [3, 12]}, "class 12 does not exist in MNIST (classes 0–9)"),
        ({"classes": [3, 3]}, "at least 2 classes"),
        ({"classes": [1.5, 2]}, "whole numbers"),
        ({"label_noise": 1.0}, "label noise"),
        ({"train_size": 5}, "train size"),
        ({"probe_size": 0}, "probe size"),
    ],
)
def test_prepare_rejects_bad_arguments(data_dir_with_mnist: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(DataError, match=re.escape(message)):
        prepare("mnist", data_dir_with_mnist, CPU, **kwargs)


def test_unknown_dataset_lists_the_valid_names(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown dataset 'imagenet'.*mnist, fashion-mnist, cifar10, digits"):
        load_raw("imagenet", tmp_path)


def test_missing_dataset_offline_fails_fast_and_says_where_to_put_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Offline for sure, even on a machine with internet: name resolution fails as it does in a sandbox.
    def offline(*args: object, **kwargs: object) -> None:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", offline)
    start = time.monotonic()
    with pytest.raises(DatasetUnavailable) as caught:
        load_raw("mnist", tmp_path / "empty")
    assert time.monotonic() - start < 10
    message = str(caught.value)
    assert str(tmp_path / "empty" / "MNIST" / "raw") in message
    assert "t10k-labels-idx1-ubyte.gz" in message and "'digits'" in message

    with pytest.raises(DatasetUnavailable, match="cifar10.npz.*'digits'"):
        load_raw("cifar10", tmp_path / "empty")
    assert socket.getdefaulttimeout() is None


def test_cifar10_falls_back_to_the_keras_npz(cifar_dir: Path) -> None:
    raw = load_raw("cifar10", cifar_dir)
    assert raw.x_train.shape == (5000, 3, 32, 32) and raw.x_train.dtype == torch.uint8
    assert raw.x_test.shape == (1000, 3, 32, 32) and raw.y_test.dtype == torch.int64
    assert raw.augment and raw.class_names[0] == "airplane"
    with np.load(cifar_dir / "cifar10.npz") as keras:
        assert torch.equal(raw.x_train[7].permute(1, 2, 0), torch.from_numpy(keras["x_train"][7]))


def test_cifar_augmentation_crops_and_flips_each_sample_independently(cifar_dir: Path) -> None:
    data = prepare("cifar10", cifar_dir, CPU, probe_size=100)
    index = torch.arange(64)
    x, y = data.train_batch(index, generator(0))
    assert x.shape == (64, 3, 32, 32) and torch.equal(y, data.y_train[index])
    assert torch.equal(x, data.train_batch(index, generator(0))[0])
    assert not torch.equal(x, data.train_batch(index, generator(1))[0])
    assert not torch.equal(x, data.normalize(data.x_train[index]))

    # Undo the normalisation, then find each output among all crops of the padded original and its mirror.
    pixels = ((x * data.std + data.mean) * 255).round().to(torch.uint8)
    original = data.x_train[index]

    def is_a_crop_of(images: torch.Tensor) -> torch.Tensor:
        windows = torch.nn.functional.pad(images, (4, 4, 4, 4)).unfold(2, 32, 1).unfold(3, 32, 1)
        return (windows == pixels[:, :, None, None]).all(dim=(1, 4, 5)).flatten(1).any(dim=1)

    plain, mirrored = is_a_crop_of(original), is_a_crop_of(original.flip(-1))
    assert (plain | mirrored).all()
    assert 0 < int((mirrored & ~plain).sum()) < 64 and int((plain & ~mirrored).sum()) > 0


def test_digits_work_offline(tmp_path: Path) -> None:
    raw = load_raw("digits", tmp_path)
    assert raw.x_train.shape[1:] == (1, 28, 28) and raw.x_train.dtype == torch.uint8
    assert len(raw.x_train) + len(raw.x_test) == 1797 and len(raw.x_test) == round(0.25 * 1797)
    assert raw.class_names == tuple("0123456789") and int(raw.x_train.max()) == 255
    assert torch.equal(torch.unique(raw.y_test), torch.arange(10))
    other = load_raw("digits", tmp_path / "elsewhere")
    assert other is not raw and torch.equal(other.x_test, raw.x_test)
    data = prepare("digits", tmp_path, CPU, classes=[0, 1, 2])
    assert data.num_train_classes == 3 and len(data.probe_index) == len(raw.x_test)


# --- custom datasets -----------------------------------------------------------------------------


def test_custom_image_folder_is_split_stratified(tmp_path: Path) -> None:
    write_images(tmp_path / "custom" / "shapes" / "circle", 5)
    write_images(tmp_path / "custom" / "shapes" / "square", 5, seed=1)
    raw = load_raw("custom:shapes", tmp_path)
    assert raw.class_names == ("circle", "square")
    assert raw.x_train.shape == (8, 3, 12, 12) and raw.x_test.shape == (2, 3, 12, 12)
    assert raw.y_test.tolist() == [0, 1]
    assert "custom:shapes" in dataset_names(tmp_path)
    data = prepare("custom:shapes", tmp_path, CPU)
    assert data.channels == 3 and data.image_size == 12 and len(data.probe_index) == 2


def test_custom_image_folder_with_train_and_test_and_grey_images(tmp_path: Path) -> None:
    root = tmp_path / "custom" / "grey"
    for split, count in (("train", 3), ("test", 2)):
        for label in ("a", "b"):
            write_images(root / split / label, count, mode="L")
    raw = load_raw("custom:grey", tmp_path)
    assert raw.x_train.shape == (6, 1, 12, 12) and raw.x_test.shape == (4, 1, 12, 12)
    assert raw.y_train.tolist() == [0, 0, 0, 1, 1, 1] and raw.y_test.tolist() == [0, 0, 1, 1]
    expected = np.asarray(Image.open(root / "test" / "b" / "1.png"))
    assert torch.equal(raw.x_test[3, 0], torch.from_numpy(expected.copy()))


def test_custom_data_reloads_when_its_files_change(tmp_path: Path) -> None:
    folder = tmp_path / "custom" / "growing"
    write_images(folder / "a", 5)
    write_images(folder / "b", 5)
    first = load_raw("custom:growing", tmp_path)
    assert load_raw("custom:growing", tmp_path) is first
    write_images(folder / "c", 5)
    assert load_raw("custom:growing", tmp_path).class_names == ("a", "b", "c")


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda root: root.mkdir(parents=True), "no class folders in"),
        (lambda root: (root / "a").mkdir(parents=True), "only one class folder"),
        (lambda root: [(root / "a").mkdir(parents=True), (root / "b").mkdir()], "hold no images"),
        (lambda root: [write_images(root / "a", 2), write_images(root / "b", 2, size=16)], "same size"),
        (
            lambda root: [write_images(root / "a", 3), write_bytes(root / "b" / "x.png")],
            "cannot read the image",
        ),
        (lambda root: [write_images(root / "a", 1), write_images(root / "b", 1)], "too few images"),
        (
            lambda root: [write_images(root / "train" / "a", 2), write_images(root / "train" / "b", 2)],
            "has a 'train' folder but no 'test' folder",
        ),
    ],
    ids=["empty", "one-class", "no-images", "mixed-sizes", "unreadable", "too-few", "train-only"],
)
def test_bad_custom_image_folders_are_explained(
    tmp_path: Path, build: Callable[[Path], object], message: str
) -> None:
    build(tmp_path / "custom" / "bad")
    with pytest.raises(DataError, match=message) as caught:
        load_raw("custom:bad", tmp_path)
    if message == "same size":
        assert "12×12" in str(caught.value) and "16×16" in str(caught.value)
        assert str(tmp_path / "custom" / "bad" / "b" / "0.png") in str(caught.value)


@pytest.mark.parametrize("name", ["../x", "a/b", "..", "/etc", "a\\b", ""])
def test_custom_names_cannot_leave_the_custom_folder(tmp_path: Path, name: str) -> None:
    with pytest.raises(DataError, match=re.escape(f"names inside {tmp_path / 'custom'}, got '")):
        load_raw(f"custom:{name}", tmp_path)


def test_missing_custom_dataset_says_where_to_put_it(tmp_path: Path) -> None:
    with pytest.raises(DatasetUnavailable, match="no custom dataset 'nothing'"):
        load_raw("custom:nothing", tmp_path)


def test_custom_npz_layouts_and_dtypes(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    hwc = rng.integers(0, 256, (20, 12, 12, 3), dtype=np.uint8)
    labels = np.arange(20) % 4
    custom = tmp_path / "custom"
    write_npz(custom / "hwc.npz", x_train=hwc, y_train=labels, x_test=hwc[:6], y_test=labels[:6])
    chw = rng.random((10, 3, 12, 12), dtype=np.float32)
    write_npz(custom / "chw.npz", x_train=chw, y_train=labels[:10], x_test=chw, y_test=labels[:10])
    grey = rng.integers(0, 256, (10, 8, 8), dtype=np.uint8)
    write_npz(custom / "grey.npz", x_train=grey, y_train=labels[:10, None], x_test=grey, y_test=labels[:10])

    raw = load_raw("custom:hwc", tmp_path)
    assert raw.x_train.shape == (20, 3, 12, 12) and raw.x_train.dtype == torch.uint8
    assert torch.equal(raw.x_train.permute(0, 2, 3, 1), torch.from_numpy(hwc))
    assert raw.class_names == ("0", "1", "2", "3") and raw.y_train.dtype == torch.int64

    raw = load_raw("custom:chw", tmp_path)
    assert raw.x_train.shape == (10, 3, 12, 12) and raw.x_train.dtype == torch.uint8
    assert torch.equal(raw.x_train, torch.from_numpy(np.rint(chw * 255).astype(np.uint8)))

    raw = load_raw("custom:grey.npz", tmp_path)
    assert raw.x_train.shape == (10, 1, 8, 8) and raw.y_train.shape == (10,)
    assert {"custom:hwc", "custom:chw", "custom:grey"} <= set(dataset_names(tmp_path))


def test_bad_custom_npz_files_are_explained(tmp_path: Path) -> None:
    custom = tmp_path / "custom"
    write_bytes(custom / "corrupt.npz", np.random.default_rng(0).bytes(1000))
    with pytest.raises(DataError, match="corrupt.npz is not a .npz file"):
        load_raw("custom:corrupt", tmp_path)

    x = np.zeros((4, 8, 8), dtype=np.uint8)
    y = np.array([0, 1, 0, 1])
    write_npz(custom / "partial.npz", x_train=x, y_train=y)
    with pytest.raises(DataError, match="lacks the array\\(s\\) x_test, y_test"):
        load_raw("custom:partial", tmp_path)

    write_npz(custom / "short.npz", x_train=x, y_train=y[:3], x_test=x, y_test=y)
    with pytest.raises(DataError, match="x_train has 4 images but y_train has 3 labels"):
        load_raw("custom:short", tmp_path)

    write_npz(custom / "bright.npz", x_train=x + 2.0, y_train=y, x_test=x, y_test=y)
    with pytest.raises(DataError, match="float images must lie in \\[0, 1\\]"):
        load_raw("custom:bright", tmp_path)
