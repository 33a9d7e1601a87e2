"""Axes that behave: the view follows a drawing without jitter and never clips it."""

import numpy as np
import pytest

from dmlviz import figures
from dmlviz.view import AxisFollower, ViewOptions


def box(lo, hi) -> np.ndarray:
    return np.array([lo, hi], dtype=float).T


def inside(extent: np.ndarray, view: np.ndarray, edge: float) -> bool:
    band = edge * (view[:, 1] - view[:, 0])
    return bool(np.all(extent[:, 0] >= view[:, 0] + band - 1e-12) and np.all(extent[:, 1] <= view[:, 1] - band + 1e-12))


def test_the_view_zooms_out_on_the_first_frame_that_would_clip():
    follower = AxisFollower()
    first = follower.update(box([-1, -1], [1, 1]))
    assert inside(box([-1, -1], [1, 1]), first, follower.edge)
    np.testing.assert_allclose(first, box([-1.15, -1.15], [1.15, 1.15]))
    # Growing inside the view, out of the edge band: the view stays exactly where it is.
    for grown in (1.05, 1.1):
        np.testing.assert_array_equal(follower.update(box([-grown, -1], [grown, 1])), first)
    # The first frame that reaches the edge band: out at once, holding the old view and the new extent.
    wider = follower.update(box([-1.2, -1], [1.2, 1]))
    assert inside(box([-1.2, -1], [1.2, 1]), wider, follower.edge)
    assert np.all(wider[:, 0] <= first[:, 0]) and np.all(wider[:, 1] >= first[:, 1])


def test_the_view_zooms_in_only_after_the_drawing_stayed_small_for_patience_frames():
    follower = AxisFollower(patience=4)
    big = follower.update(box([-10, -10], [10, 10]))
    small = box([-1, -1], [1, 1])  # 1/11.5 of the view's span: small
    for _ in range(3):
        np.testing.assert_array_equal(follower.update(small), big)
    # A frame that is not small breaks the run of small frames ...
    np.testing.assert_array_equal(follower.update(box([-6, -6], [6, 6])), big)
    for _ in range(3):
        np.testing.assert_array_equal(follower.update(small), big)
    # ... and the fourth small frame in a row zooms in, fitted to the drawing with the margin.
    np.testing.assert_allclose(follower.update(small), follower.fit(small))
    assert follower.occupancy(small) > follower.zoom_in_below  # no sooner zoomed in than out of reach of zooming in


def test_a_frame_drawn_again_counts_once():
    follower = AxisFollower(patience=2)
    big = follower.update(box([-10, -10], [10, 10]), key=0)
    small = box([-1, -1], [1, 1])
    for _ in range(5):  # the same snapshot, redrawn (another point selected, a rerun)
        np.testing.assert_array_equal(follower.update(small, key=1), big)
    assert not np.array_equal(follower.update(small, key=2), big)


def random_extents(rng: np.random.Generator, k: int, frames: int) -> list[np.ndarray]:
    """A drawing that grows, shrinks, drifts and jumps: a centre and half-spans on a random walk."""
    centre, half = rng.normal(size=k), np.exp(rng.normal(size=k))
    extents = []
    for _ in range(frames):
        regime = rng.random()
        if regime < 0.1:  # a jump (a new projection, a scrub across the run)
            centre, half = rng.normal(size=k) * 5, np.exp(rng.normal(size=k) * 2)
        else:
            centre = centre + rng.normal(size=k) * 0.05 * half
            half = half * np.exp(rng.normal(size=k) * 0.08 + (0.05 if regime < 0.5 else -0.05))
        if rng.random() < 0.05:
            half = half * 0  # every point in one place
        extents.append(np.stack([centre - half, centre + half], axis=1))
    return extents


@pytest.mark.parametrize("square", [False, True])
@pytest.mark.parametrize("k", [2, 3])
def test_over_random_runs_nothing_is_ever_clipped_and_the_view_moves_only_when_it_must(k, square):
    rng = np.random.default_rng(1000 * k + square)
    for _ in range(60):
        follower = AxisFollower(square=square, patience=int(rng.integers(1, 8)))
        view, small = None, 0
        for extent in random_extents(rng, k, 80):
            must_zoom_out = view is None or not inside(extent, view, follower.edge)
            was_small = view is not None and not must_zoom_out and \
                np.max((extent[:, 1] - extent[:, 0]) / (view[:, 1] - view[:, 0])) < follower.zoom_in_below
            small = small + 1 if was_small else 0
            new = follower.update(extent)
            assert inside(extent, new, follower.edge), "the view clipped the drawing"
            if square:
                spans = new[:, 1] - new[:, 0]
                np.testing.assert_allclose(spans, spans[0])
            if must_zoom_out:
                if view is not None:  # out, never in, while something would leave the view
                    assert np.all(new[:, 0] <= view[:, 0]) and np.all(new[:, 1] >= view[:, 1])
                small = 0
            elif small >= follower.patience:
                np.testing.assert_allclose(new, follower.fit(extent))  # zoomed in, on the stated frame
                small = 0
            else:
                np.testing.assert_array_equal(new, view)  # no jitter
            view = new


def test_a_fixed_view_holds_once_set_and_unknown_modes_are_refused():
    follower = AxisFollower()
    first = follower.hold(box([-1, -1], [1, 1]))
    np.testing.assert_array_equal(follower.hold(box([-5, -5], [5, 5])), first)  # fixed is fixed
    assert follower.update(None) is not None and AxisFollower().update(None) is None
    with pytest.raises(ValueError, match="axes must be one of"):
        ViewOptions(axes="auto")


def test_the_drawing_box_holds_points_class_vectors_weights_and_trails():
    points = np.array([[0.5, 1.0], [1.0, 2.0], [np.nan, np.nan]])
    centers = np.array([[3.0, -1.0], [np.nan, np.nan]])
    trails = {"centers": np.array([[[-4.0, 0.5], [1.0, 1.0]], [[3.0, -1.0], [1.0, 1.0]]])}
    np.testing.assert_array_equal(figures.drawing_box(points, [0, 1], class_vectors={"centers": centers},
                                                      trails=trails), box([-4, -1], [3, 2]))
    # Weights are lines from the origin, scaled to the points: the origin is in the box.
    weights = figures.drawing_box(points + 5, [0, 1], class_vectors={"weights": np.array([[1.0, 1.0], [2.0, 1.0]])})
    assert np.all(weights[:, 0] <= 0)
    # A normalised drawing is held by the unit circle (sphere): its view never moves.
    unit = figures.drawing_box(np.array([[0.6, 0.8, 0.0]]), [0], normalized=True)
    np.testing.assert_array_equal(unit, box([-1, -1, -1], [1, 1, 1]))
    follower = AxisFollower(square=True)
    views = [follower.update(figures.drawing_box(np.array([[np.cos(a), np.sin(a)]]), [0], normalized=True))
             for a in np.linspace(0, 6, 20)]
    assert all(np.array_equal(v, views[0]) for v in views)
    np.testing.assert_allclose(views[0], box([-1.15, -1.15], [1.15, 1.15]))
    assert figures.drawing_box(np.full((2, 2), np.nan)) is None
