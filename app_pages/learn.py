"""Learn: a card per loss from its registry entry, with links that open a run preset to it.

The margin losses' cards also draw their target logit against θ, with widgets for the hyperparameters
that shape it, and the page ends with all of them overlaid (:mod:`dmlviz.margins`).
"""

from __future__ import annotations

import streamlit as st

from dmlviz.config import RunConfig
from dmlviz.figures import target_logit_figure
from dmlviz.losses import get_spec
from dmlviz.losses.base import FAMILIES, LossSpec
from dmlviz.losses.catalog import paper_text, preset, specs_by_family, status
from dmlviz.margins import (
    MARGIN_LOSSES,
    THETAS,
    curve_params,
    logit_scale,
    preset_params,
    target_logit,
)
from dmlviz.params import Param
from ui.settings_form import param_widget

MARGIN_FAMILY = "softmax-margin"
#: A number slider has at most this many steps; a finer one (λ_min to 1e4 in steps of 0.1) gets a number box.
SLIDER_STEPS = 1000
OVERLAY_SETTINGS = {"paper defaults": None, "recommended in 2-D": 2, "recommended in 3-D": 3}


def short_name(spec: LossSpec) -> str:
    """The display name without its parenthesis, for a legend: "SphereFace", not "SphereFace (A-Softmax)"."""
    return spec.display_name.split(" (")[0]


def curve_widget(spec: LossSpec, hp: Param) -> object:
    """A widget for one hyperparameter of the target-logit curve (a slider where its range allows), its value."""
    key = f"logit-{spec.name}-{hp.name}"
    st.session_state.setdefault(key, hp.widget_value(hp.default))
    label = f"{hp.name} ({hp.unit})" if hp.unit else hp.name
    if hp.widget in ("int", "float") and hp.low is not None and hp.high is not None \
            and (hp.high - hp.low) / hp.widget_step() <= SLIDER_STEPS:
        kind = int if hp.widget == "int" else float
        st.slider(label, kind(hp.low), kind(hp.high), step=kind(hp.widget_step()), key=key, help=hp.help)
    else:
        param_widget(hp, key, label)
    value = st.session_state[key]
    return hp.default if value is None else value  # a cleared number box: the default


def logit_curve(spec: LossSpec) -> None:
    """The loss's target logit against θ, with widgets for the hyperparameters that shape it."""
    with st.expander("Target logit against θ"):
        params = curve_params(spec.name)
        values: dict[str, object] = {}
        if params:
            columns = st.columns(2)
            for i, param in enumerate(params):
                with columns[i % 2]:
                    values[param.name] = curve_widget(spec, param)
        times_s = spec.normalized and st.toggle("Times the scale s, as the softmax sees it",
                                                key=f"logit-{spec.name}-times-s")
        scale = logit_scale(spec.name, **values)
        curve = target_logit(spec.name, THETAS, per_scale=not times_s, **values)
        figure = target_logit_figure({short_name(spec): (THETAS, curve)}, reference_scale=scale if times_s else 1.0,
                                     y_title="target logit" if times_s else "target logit ÷ s", height=320)
        st.plotly_chart(figure, key=f"logit-{spec.name}-chart")
        if spec.normalized:
            st.caption(f"s = {scale:.3g}; at the end of the run (warm-ups over), with the mean margin of "
                       "evaluation. The dashed line is the plain normalised softmax.")
        else:
            st.caption("For unit weights and features (‖W‖‖f‖ = 1), with λ at its value at the end of the run. "
                       "The dashed line is the plain softmax without bias.")


def overlay() -> None:
    """Every margin loss's target logit on one chart, as in the ArcFace paper's figure."""
    st.subheader("All margins overlaid")
    st.markdown("The target logit of each margin loss against the angle θ between a feature and its own class "
                "weight, divided by the scale s so that losses of different scales compare. The further a curve "
                "lies below cos θ (dashed), the closer to its class weight a sample must move before the loss "
                "is content.")
    choice = st.segmented_control("Settings", list(OVERLAY_SETTINGS), default="paper defaults",
                                  key="logit-overlay-settings") or "paper defaults"
    dim = OVERLAY_SETTINGS[choice]
    curves = {short_name(get_spec(name)): (THETAS, target_logit(name, THETAS, **preset_params(name, dim)))
              for name in MARGIN_LOSSES}
    st.plotly_chart(target_logit_figure(curves, height=480), key="logit-overlay-chart")
    st.caption("At the end of a run (warm-ups over, L-Softmax's and SphereFace's λ at its end value), with "
               "ElasticFace's mean margin, and for L-Softmax and SphereFace with ‖W‖‖f‖ = 1. NormFace and AdaCos "
               "lie on cos θ: they have no margin. Each card above draws its loss with sliders.")


def card(spec: LossSpec) -> None:
    with st.container(border=True):
        colour = "orange" if spec.reconstructed else "blue" if spec.our_design else "green"
        badge = f":{colour}-badge[{status(spec)}]"
        st.markdown(f"#### {spec.display_name}  {badge}")
        st.caption(f"`{spec.name}` · {paper_text(spec)}")
        st.markdown(spec.description)
        st.latex(spec.formula)
        if spec.reconstructed:
            st.warning(f"The formula is {status(spec)}: dmlviz does not claim to reproduce the paper's numbers.")
        details = [
            f"**Implementation**: {spec.implementation}",
            f"**Features**: {'normalised — only directions count' if spec.normalized else 'raw (Euclidean)'}",
            f"**Learns**: {spec.learns}",
            f"**Feature dims**: {spec.dims}",
        ]
        st.markdown("  \n".join(details))
        if spec.hparams:
            st.dataframe(
                [{"hyperparameter": hp.name, "default": str(hp.default), "range": hp.range_text(),
                  "meaning": hp.help} for hp in spec.hparams],
                hide_index=True,
            )
        if spec.pitfalls:
            st.markdown(f"**Pitfalls**: {spec.pitfalls}")
        if spec.name in MARGIN_LOSSES:
            logit_curve(spec)
        columns = st.columns(3)
        for column, dim in zip(columns, (2, 3), strict=False):
            settings = RunConfig.from_dict(preset(spec, dim))
            column.page_link("app_pages/train.py", label=f"Train it in {dim}-D", icon="▶️",
                             query_params=settings.to_query())


st.title("Learn the losses")
st.markdown("What each loss asks of the feature space, the formula as implemented, its paper, and the settings "
            "that make it train well in 2-D and 3-D.")
grouped = specs_by_family()
chosen = st.segmented_control("Family", [FAMILIES[f] for f in grouped], selection_mode="multi",
                              default=[FAMILIES[f] for f in grouped], key="learn_families")
query = st.text_input("Search", placeholder="a name, a paper, a word of the description", key="learn_search")
for family, specs in grouped.items():
    if FAMILIES[family] not in chosen:
        continue
    shown = [s for s in specs if not query or query.lower() in
             f"{s.name} {s.display_name} {paper_text(s)} {s.description}".lower()]
    if shown:
        st.subheader(FAMILIES[family])
        for spec in shown:
            card(spec)
if MARGIN_FAMILY in grouped and FAMILIES[MARGIN_FAMILY] in chosen:
    overlay()
