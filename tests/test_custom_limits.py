"""Custom datasets are checked against their limits from what their files declare, before decoding:
pixels per image, the decoded total ($DMLVIZ_MAX_CUSTOM_MB), the number of classes, the label values,
and links that would lead out of the custom folder."""

from __future__ import annotations

import io
import math
import re
import struct
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dmlviz import data, settings
from dmlviz.data import DataError, DatasetUnavailable, load_raw
from dmlviz.params import quote


@pytest.fixture(autouse=True)
def _default_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(settings.MAX_CUSTOM_MB_ENV, raising=False)
    monkeypatch.delenv(settings.PUBLIC_ENV, raising=False)


@pytest.fixture
def never_decoded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Decoding any image's pixels fails the test: a refusal must come from the headers alone."""
    def load(self: Image.Image) -> None:
        raise AssertionError(f"pixels of {self.size} decoded")

    monkeypatch.setattr(Image.Image, "load", load)


def refusal(dataset: str, data_dir: Path, match: str) -> tuple[str, int]:
    """The message refusing ``dataset`` and the peak of the allocations (NumPy's and Python's) made to
    refuse it a second time: the first imports torchvision and Pillow's plugins, which are not the data's."""
    with pytest.raises(DataError, match=match):
        load_raw(dataset, data_dir)
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match=match) as caught:
            load_raw(dataset, data_dir)
        return str(caught.value), tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def write_images(folder: Path, count: int, size: int = 8) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.new("L", (size, size), i * 20).save(folder / f"{i}.png")


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` × ``height`` grey pixels and holds none: only decoding would notice."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def npz_declaring(path: Path, shape: tuple[int, ...], *, bomb: bool) -> None:
    """An .npz whose x_train.npy header declares ``shape`` (uint8) over 16 bytes of data. With ``bomb``
    the zip's directory gives that member the header's size too, as a real zip bomb's would."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "|u1", "fortran_order": False, "shape": shape})
    header = buffer.getvalue()
    labels = np.array([0, 1, 0, 1])
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("x_train.npy", header + bytes(16))
        archive.writestr("y_train.npy", npy(labels))
        archive.writestr("x_test.npy", npy(np.zeros((4, 8, 8), np.uint8)))
        archive.writestr("y_test.npy", npy(labels))
    if bomb:
        content = bytearray(path.read_bytes())
        entry = content.find(b"PK\x01\x02")  # the first central directory entry: x_train.npy
        assert content[entry + 46:entry + 46 + 11] == b"x_train.npy"
        content[entry + 24:entry + 28] = struct.pack("<I", len(header) + math.prod(shape))  # uncompressed size
        path.write_bytes(bytes(content))


def labelled_npz(path: Path, y_train: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    x = np.zeros((len(y_train), 8, 8), np.uint8)
    np.savez(path, x_train=x, y_train=y_train, x_test=x, y_test=np.zeros(len(y_train), np.int64))


# -- pixels per image ---------------------------------------------------------------------------------


def test_a_huge_image_is_refused_from_its_header(tmp_path, never_decoded):
    folder = tmp_path / "custom" / "huge"
    for name in "ab":
        (folder / name).mkdir(parents=True)
        (folder / name / "0.png").write_bytes(png_header(9000, 9000))
    message, peak = refusal("custom:huge", tmp_path, re.escape(
        "is 9000×9000 pixels, over the limit of 1,048,576 pixels per image: resize the images to at most 1024×1024"))
    assert str(folder / "a" / "0.png") in message
    assert peak < 2**20  # 9000² grey pixels are 81 MB


def test_an_image_over_pillows_own_bound_gets_the_same_advice(tmp_path, never_decoded):
    folder = tmp_path / "custom" / "bomb"
    for name in "ab":
        (folder / name).mkdir(parents=True)
        (folder / name / "0.png").write_bytes(png_header(20_000, 20_000))  # Pillow refuses it in open()
    with pytest.raises(DataError, match="far over the limit of 1,048,576 pixels per image .*resize the images "
                                        "to at most 1024×1024"):
        load_raw("custom:bomb", tmp_path)


def test_the_pixel_limit_holds_for_every_image_and_for_npz_arrays(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "MAX_CUSTOM_PIXELS", 7 * 7)
    write_images(tmp_path / "custom" / "eights" / "a", 5)
    write_images(tmp_path / "custom" / "eights" / "b", 5)
    with pytest.raises(DataError, match="is 8×8 pixels, over the limit of 49 pixels per image: resize the "
                                        "images to at most 7×7"):
        load_raw("custom:eights", tmp_path)
    labelled_npz(tmp_path / "custom" / "arrays.npz", np.array([0, 1, 0, 1]))
    with pytest.raises(DataError, match="x_train in .*arrays.npz holds images of 8×8 pixels, over the limit of "
                                        "49 pixels per image"):
        load_raw("custom:arrays", tmp_path)


# -- the decoded total --------------------------------------------------------------------------------


def test_an_image_folder_over_the_total_is_refused_before_decoding(tmp_path, monkeypatch):
    for name in "ab":
        write_images(tmp_path / "custom" / "many" / name, 50, size=64)  # 100 × 64×64 × 3 bytes: 1.2 MB
    monkeypatch.setenv(settings.MAX_CUSTOM_MB_ENV, "1")
    with monkeypatch.context() as patch:
        patch.setattr(Image.Image, "load", lambda self: pytest.fail("decoded"))
        with pytest.raises(DataError, match=re.escape(
                f"100 images of 64×64 pixels in {tmp_path / 'custom' / 'many'} take 1.2 MB decoded, over the "
                f"limit of 1.0 MB for a custom dataset: use fewer or smaller images, or raise "
                f"${settings.MAX_CUSTOM_MB_ENV} on this server")):
            load_raw("custom:many", tmp_path)
    monkeypatch.setenv(settings.MAX_CUSTOM_MB_ENV, "2")
    assert load_raw("custom:many", tmp_path).x_train.shape == (80, 1, 64, 64)


def test_a_compressed_npz_over_the_total_is_refused_before_decompressing(tmp_path, monkeypatch):
    x = np.zeros((1024, 32, 32), np.uint8)  # 1 MB of zeros: a 1,000-fold zip bomb in small
    y = np.arange(1024) % 2
    (tmp_path / "custom").mkdir()
    np.savez_compressed(tmp_path / "custom" / "zeros.npz", x_train=x, y_train=y, x_test=x[:8], y_test=y[:8])
    del x
    monkeypatch.setenv(settings.MAX_CUSTOM_MB_ENV, "0.5")
    _, peak = refusal("custom:zeros", tmp_path, "the arrays in .*zeros.npz take 1.0 MB decoded, over the limit of "
                                                "0.5 MB for a custom dataset: use fewer or smaller images")
    assert peak < 2**18


def test_an_npz_declaring_a_huge_array_is_refused_from_its_header(tmp_path):
    npz_declaring(tmp_path / "custom" / "bomb.npz", (3000, 1024, 1024), bomb=False)
    _, peak = refusal("custom:bomb", tmp_path, "x_train.npy in .*bomb.npz holds 16 bytes of data, but its header "
                                               "says \\(3000, 1024, 1024\\) of uint8, which is 3,145,728,000 bytes: "
                                               "the file is damaged or was not written by NumPy")
    assert peak < 2**18


def test_a_zip_bomb_npz_is_refused_by_the_total_without_decompressing(tmp_path):
    # Header and zip directory agree on 3,000 MB (as a real zip bomb's would); nothing is inflated.
    npz_declaring(tmp_path / "custom" / "bomb.npz", (3000, 1024, 1024), bomb=True)
    _, peak = refusal("custom:bomb", tmp_path, "bomb.npz take 3,000.0 MB decoded, over the limit of 2,048.0 MB")
    assert peak < 2**18


# -- classes and labels -------------------------------------------------------------------------------


def test_too_many_class_folders_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "MAX_CUSTOM_CLASSES", 2)
    for name in "abc":
        write_images(tmp_path / "custom" / "three" / name, 5)
    with pytest.raises(DataError, match="has 3 class folders, over the limit of 2 classes for a custom dataset: "
                                        "merge or remove some"):
        load_raw("custom:three", tmp_path)


@pytest.mark.parametrize(("labels", "bad"), [
    (np.array([0, 1, 2**62, 1], np.int64), 2**62),
    (np.array([0, 1, -1, 1], np.int64), -1),
    (np.array([0, 1, 2**64 - 1, 1], np.uint64), 2**64 - 1),  # not wrapped to -1
    (np.array([0, 1, 1000, 1], np.int16), 1000),
])
def test_class_ids_outside_the_limit_are_refused_before_naming_the_classes(tmp_path, labels, bad):
    labelled_npz(tmp_path / "custom" / "labels.npz", labels)
    _, peak = refusal("custom:labels", tmp_path, re.escape(
        f"y_train in {tmp_path / 'custom' / 'labels.npz'} holds the class id {quote(bad)}; class ids must be 0 to "
        "999 (at most 1000 classes): number the classes 0, 1, 2, …"))
    assert peak < 2**18


@pytest.mark.parametrize("labels", [np.array([0.0, 1.0, 0.0, 1.0]), np.array([False, True, False, True])])
def test_labels_that_are_not_integers_are_refused(tmp_path, labels):
    labelled_npz(tmp_path / "custom" / "labels.npz", labels)
    with pytest.raises(DataError, match=f"y_train in .* must be a 1-D array of integer class ids, got shape "
                                        f"\\(4,\\) of {labels.dtype}: save the labels as integers 0, 1, 2, …"):
        load_raw("custom:labels", tmp_path)


def test_the_largest_class_id_allowed_still_loads(tmp_path):
    labelled_npz(tmp_path / "custom" / "wide.npz", np.array([0, 999, 0, 999], np.uint64))
    assert len(load_raw("custom:wide", tmp_path).class_names) == 1000


# -- links --------------------------------------------------------------------------------------------


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A valid image dataset outside the data folder."""
    folder = tmp_path / "elsewhere" / "shapes"
    write_images(folder / "a", 5)
    write_images(folder / "b", 5)
    return folder


def test_a_dataset_linked_from_outside_is_refused_naming_it(tmp_path, outside):
    data_dir = tmp_path / "data"
    (data_dir / "custom").mkdir(parents=True)
    (data_dir / "custom" / "linked").symlink_to(outside, target_is_directory=True)
    with pytest.raises(DataError, match=re.escape(
            f"the custom dataset 'linked' leads out of {data_dir / 'custom'}: {data_dir / 'custom' / 'linked'} "
            "is a link to a place outside it") + ".*copy or move the files into"):
        load_raw("custom:linked", data_dir)


@pytest.mark.parametrize("where", ["class folder", "image", "npz"])
def test_a_link_inside_a_dataset_leading_out_is_refused(tmp_path, outside, where):
    data_dir = tmp_path / "data"
    custom = data_dir / "custom"
    if where == "class folder":
        write_images(custom / "mine" / "a", 5)
        (custom / "mine" / "b").symlink_to(outside / "b", target_is_directory=True)
    elif where == "image":
        write_images(custom / "mine" / "a", 5)
        write_images(custom / "mine" / "b", 4)
        (custom / "mine" / "b" / "4.png").symlink_to(outside / "b" / "4.png")
    else:
        labelled_npz(tmp_path / "elsewhere" / "arrays.npz", np.array([0, 1, 0, 1]))
        custom.mkdir(parents=True)
        (custom / "mine.npz").symlink_to(tmp_path / "elsewhere" / "arrays.npz")
    with pytest.raises(DataError, match="the custom dataset 'mine' leads out of .*is a link to a place outside"):
        load_raw("custom:mine", data_dir)


def test_links_that_stay_inside_the_custom_folder_are_followed(tmp_path, outside):
    custom = tmp_path / "custom"
    write_images(custom / "base" / "a", 5)
    write_images(custom / "base" / "b", 5)
    (custom / "alias").symlink_to(custom / "base", target_is_directory=True)
    assert load_raw("custom:alias", tmp_path).class_names == ("a", "b")


def test_a_link_to_a_folder_holding_it_is_refused(tmp_path):
    custom = tmp_path / "custom"
    write_images(custom / "loop" / "a", 5)
    write_images(custom / "loop" / "b", 5)
    (custom / "loop" / "a" / "again").symlink_to(custom / "loop", target_is_directory=True)
    with pytest.raises(DataError, match="the custom dataset 'loop' holds .*again, a link to a folder that holds "
                                        "the link itself \\(a loop\\): remove the link"):
        load_raw("custom:loop", tmp_path)


def test_a_missing_or_dangling_dataset_keeps_its_message(tmp_path):
    (tmp_path / "custom").mkdir()
    (tmp_path / "custom" / "gone").symlink_to(tmp_path / "nowhere")
    for name in ("nothing", "gone"):
        with pytest.raises(DatasetUnavailable, match=f"there is no custom dataset '{name}'"):
            load_raw(f"custom:{name}", tmp_path)
