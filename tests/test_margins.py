"""The target-logit curves of the margin losses: read from the losses' code, they match the papers' formulas."""

import json
import math

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from dmlviz.figures import target_logit_figure
from dmlviz.losses import get_spec, loss_names
from dmlviz.margins import (
    MARGIN_LOSSES,
    THETAS,
    curve_params,
    logit_scale,
    preset_params,
    target_logit,
)

# Inside (0, π): at cos θ = ±1 the heads clamp the cosine by 1e-7 before sin θ and acos, which moves
# ArcFace's cos(θ + m) by up to 5e-4 there.
ANGLES = np.linspace(0.01, math.pi - 0.01, 400)


def test_every_margin_loss_is_registered_and_draws_a_finite_curve():
    assert set(MARGIN_LOSSES) <= set(loss_names())
    for name in MARGIN_LOSSES:
        values = target_logit(name, THETAS)
        assert values.shape == THETAS.shape and np.isfinite(values).all(), name
        # A margin lowers the target logit; near θ = π ElasticFace-Arc's cos(θ + m), with no fallback, rises again.
        near = THETAS <= math.pi / 2
        assert (values[near] <= np.cos(THETAS[near]) + 1e-6).all(), name
    assert target_logit("normface", [0.0], per_scale=False)[0] == pytest.approx(20, abs=1e-4)


def test_normface_is_cos_theta_at_any_scale():
    np.testing.assert_allclose(target_logit("normface", ANGLES, scale=7.0), np.cos(ANGLES), atol=1e-9)
    np.testing.assert_allclose(target_logit("normface", ANGLES, scale=7.0, per_scale=False), 7 * np.cos(ANGLES),
                               atol=1e-8)


def test_cosface_is_cos_theta_minus_m():
    np.testing.assert_allclose(target_logit("cosface", ANGLES, margin=0.35), np.cos(ANGLES) - 0.35, atol=1e-9)


@pytest.mark.parametrize("margin", [0.2, 0.5, 1.2])
def test_arcface_is_cos_theta_plus_m_then_insightface_fallback(margin):
    values = target_logit("arcface", ANGLES, margin=margin)
    shifted = ANGLES + margin < math.pi
    np.testing.assert_allclose(values[shifted], np.cos(ANGLES[shifted] + margin), atol=1e-6)
    beyond = ~shifted
    assert beyond.any()
    np.testing.assert_allclose(values[beyond], np.cos(ANGLES[beyond]) - margin * math.sin(margin), atol=1e-9)


def test_arcface_warmup_follows_progress():
    start = target_logit("arcface", ANGLES, progress=0.0, margin=0.5, warmup=0.5)
    half = target_logit("arcface", ANGLES, progress=0.25, margin=0.5, warmup=0.5)
    np.testing.assert_allclose(start, np.cos(ANGLES), atol=1e-9)
    inside = ANGLES + 0.25 < math.pi
    np.testing.assert_allclose(half[inside], np.cos(ANGLES[inside] + 0.25), atol=1e-6)


@pytest.mark.parametrize("m", [1, 2, 3, 4])
def test_sphereface_without_lambda_is_psi(m):
    values = target_logit("sphereface", ANGLES, margin=m, lambda_base=0.0, lambda_min=0.0)
    k = np.floor(m * ANGLES / math.pi)
    psi = (-1) ** k * np.cos(m * ANGLES) - 2 * k
    np.testing.assert_allclose(values, psi, atol=1e-6)
    assert (np.diff(values) < 0).all()  # ψ falls monotonically over [0, π]


def test_sphereface_lambda_mixes_in_cos_theta():
    m, lam = 4, 5.0  # SphereFace's official λ_min, which the default annealing ends on
    k = np.floor(m * ANGLES / math.pi)
    psi = (-1) ** k * np.cos(m * ANGLES) - 2 * k
    np.testing.assert_allclose(target_logit("sphereface", ANGLES), (lam * np.cos(ANGLES) + psi) / (1 + lam), atol=1e-6)


def test_elasticface_uses_its_mean_margin_and_keeps_the_global_generator():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    values = target_logit("elasticface-arc", ANGLES, margin=0.3, std=0.2)
    assert torch.equal(torch.rand(3), expected)
    inside = ANGLES + 0.3 < math.pi
    np.testing.assert_allclose(values[inside], np.cos(ANGLES[inside] + 0.3), atol=1e-6)
    np.testing.assert_allclose(target_logit("elasticface-cos", ANGLES, margin=0.3, std=0.2), np.cos(ANGLES) - 0.3,
                               atol=1e-6)


def test_adacos_has_no_margin_and_its_own_scale():
    np.testing.assert_allclose(target_logit("adacos", ANGLES), np.cos(ANGLES), atol=1e-9)
    assert logit_scale("adacos") == pytest.approx(math.sqrt(2) * math.log(9))
    assert curve_params("adacos") == ()


def test_curve_params_leave_out_what_does_not_move_the_curve():
    assert [p.name for p in curve_params("arcface")] == ["scale", "margin", "easy_margin"]
    assert [p.name for p in curve_params("cam-softmax")] == ["scale", "c_end"]


def test_preset_params_take_the_recommended_settings():
    assert preset_params("arcface")["margin"] == 0.5
    assert preset_params("arcface", 2)["margin"] == 0.15 and preset_params("arcface", 2)["scale"] == 10.0


def test_a_loss_without_a_curve_is_refused():
    with pytest.raises(ValueError, match="no target logit"):
        target_logit("center", ANGLES)


def test_figure_has_a_line_per_curve_and_the_cos_reference():
    curves = {get_spec(name).display_name: (THETAS, target_logit(name, THETAS)) for name in ("cosface", "arcface")}
    figure = target_logit_figure(curves, reference_scale=2.0)
    assert [trace.name for trace in figure.data] == ["2·cos θ", *curves]
    reference = figure.data[0]
    assert reference.line.dash == "dash" and reference.y[0] == pytest.approx(2.0)
    assert reference.x[0] == 0 and reference.x[-1] == pytest.approx(180)
    assert tuple(figure.layout.xaxis.range) == (0, 180)
    np.testing.assert_allclose(figure.data[2].x, np.degrees(THETAS))


def chart(app: AppTest, key: str) -> dict:
    """The figure of the page's chart with widget key ``key``."""
    (found,) = [c for c in app.get("plotly_chart") if c.proto.id.endswith(f"-{key}")]
    return json.loads(found.proto.spec)


def test_learn_page_draws_the_curves_and_the_overlay():
    app = AppTest.from_file("../app.py").run(timeout=30)
    app.switch_page("app_pages/learn.py").run(timeout=60)
    assert not app.exception
    assert "All margins overlaid" in [s.value for s in app.subheader]
    assert len(app.get("plotly_chart")) == len(MARGIN_LOSSES) + 1
    names = [trace["name"] for trace in chart(app, "logit-overlay-chart")["data"]]
    assert names == ["cos θ", *(get_spec(name).display_name.split(" (")[0] for name in MARGIN_LOSSES)]
    before = chart(app, "logit-arcface-chart")["data"][1]["y"]
    app.slider(key="logit-arcface-margin").set_value(1.0).run(timeout=60)
    assert not app.exception
    assert chart(app, "logit-arcface-chart")["data"][1]["y"] != before
