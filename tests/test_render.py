"""Still images drawn with matplotlib: each class in its colour where its points are, hollow unseen
classes, the unit circle of a normalised loss, and fixed axes."""

import numpy as np

from dmlviz import figures, geometry, render

SIZE = (400, 300)


def _rgb(color: str) -> np.ndarray:
    return np.array([int(color[i:i + 2], 16) for i in (1, 3, 5)])


def _share(image: np.ndarray, color: str, tolerance: int = 12) -> float:
    """The fraction of pixels within ``tolerance`` of ``color``."""
    return float((np.abs(image.astype(int) - _rgb(color)).max(axis=2) <= tolerance).mean())


def _panel(points, normalized=False, **kwargs) -> figures.FeaturePanel:
    return figures.FeaturePanel("", np.asarray(points, dtype=float), normalized, **kwargs)


def test_each_class_is_drawn_in_its_colour_on_its_side():
    rng = np.random.default_rng(0)
    points = np.concatenate([rng.normal([-3, 0], 0.2, (200, 2)), rng.normal([3, 0], 0.2, (200, 2))])
    labels = np.repeat([0, 1], 200)
    image = render.feature_image(_panel(points), labels, ["zero", "one"], [0, 1], title="t", extent=4, size=SIZE)
    assert image.shape == (SIZE[1], SIZE[0], 3) and image.dtype == np.uint8
    left, right = image[:, : SIZE[0] // 3], image[:, SIZE[0] // 3: 2 * SIZE[0] // 3]
    zero, one = figures.class_color(0), figures.class_color(1)
    assert _share(left, zero) > 0.005 and _share(left, one) == 0
    assert _share(right, one) > 0.005


def test_unseen_classes_are_hollow_and_a_normalised_loss_gets_its_circle():
    rng = np.random.default_rng(1)
    points = rng.normal(0, 0.05, (300, 2)) + [0.5, 0]
    labels = np.zeros(300, dtype=int)
    seen = render.feature_image(_panel(points), labels, ["a", "b"], [0], title="", extent=1.2, size=SIZE)
    unseen = render.feature_image(_panel(points), labels, ["a", "b"], [1], title="", extent=1.2, size=SIZE)
    color = figures.class_color(0)
    assert _share(unseen, color) < _share(seen, color)  # outlines only
    circle = render.feature_image(_panel(points, normalized=True), labels, ["a", "b"], [0], title="", extent=1.2,
                                  size=SIZE)
    assert _share(circle, "#999999", 20) > _share(seen, "#999999", 20)


def test_class_means_are_plus_signs_as_in_the_app():
    """The live chart's 2-D class means are plotly's "cross" (✚): a GIF or PNG shows the same, not an ✕."""
    assert figures.class_vector_symbol(figures.MEANS, three_d=False) == "cross"
    panel = _panel([[3.0, 3.0]], class_means=np.array([[0.0, 0.0]]))
    image = render.feature_image(panel, np.array([0]), ["a"], [0], title="", extent=4, size=SIZE)
    mask = (np.abs(image.astype(int) - _rgb(figures.class_color(0))).max(axis=2) <= 12)[:, : SIZE[0] // 2]
    ys, xs = np.nonzero(mask)  # the mean's marker alone: the point is in the right half
    top, bottom, left, right = ys.min(), ys.max(), xs.min(), xs.max()
    middle_row, middle_column = mask[(top + bottom) // 2, left:right + 1], mask[top:bottom + 1, (left + right) // 2]
    assert middle_row.mean() > 0.6 and middle_column.mean() > 0.6  # full arms across
    assert not mask[top:top + 3, left:left + 3].any() and not mask[bottom - 2:, right - 2:right + 1].any()  # no corners


def test_three_d_features_and_class_vectors_render():
    rng = np.random.default_rng(2)
    points = rng.normal(size=(100, 3))
    labels = rng.integers(0, 3, 100)
    panel = _panel(points, normalized=True, class_vectors={"weights": rng.normal(size=(3, 3))},
                   class_means=rng.normal(size=(3, 3)))
    image = render.feature_image(panel, labels, ["a", "b", "c"], [0, 1, 2], title="3-D", size=SIZE)
    assert image.shape == (SIZE[1], SIZE[0], 3)
    assert _share(image, figures.class_color(2)) > 0


def test_histogram_and_curves_images():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 4, 200)
    features = rng.normal(size=(200, 2)) + 6 * np.stack([np.cos(labels), np.sin(labels)], axis=1)  # apart
    hist = geometry.distance_histogram(features, labels)
    image = render.histogram_image(hist, title="h", size=SIZE)
    blue_on_white = "#" + "".join(f"{round(0.6 * v + 0.4 * 255):02x}" for v in _rgb(figures.HISTOGRAM_COLORS[0]))
    assert _share(image, blue_on_white) > 0.01  # the same-class bars, 60 % opaque
    one_class = render.histogram_image(geometry.distance_histogram(features, np.zeros(200)), title="h", size=SIZE)
    assert one_class.shape == image.shape
    steps = np.arange(10)
    curves = render.curves_image(steps, {"loss": np.linspace(2, 0.5, 10), "probe_acc": np.linspace(0.1, 0.9, 10)},
                                 title="c", step=5, size=SIZE)
    assert curves.shape == (SIZE[1], SIZE[0], 3)
