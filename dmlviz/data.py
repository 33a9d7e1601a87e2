"""Datasets, held whole on the training device as uint8 tensors and batched by indexing.

Each split is loaded once per process (:func:`load_raw`), reduced to what a run trains on
(:func:`prepare`) and moved to the device once. Normalisation and CIFAR augmentation then run
batched on the device: nothing in the training path touches single samples from Python.
"""

from __future__ import annotations

import contextlib
import functools
import math
import operator
import os
import socket
import threading
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from dmlviz import settings
from dmlviz.params import quote


class DatasetUnavailable(RuntimeError):
    """A dataset is missing and cannot be downloaded (e.g. offline)."""


class DataError(ValueError):
    """A dataset name, its files or the arguments to :func:`prepare` are not usable."""


@dataclass(frozen=True)
class DatasetInfo:
    """What the UI and the engine need to know about a built-in dataset before loading it."""

    name: str
    display_name: str
    channels: int
    image_size: int
    class_names: tuple[str, ...]
    augment: bool
    train_images: int  # the whole training split: what a run's length in epochs is counted against
    test_images: int  # the whole test split (the probe set is drawn from it)


DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        DatasetInfo("mnist", "MNIST", 1, 28, tuple(str(d) for d in range(10)), False, 60_000, 10_000),
        DatasetInfo(
            "fashion-mnist",
            "Fashion-MNIST",
            1,
            28,
            (
                "T-shirt/top",
                "Trouser",
                "Pullover",
                "Dress",
                "Coat",
                "Sandal",
                "Shirt",
                "Sneaker",
                "Bag",
                "Ankle boot",
            ),
            False,
            60_000,
            10_000,
        ),
        DatasetInfo(
            "cifar10",
            "CIFAR-10",
            3,
            32,
            ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
            True,
            50_000,
            10_000,
        ),
        DatasetInfo(
            "digits", "Digits (scikit-learn, offline)", 1, 28, tuple(str(d) for d in range(10)), False, 1348, 449
        ),
    )
}

CUSTOM_PREFIX = "custom:"
_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
# Limits on custom data, checked from what the files declare (an image's header, a .npy header, the labels)
# before any pixel is decoded: a 9000×9000 PNG of a few kB decodes to 243 MB, a 4 MB zip of zeros to 4 GB.
# The decoded total is capped by settings.limits().max_custom_mb ($DMLVIZ_MAX_CUSTOM_MB, 2 GiB by default).
MAX_CUSTOM_PIXELS = 1024 * 1024  # per image: the networks train on 28×28 or 32×32; 1024×1024 is 3 MB decoded
MAX_CUSTOM_CLASSES = 1000  # as many as a run may name (config.MAX_CLASSES); labels are 0 … this − 1
# Per socket operation, so a real download still works; it only stops a firewalled network
# (packets dropped, not refused) from holding a run for minutes before the offline message.
_DOWNLOAD_TIMEOUT_S = 10.0
_CUSTOM_TEST_FRACTION = 0.2
_DIGITS_TEST_FRACTION = 0.25
_SPLIT_SEED = 0
_PROBE_SEED = 0
_CROP_PADDING = 4


