"""The class colours, measured: every pair stays apart in a perceptual colour space for normal vision,
the three dichromacies and a washed-out projector, and pairs that come close differ in shape."""

from __future__ import annotations

import itertools

import numpy as np
from colorspacious import cspace_convert

from dmlviz.figures import PALETTE, SHAPES, class_color, class_symbol

# The palette before this one (Paul Tol's ten): classes 6 and 8, dark brown and maroon, were hard to
# tell apart on a projector. Kept here to show that the threshold below tells it from a good one.
OLD_PALETTE = ("#332288", "#88CCEE", "#44AA99", "#117733", "#999933", "#DDCC77", "#661100", "#CC6677", "#882255",
               "#AA4499")

# Machado et al.'s simulation (colorspacious) at severity 100: the full dichromacy, the hardest case.
DICHROMACIES = ("deuteranomaly", "protanomaly", "tritanomaly")
# A projector in a lit room: stray light adds 5 % of white to every colour (a 20:1 contrast), which
# crushes dark colours together.
FLARE = 0.05
VISIONS = ("normal", *DICHROMACIES, "projector")

# Distances are ΔE' in CAM02-UCS, where about 1 is a just-noticeable difference between large patches;
# points a few pixels wide need many times that. MIN_DISTANCE = 14 is above every pair that the old
# palette lets come close (11.8 under tritanopia, 12.3 under deuteranopia, 13.1 for classes 6 and 8
# on a projector), and as much as a well-made ten-colour set reaches: the best legible ten found by
# search keep ~19 under all five visions. APART = 20 is Petroff's default minimum for colours to be
# told apart; pairs below it under any vision must differ in shape too.
MIN_DISTANCE = 14.0
APART = 20.0
# J' (CAM02-UCS lightness): not so dark that a projector merges colours (the old 6 and 8 had 25 and
# 36), not lighter than the old palette's lightest (84), so points stay visible on white.
LIGHTNESS = (40.0, 85.0)


def _rgb(colors: tuple[str, ...]) -> np.ndarray:
    return np.array([[int(c[i:i + 2], 16) for i in (1, 3, 5)] for c in colors]) / 255


def seen(colors: tuple[str, ...], vision: str) -> np.ndarray:
    """The colours in CAM02-UCS (J', a', b') as a viewer with ``vision`` sees them."""
    rgb = _rgb(colors)
    if vision in DICHROMACIES:
        simulated = cspace_convert(rgb, {"name": "sRGB1+CVD", "cvd_type": vision, "severity": 100}, "sRGB1")
        rgb = np.clip(simulated, 0, 1)
    elif vision == "projector":
        linear = cspace_convert(rgb, "sRGB1", "sRGB1-linear")
        rgb = np.clip(cspace_convert((linear + FLARE) / (1 + FLARE), "sRGB1-linear", "sRGB1"), 0, 1)
    return cspace_convert(rgb, "sRGB1", "CAM02-UCS")


def distances(colors: tuple[str, ...], vision: str) -> dict[tuple[int, int], float]:
    """ΔE' of every pair of colours under ``vision``."""
    jab = seen(colors, vision)
    return {(i, j): float(np.linalg.norm(jab[i] - jab[j])) for i, j in itertools.combinations(range(len(colors)), 2)}


def closest(colors: tuple[str, ...]) -> dict[str, float]:
    return {vision: min(distances(colors, vision).values()) for vision in VISIONS}


def test_every_pair_of_classes_stays_apart_for_every_vision():
    # Measured: normal 18.7, deuteranopia 14.9, protanopia 14.5, tritanopia 15.3, projector 16.2.
    assert len(PALETTE) == 10
    assert {vision: d for vision, d in closest(PALETTE).items() if d < MIN_DISTANCE} == {}


def test_the_old_palette_fails_the_threshold():
    old = closest(OLD_PALETTE)
    assert min(old.values()) < MIN_DISTANCE
    assert min(distances(OLD_PALETTE, "projector"), key=distances(OLD_PALETTE, "projector").get) == (6, 8)


def test_colours_are_neither_too_dark_nor_too_light():
    lightness = seen(PALETTE, "normal")[:, 0]
    assert LIGHTNESS[0] <= lightness.min() and lightness.max() <= LIGHTNESS[1]
    assert seen(OLD_PALETTE, "normal")[:, 0].min() < LIGHTNESS[0]


def test_classes_whose_colours_come_close_differ_in_shape():
    assert {class_symbol(c) for c in range(10)} == set(SHAPES)
    for vision in VISIONS:
        for (i, j), d in distances(PALETTE, vision).items():
            assert d >= APART or class_symbol(i) != class_symbol(j), (vision, i, j, d)
    # Past ten classes a colour comes back, with another shape.
    assert all(class_color(c + 10) == class_color(c) and class_symbol(c + 10) != class_symbol(c) for c in range(10))