@dataclass(frozen=True, eq=False)
class RawData:
    """A whole dataset as CPU tensors: images uint8 (N, C, H, W), labels int64 (N,).

    Instances are cached and shared by every run of the process: treat the tensors as read-only.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    class_names: tuple[str, ...]
    augment: bool


@dataclass(eq=False)
class TrainingData:
    """What a run trains and evaluates on, on the training device.

    ``y_train`` holds training-class indices (0 … ``num_train_classes`` - 1, after label noise);
    ``y_test`` and ``probe_labels`` hold original class ids (0 … ``num_classes`` - 1).
    """

    class_names: tuple[str, ...]
    augment: bool
    channels: int
    image_size: int
    x_train: torch.Tensor
    y_train: torch.Tensor
    noisy: torch.Tensor
    train_classes: tuple[int, ...]
    to_train_label: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    probe_index: torch.Tensor
    probe_labels: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    _probe: torch.Tensor | None = field(default=None, init=False, repr=False)
    _seen: tuple[torch.Tensor, torch.Tensor] | None = field(default=None, init=False, repr=False)

    @property
    def num_train_classes(self) -> int:
        return len(self.train_classes)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def device(self) -> torch.device:
        return self.x_train.device

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 images → float32 ``(x / 255 - mean) / std``."""
        return (x.float() / 255 - self.mean) / self.std

    def epoch_order(self, generator: torch.Generator, per_class: int = 1) -> torch.Tensor:
        """A random order of the training indices for one epoch, drawn from a CPU generator, on the device.

        With ``per_class`` > 1 the order is made of runs of ``per_class`` samples of one class, the runs
        shuffled: every batch whose size is a multiple of ``per_class`` then holds at least that many
        samples of each class in it, which pair losses need (PML's MPerClassSampler does the same, but
        one sample at a time in Python). The few samples left over per class wait for the next epoch.
        """
        if per_class <= 1:
            return torch.randperm(len(self.y_train), generator=generator).to(self.device)
        labels = self.y_train.cpu()
        runs = []
        for label in range(self.num_train_classes):
            members = torch.nonzero(labels == label).squeeze(1)
            members = members[torch.randperm(len(members), generator=generator)]
            runs.append(members[: len(members) // per_class * per_class].view(-1, per_class))
        order = torch.cat(runs)
        return order[torch.randperm(len(order), generator=generator)].flatten().to(self.device)

    def train_batch(
        self, index: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised training images (augmented if the dataset asks for it, with random numbers from
        ``generator``, which lives on the images' device) and training labels."""
        x = self.x_train[index]
        if self.augment:
            x = _random_crop_flip(x, generator, _CROP_PADDING)
        return self.normalize(x), self.y_train[index]

    def probe_batch(self) -> torch.Tensor:
        """The normalised probe images, without augmentation; computed once, do not modify."""
        if self._probe is None:
            self._probe = self.normalize(self.x_test[self.probe_index])
        return self._probe

    def test_seen(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Indices of the test images whose class is trained on, and their training labels."""
        if self._seen is None:
            labels = self.to_train_label[self.y_test]
            index = torch.nonzero(labels >= 0).squeeze(1)
            self._seen = index, labels[index]
        return self._seen


def dataset_names(data_dir: Path | None = None) -> list[str]:
    """The built-in datasets, then ``custom:<name>`` for each folder or ``.npz`` in ``<data_dir>/custom``."""
    root = (settings.data_dir() if data_dir is None else Path(data_dir)) / "custom"
    custom: list[str] = []
    if root.is_dir():
        for entry in sorted(root.iterdir()):
            if entry.name.startswith("."):
                continue
            if entry.is_dir():
                custom.append(entry.name)
            elif entry.is_file() and entry.suffix == ".npz":
                custom.append(entry.stem)
    return list(DATASETS) + [CUSTOM_PREFIX + name for name in dict.fromkeys(custom)]


_LOAD_LOCK = threading.Lock()


def load_raw(dataset: str, data_dir: Path) -> RawData:
    """Load a whole dataset to CPU tensors, once per process (custom data reloads when its files change)."""
    data_dir = Path(data_dir)
    if not dataset.startswith(CUSTOM_PREFIX):
        if dataset not in DATASETS:
            raise DataError(f"unknown dataset '{dataset}'; choose one of: {', '.join(dataset_names(data_dir))}")
        return _load_once(dataset, data_dir, None)
    if not settings.limits().custom_datasets:
        # Whatever asks (a run, a page showing a stored run's images, an export): the folder stays private.
        raise DataError("custom datasets are turned off on this server")
    name = dataset.removeprefix(CUSTOM_PREFIX)
    try:
        return _load_once(dataset, data_dir, _fingerprint(_dataset_paths(_custom_source(name, data_dir), name)))
    except OSError as error:
        # A folder the server may not read, a dangling link: a message for the page, not a traceback.
        raise DataError(f"cannot read the custom dataset '{name}' in {data_dir / 'custom'} "
                        f"({error.strerror or error})") from error


def _load_once(dataset: str, data_dir: Path, fingerprint: tuple[int, int, int] | None) -> RawData:
    # One load at a time: two runs starting together must not unpack into the same folder at once.
    with _LOAD_LOCK:
        return _load_raw_cached(dataset, str(data_dir), fingerprint)


@functools.lru_cache(maxsize=4)
def _load_raw_cached(dataset: str, data_dir: str, fingerprint: tuple[int, int, int] | None) -> RawData:
    root = Path(data_dir)
    if dataset.startswith(CUSTOM_PREFIX):
        return _load_custom(dataset.removeprefix(CUSTOM_PREFIX), root)
    prepared = root / "prepared" / f"{dataset}.npz"
    if prepared.is_file():
        try:
            x_train, y_train, x_test, y_test = _read_npz(prepared)
        except DataError:
            pass  # a damaged cache is rebuilt from the originals below
        else:
            info = DATASETS[dataset]
            return RawData(x_train, y_train, x_test, y_test, info.class_names, info.augment)
    loader = {"digits": _load_digits, "cifar10": lambda: _load_cifar10(root)}.get(
        dataset, lambda: _load_mnist_like(dataset, root))
    raw = loader()
    _write_prepared(raw, prepared)
    return raw


def _write_prepared(raw: RawData, path: Path) -> None:
    """Keep the decoded tensors as one .npz: the next process loads it in milliseconds, without
    importing torchvision or scikit-learn, which is most of the time to a run's first snapshot."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        with open(partial, "wb") as file:
            np.savez(file, x_train=raw.x_train.numpy(), y_train=raw.y_train.numpy(),
                     x_test=raw.x_test.numpy(), y_test=raw.y_test.numpy())
        partial.replace(path)
    except OSError:
        pass  # a read-only data folder only costs the faster start


def prepare(
    dataset: str,
    data_dir: Path,
    device: torch.device,
    *,
    classes: Sequence[int] | None = None,
    label_noise: float = 0.0,
    train_size: int | None = None,
    probe_size: int = 2000,
    seed: int = 0,
) -> TrainingData:
    """Select, subsample and corrupt the training set, pick the probe set, and move it all to ``device``.

    ``classes`` are the original class ids to train on (None: every class with training images);
    the others stay in the test and probe sets as unseen classes. ``train_size`` keeps a stratified
    subset (capped at what is available). ``label_noise`` flips exactly ``round(label_noise * N)``
    labels, each to a different training class. The probe set depends only on the dataset and
    ``probe_size``, never on ``seed``. Same arguments, same tensors.
    """
    raw = load_raw(dataset, data_dir)
    num_classes = len(raw.class_names)
    train_classes = _check_classes(classes, raw, display_name(dataset))
    if not 0.0 <= label_noise < 1.0:
        raise DataError(f"label noise must be at least 0 and below 1, got {label_noise}")
    if train_size is not None and train_size < len(train_classes):
        raise DataError(
            f"train size must be at least the number of training classes ({len(train_classes)}), "
            f"got {train_size}"
        )
    if probe_size < 1:
        raise DataError(f"probe size must be at least 1, got {probe_size}")
    generator = torch.Generator().manual_seed(seed)

    keep = torch.nonzero(torch.isin(raw.y_train, torch.tensor(train_classes))).squeeze(1)
    if train_size is not None and train_size < len(keep):
        keep = keep[_stratified_pick(raw.y_train[keep], train_size, generator)]
    # Gathering copies the whole set; skip it when every image is kept (a full CIFAR-10 copy costs ~0.3 s).
    x_train = raw.x_train if len(keep) == len(raw.y_train) else raw.x_train[keep]

    to_train_label = torch.full((num_classes,), -1, dtype=torch.int64)
    to_train_label[list(train_classes)] = torch.arange(len(train_classes))
    y_train = to_train_label[raw.y_train[keep]]
    noisy = torch.zeros(len(y_train), dtype=torch.bool)
    flipped = torch.randperm(len(y_train), generator=generator)[: round(label_noise * len(y_train))]
    offset = torch.randint(1, len(train_classes), (len(flipped),), generator=generator)
    y_train[flipped] = (y_train[flipped] + offset) % len(train_classes)
    noisy[flipped] = True

    probe_generator = torch.Generator().manual_seed(_PROBE_SEED)
    probe_index = _stratified_pick(raw.y_test, min(probe_size, len(raw.y_test)), probe_generator)
    mean, std = _channel_stats(x_train)

    return TrainingData(
        class_names=raw.class_names,
        augment=raw.augment,
        channels=raw.x_train.shape[1],
        image_size=raw.x_train.shape[2],
        x_train=x_train.to(device),
        y_train=y_train.to(device),
        noisy=noisy.to(device),
        train_classes=train_classes,
        to_train_label=to_train_label.to(device),
        x_test=raw.x_test.to(device),
        y_test=raw.y_test.to(device),
        probe_index=probe_index.to(device),
        probe_labels=raw.y_test[probe_index].to(device),
        mean=mean.to(device),
        std=std.to(device),
    )


def display_name(dataset: str) -> str:
    """How a dataset is named to people: "MNIST", "custom dataset 'leaves'"."""
    info = DATASETS.get(dataset)
    return info.display_name if info else f"custom dataset '{dataset.removeprefix(CUSTOM_PREFIX)}'"


def _check_classes(classes: Sequence[int] | None, raw: RawData, display_name: str) -> tuple[int, ...]:
    num_classes = len(raw.class_names)
    has_images = torch.bincount(raw.y_train, minlength=num_classes) > 0
    if classes is None:
        chosen = {c for c in range(num_classes) if has_images[c]}
    else:
        chosen = set()
        for value in classes:
            try:
                class_id = operator.index(value)
            except TypeError:
                raise DataError(f"class ids must be whole numbers, got {value!r}") from None
            if not 0 <= class_id < num_classes:
                raise DataError(
                    f"class {class_id} does not exist in {display_name} (classes 0–{num_classes - 1})"
                )
            if not has_images[class_id]:
                raise DataError(f"class {class_id} has no training images in {display_name}")
            chosen.add(class_id)
    if len(chosen) < 2:
        raise DataError(f"training needs at least 2 classes, got {sorted(chosen)}")
    return tuple(sorted(chosen))


def _stratified_pick(labels: torch.Tensor, total: int, generator: torch.Generator) -> torch.Tensor:
    """Sorted indices of ``total`` items, each class getting its proportional share (largest remainder).

    Hand-written instead of scikit-learn's splitters: it is one small function, and importing
    scikit-learn would add about a second to every run's start.
    """
    n = len(labels)
    counts = torch.bincount(labels)
    quota = counts * total // n
    remainder = counts * total % n
    # Leftover picks go to the largest remainders, ties to the lower class id: deterministic.
    extra = total - int(quota.sum())
    quota[torch.sort(remainder, descending=True, stable=True).indices[:extra]] += 1
    # Grouped by class, shuffled within each class; take the first ``quota`` of every group.
    order = torch.randperm(n, generator=generator)
    order = order[torch.sort(labels[order], stable=True).indices]
    grouped = labels[order]
    rank = torch.arange(n) - (torch.cumsum(counts, 0) - counts)[grouped]
    return order[rank < quota[grouped]].sort().values


def _split(labels: torch.Tensor, test_fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Stratified (train, test) indices with the fixed split seed."""
    test = _stratified_pick(
        labels, round(test_fraction * len(labels)), torch.Generator().manual_seed(_SPLIT_SEED)
    )
    is_train = torch.ones(len(labels), dtype=torch.bool)
    is_train[test] = False
    return torch.nonzero(is_train).squeeze(1), test


def _channel_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of uint8 images in [0, 1] scale, shaped (1, C, 1, 1) float32."""
    # A histogram of the 256 byte values is exact and needs no float copy of the training set.
    hist = torch.stack(
        [torch.bincount(x[:, c].reshape(-1), minlength=256) for c in range(x.shape[1])]
    ).double()
    values = torch.arange(256, dtype=torch.float64) / 255
    total = hist.sum(1)
    mean = (hist * values).sum(1) / total
    var = (hist * (values - mean[:, None]) ** 2).sum(1) / total
    # A constant channel would otherwise divide by zero.
    std = var.sqrt().clamp_min(1e-3)
    return mean.float().view(1, -1, 1, 1), std.float().view(1, -1, 1, 1)


def _random_crop_flip(x: torch.Tensor, generator: torch.Generator, padding: int) -> torch.Tensor:
    """Per-sample random crop of the zero-padded images and per-sample horizontal flip, as one gather.

    The random numbers are drawn where the images are (``generator`` is on their device): offsets drawn on
    the CPU would be copied to a GPU, and wait for it, every step.
    """
    b, c, h, w = x.shape
    dy = torch.randint(0, 2 * padding + 1, (b,), generator=generator, device=x.device)
    dx = torch.randint(0, 2 * padding + 1, (b,), generator=generator, device=x.device)
    flip = torch.rand(b, generator=generator, device=x.device) < 0.5
    rows = dy[:, None] + torch.arange(h, device=x.device)
    cols = dx[:, None] + torch.arange(w, device=x.device)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    padded = F.pad(x, (padding, padding, padding, padding))
    batch = torch.arange(b, device=x.device)[:, None, None, None]
    channel = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]


@contextlib.contextmanager
def _network_timeout(seconds: float) -> Iterator[None]:
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _torchvision_splits(dataset_class: Any, root: Path, missing: str, remedy: str) -> tuple[Any, Any]:
    """Train and test split of a torchvision dataset, downloading (or just unpacking) if needed.

    If that fails, the error says ``"<missing> and could not be downloaded (<why>). <remedy>"``.
    """
    try:
        with _network_timeout(_DOWNLOAD_TIMEOUT_S):
            train = dataset_class(root=root, train=True, download=True)
            test = dataset_class(root=root, train=False, download=True)
    except (RuntimeError, OSError) as error:
        lines = str(error).strip().splitlines() or [type(error).__name__]
        raise DatasetUnavailable(f"{missing} and could not be downloaded ({lines[-1]}). {remedy}") from error
    return train, test


def _load_mnist_like(dataset: str, root: Path) -> RawData:
    from torchvision import datasets

    dataset_class = datasets.MNIST if dataset == "mnist" else datasets.FashionMNIST
    info = DATASETS[dataset]
    folder = root / dataset_class.__name__ / "raw"
    files = ", ".join(name for name, _ in dataset_class.resources)
    remedy = f"Put the files {files} into {folder}, or choose the offline dataset 'digits'."
    train, test = _torchvision_splits(dataset_class, root, f"{info.display_name} is not in {folder}", remedy)
    return RawData(
        x_train=train.data.unsqueeze(1).contiguous(),
        y_train=train.targets.long(),
        x_test=test.data.unsqueeze(1).contiguous(),
        y_test=test.targets.long(),
        class_names=info.class_names,
        augment=info.augment,
    )


def _load_cifar10(root: Path) -> RawData:
    from torchvision import datasets

    info = DATASETS["cifar10"]
    fallback = root / "cifar10.npz"
    has_torchvision_files = (root / datasets.CIFAR10.base_folder).is_dir() or (
        root / datasets.CIFAR10.filename
    ).is_file()
    if fallback.is_file() and not has_torchvision_files:
        x_train, y_train, x_test, y_test = _read_npz(fallback)
        if max(int(y_train.max()), int(y_test.max())) >= len(info.class_names):
            raise DataError(f"the labels in {fallback} must be CIFAR-10 class ids 0–9")
    else:
        remedy = (
            f"Put {datasets.CIFAR10.filename} (from {datasets.CIFAR10.url}) into {root}, or a Keras-layout "
            f"{fallback} with the arrays {', '.join(_NPZ_KEYS)}, or choose the offline dataset 'digits'."
        )
        train, test = _torchvision_splits(datasets.CIFAR10, root, f"CIFAR-10 is not in {root}", remedy)
        x_train, x_test = (
            torch.from_numpy(split.data).permute(0, 3, 1, 2).contiguous() for split in (train, test)
        )
        y_train, y_test = (torch.tensor(split.targets, dtype=torch.int64) for split in (train, test))
    return RawData(x_train, y_train, x_test, y_test, info.class_names, info.augment)


def _load_digits() -> RawData:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    small = torch.from_numpy(bunch.images).float().mul(255 / 16).unsqueeze(1)
    images = F.interpolate(small, size=(28, 28), mode="bilinear", align_corners=False)
    x = images.round().clamp(0, 255).to(torch.uint8)
    y = torch.from_numpy(bunch.target).long()
    train, test = _split(y, _DIGITS_TEST_FRACTION)
    info = DATASETS["digits"]
    return RawData(x[train], y[train], x[test], y[test], info.class_names, info.augment)


def _custom_source(name: str, data_dir: Path) -> Path:
    """The folder or .npz file of custom dataset ``name``; refuses names leading out of the custom folder."""
    root = data_dir / "custom"
    if not name or ".." in name or any(char in name for char in "/\\:\0") or Path(name).is_absolute():
        raise DataError(f"custom dataset names are folder or file names inside {root}, got '{name}'")
    for candidate in (root / name, root / f"{name}.npz"):
        if candidate.exists():
            _check_link(candidate, root.resolve(), name)
            return candidate
    raise DatasetUnavailable(
        f"there is no custom dataset '{name}': put a folder of class folders "
        f"({root / name}/<class>/<images>) or a .npz file with the arrays {', '.join(_NPZ_KEYS)} "
        f"({root / name}.npz) there"
    )


def _check_link(path: Path, custom: Path, name: str) -> None:
    """A link in custom/ may only lead to another place inside it (``custom``, resolved): the folder is what
    the owner offers, not everything the server can read. Nor to a folder holding it: the image loader
    would list that folder again inside itself, level after level."""
    if not path.is_symlink():
        return
    # realpath, not resolve(): a loop of links is for stat() to report, not a RuntimeError here.
    target = Path(os.path.realpath(path))
    if not target.is_relative_to(custom):
        raise DataError(
            f"the custom dataset {quote(name)} leads out of {custom}: {path} is a link to a place outside "
            f"it; links there may only point inside it: copy or move the files into {custom} instead"
        )
    if Path(os.path.realpath(path.parent)).is_relative_to(target):
        raise DataError(f"the custom dataset {quote(name)} holds {path}, a link to a folder that holds the "
                        "link itself (a loop): remove the link")


def _dataset_paths(source: Path, name: str) -> list[Path]:
    """``source`` and every file and folder under it, links followed as the image loader follows them;
    each link is checked before anything behind it is listed."""
    custom = source.parent.resolve()
    paths = [source]
    for folder, folders, files in os.walk(source, followlinks=True):
        for entry in folders + files:
            path = Path(folder, entry)
            _check_link(path, custom, name)  # before os.walk descends into it
            paths.append(path)
    return paths


def _fingerprint(paths: list[Path]) -> tuple[int, int, int]:
    """Changes when any of ``paths`` (a dataset's files and folders) is added, removed or rewritten."""
    stats = [path.stat() for path in paths]
    return len(stats), max(s.st_mtime_ns for s in stats), sum(s.st_size for s in stats)


def _max_custom_bytes() -> int:
    return int(settings.limits().max_custom_mb * 2**20)


def _too_big(what: str, size: int, limit: int) -> DataError:
    return DataError(
        f"{what} take {size / 2**20:,.1f} MB decoded, over the limit of {limit / 2**20:,.1f} MB for a custom "
        f"dataset: use fewer or smaller images, or raise ${settings.MAX_CUSTOM_MB_ENV} on this server"
    )


def _load_custom(name: str, data_dir: Path) -> RawData:
    source = _custom_source(name, data_dir)
    if source.is_dir():
        return _load_image_folder(source, _max_custom_bytes())
    x_train, y_train, x_test, y_test = _read_npz(source, _max_custom_bytes())
    num_classes = max(int(y_train.max()), int(y_test.max())) + 1
    if len(torch.unique(y_train)) < 2:
        raise DataError(f"y_train in {source} has only one class; training needs at least 2")
    return RawData(x_train, y_train, x_test, y_test, tuple(str(c) for c in range(num_classes)), False)


def _read_npz(
    path: Path, max_bytes: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The four arrays of a Keras-layout .npz, as uint8 (N, C, H, W) images and int64 labels.

    What each array decodes to is read from its .npy header first and must be within ``max_bytes``
    (None: no limit, for the installation's own files) before anything is decompressed.
    """
    unreadable = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)
    try:
        with open(path, "rb") as file:
            is_zip = zipfile.is_zipfile(file)
        if not is_zip:
            # NumPy would take it for a pickle and suggest loading it unsafely; say what it should be instead.
            raise DataError(f"{path} is not a .npz file (a zip of NumPy arrays, as np.savez writes) with the "
                            f"arrays {', '.join(_NPZ_KEYS)}")
        with zipfile.ZipFile(path) as archive:
            arrays = _npz_arrays(archive, path, max_bytes)
    except DataError:
        raise
    except unreadable as error:
        raise DataError(f"cannot read {path} as a .npz file ({error})") from error
    x_train = _npz_images(arrays["x_train"], "x_train", path)
    x_test = _npz_images(arrays["x_test"], "x_test", path)
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DataError(
            f"x_train and x_test in {path} hold different image shapes: {tuple(x_train.shape[1:])} "
            f"and {tuple(x_test.shape[1:])} (C, H, W)"
        )
    y_train = _npz_labels(arrays["y_train"], "y_train", len(x_train), path)
    y_test = _npz_labels(arrays["y_test"], "y_test", len(x_test), path)
    return x_train, y_train, x_test, y_test


def _npz_arrays(archive: zipfile.ZipFile, path: Path, max_bytes: int | None) -> dict[str, np.ndarray]:
    members = archive.namelist()
    missing = [key for key in _NPZ_KEYS if f"{key}.npy" not in members]
    if missing:
        raise DataError(
            f"{path} lacks the array(s) {', '.join(missing)}; it has {quote(members) if members else 'none'} "
            f"but needs {', '.join(f'{key}.npy' for key in _NPZ_KEYS)} (as np.savez writes them)"
        )
    sizes = {key: _npy_bytes(archive, f"{key}.npy", path) for key in _NPZ_KEYS}
    if max_bytes is not None and sum(sizes.values()) > max_bytes:
        raise _too_big(f"the arrays in {path}", sum(sizes.values()), max_bytes)
    arrays = {}
    for key in _NPZ_KEYS:
        with archive.open(f"{key}.npy") as member:
            # Never allow_pickle: a pickle in a user's file would run code of its choosing.
            arrays[key] = np.lib.format.read_array(member, allow_pickle=False)
    return arrays


def _npy_bytes(archive: zipfile.ZipFile, member: str, path: Path) -> int:
    """What the array ``member`` decodes to, from its .npy header alone (nothing after it is decompressed).

    The zip must give the member exactly the header's size: reading then stops where the header says,
    and the zip's checksum of the whole member is verified.
    """
    readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    with archive.open(member) as file:
        version = np.lib.format.read_magic(file)
        if version not in readers:
            raise DataError(f"{member} in {path} is a .npy file of version {version[0]}.{version[1]}; "
                            "save the arrays with np.savez (versions 1.0 and 2.0)")
        shape, _, dtype = readers[version](file)
        start = file.tell()
    if dtype.hasobject:
        return 0  # read_array refuses it (allow_pickle=False) before unpickling anything
    size = math.prod(shape) * dtype.itemsize
    stored = archive.getinfo(member).file_size - start
    if stored != size:
        raise DataError(
            f"{member} in {path} holds {stored:,} bytes of data, but its header says {quote(shape)} of "
            f"{dtype}, which is {size:,} bytes: the file is damaged or was not written by NumPy; save it "
            "again with np.savez"
        )
    return size


def _npz_images(array: np.ndarray, key: str, path: Path) -> torch.Tensor:
    if array.ndim == 3:
        array = array[:, None]
    elif array.ndim == 4 and array.shape[3] in (1, 3):
        array = array.transpose(0, 3, 1, 2)
    elif not (array.ndim == 4 and array.shape[1] in (1, 3)):
        raise DataError(
            f"{key} in {path} has shape {array.shape}; expected N×H×W, N×H×W×C or N×C×H×W with C = 1 or 3"
        )
    if len(array) == 0:
        raise DataError(f"{key} in {path} holds no images")
    if array.shape[2] != array.shape[3]:
        raise DataError(
            f"{key} in {path} holds {array.shape[3]}×{array.shape[2]} images; they must be square"
        )
    if array.shape[2] * array.shape[3] > MAX_CUSTOM_PIXELS:
        raise _too_many_pixels(f"{key} in {path} holds images of", array.shape[3], array.shape[2])
    if np.issubdtype(array.dtype, np.floating):
        low, high = float(array.min()), float(array.max())
        if not (low >= 0.0 and high <= 1.0):
            raise DataError(
                f"{key} in {path} holds floats from {low:g} to {high:g}; float images must lie in [0, 1]"
            )
        array = np.rint(array * 255).astype(np.uint8)
    elif array.dtype != np.uint8:
        raise DataError(f"{key} in {path} has dtype {array.dtype}; expected uint8 (0–255) or float in [0, 1]")
    return torch.from_numpy(np.ascontiguousarray(array))


def _npz_labels(array: np.ndarray, key: str, count: int, path: Path) -> torch.Tensor:
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1 or array.dtype.kind not in "iu":  # not bool, not float: a class id is a whole number
        raise DataError(
            f"{key} in {path} must be a 1-D array of integer class ids, "
            f"got shape {array.shape} of {array.dtype}: save the labels as integers 0, 1, 2, …"
        )
    if len(array) != count:
        raise DataError(f"{path}: x_{key[2:]} has {count} images but {key} has {len(array)} labels")
    # As Python ints: a uint64 above 2**63 would wrap to a negative int64.
    low, high = int(array.min()), int(array.max())
    if low < 0 or high >= MAX_CUSTOM_CLASSES:
        raise DataError(
            f"{key} in {path} holds the class id {quote(low if low < 0 else high)}; class ids must be "
            f"0 to {MAX_CUSTOM_CLASSES - 1} (at most {MAX_CUSTOM_CLASSES} classes): number the classes 0, 1, 2, …"
        )
    return torch.from_numpy(array.astype(np.int64))


def _load_image_folder(root: Path, max_bytes: int) -> RawData:
    """ImageFolder layout: ``<class>/<images>``, or ``train/<class>/…`` and ``test/<class>/…``."""
    from torchvision.datasets.folder import make_dataset

    train_dir, test_dir = root / "train", root / "test"
    split_given = train_dir.is_dir() and test_dir.is_dir()
    if train_dir.is_dir() != test_dir.is_dir():
        present, absent = ("train", "test") if train_dir.is_dir() else ("test", "train")
        raise DataError(f"{root} has a '{present}' folder but no '{absent}' folder; give both or neither")
    source = train_dir if split_given else root
    class_names = _class_folders(source)
    class_to_idx = {name: index for index, name in enumerate(class_names)}
    samples = make_dataset(source, class_to_idx, extensions=_IMAGE_EXTENSIONS, allow_empty=True)
    labels = torch.tensor([label for _, label in samples], dtype=torch.int64)
    counts = torch.bincount(labels, minlength=len(class_names))
    empty = [name for name, count in zip(class_names, counts.tolist(), strict=True) if count == 0]
    if empty:
        raise DataError(
            f"the class folder(s) {', '.join(empty)} in {source} hold no images "
            f"({', '.join(_IMAGE_EXTENSIONS)})"
        )
    test_samples: list[tuple[str, int]] = []
    if split_given:
        unknown = sorted(set(_class_folders(test_dir, minimum=1)) - set(class_names))
        if unknown:
            raise DataError(f"{test_dir} has class folder(s) {', '.join(unknown)} that {train_dir} lacks")
        test_samples = make_dataset(test_dir, class_to_idx, extensions=_IMAGE_EXTENSIONS, allow_empty=True)
        if not test_samples:
            raise DataError(f"no images ({', '.join(_IMAGE_EXTENSIONS)}) in the class folders of {test_dir}")

    paths = [path for path, _ in samples + test_samples]
    x = _read_images(paths, root, max_bytes)
    y = torch.tensor([label for _, label in samples + test_samples], dtype=torch.int64)
    if split_given:
        train, test = torch.arange(len(samples)), torch.arange(len(samples), len(paths))
    else:
        train, test = _split(y, _CUSTOM_TEST_FRACTION)
        if len(test) == 0:
            raise DataError(
                f"{root} has too few images to set 20% aside for testing; "
                "add images or give train/ and test/ folders"
            )
    return RawData(x[train], y[train], x[test], y[test], tuple(class_names), False)


def _class_folders(directory: Path, minimum: int = 2) -> list[str]:
    names = sorted(
        entry.name for entry in directory.iterdir() if entry.is_dir() and not entry.name.startswith(".")
    )
    if not names:
        raise DataError(
            f"no class folders in {directory}: put the images in one folder per class, e.g. <class>/1.png"
        )
    if len(names) < minimum:
        raise DataError(
            f"only one class folder ('{names[0]}') in {directory}; training needs at least 2 classes"
        )
    if len(names) > MAX_CUSTOM_CLASSES:
        raise DataError(
            f"{directory} has {len(names):,} class folders, over the limit of {MAX_CUSTOM_CLASSES:,} classes "
            "for a custom dataset: merge or remove some"
        )
    return names


def _read_images(paths: list[str], folder: Path, max_bytes: int) -> torch.Tensor:
    """Decode all images of ``folder`` once; uint8 (N, 1, H, W) if every pixel is grey, else (N, 3, H, W).

    Each image's size is read from its header before its pixels are decoded. The first one's size, which
    every image must share, sets what the dataset will take: it must be within ``max_bytes``.
    """
    with _open_image(paths[0]) as first:
        width, height = first.size
    array = _image_array(paths, folder, width, height, max_bytes)
    for index, path in enumerate(paths):
        with _open_image(path) as image:
            if image.size != (width, height):
                raise DataError(
                    f"images must all have the same size, but {paths[0]} is {width}×{height} and {path} is "
                    f"{image.size[0]}×{image.size[1]}; resize them first"
                )
            try:
                array[index] = np.asarray(image.convert("RGB"))
            except (OSError, ValueError) as error:
                raise DataError(f"cannot read the image {path} ({error})") from error
    x = torch.from_numpy(array).permute(0, 3, 1, 2)
    # Grey images saved as RGB are common; checking the pixels rather than the file mode catches them.
    if bool((x[:, 0] == x[:, 1]).all()) and bool((x[:, 0] == x[:, 2]).all()):
        x = x[:, :1]
    return x.contiguous()


def _open_image(path: str) -> Any:
    """The image, its header read and its pixels not yet decoded."""
    from PIL import Image

    try:
        return Image.open(path)
    except Image.DecompressionBombError as error:
        # Pillow's own bound (89 million pixels, refused from twice that) is far above ours: the same advice.
        raise DataError(f"the image {path} is far over the limit of {MAX_CUSTOM_PIXELS:,} pixels per image "
                        f"({error}); resize the images to at most {_max_side()}×{_max_side()}") from error
    except (OSError, ValueError) as error:
        raise DataError(f"cannot read the image {path} ({error})") from error


def _image_array(paths: list[str], folder: Path, width: int, height: int, max_bytes: int) -> np.ndarray:
    """Room for every image as (N, H, W, 3) uint8, once the first one's size has passed the limits."""
    if width * height > MAX_CUSTOM_PIXELS:
        raise _too_many_pixels(f"the image {paths[0]} is", width, height)
    if width != height:
        raise DataError(f"images must be square, but {paths[0]} is {width}×{height}")
    size = len(paths) * height * width * 3
    if size > max_bytes:
        raise _too_big(f"{len(paths):,} images of {width}×{height} pixels in {folder}", size, max_bytes)
    return np.empty((len(paths), height, width, 3), np.uint8)


def _max_side() -> int:
    return math.isqrt(MAX_CUSTOM_PIXELS)


def _too_many_pixels(what: str, width: int, height: int) -> DataError:
    return DataError(
        f"{what} {width}×{height} pixels, over the limit of {MAX_CUSTOM_PIXELS:,} pixels per image: "
        f"resize the images to at most {_max_side()}×{_max_side()}"
    )
