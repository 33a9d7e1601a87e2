"""Learn: a card per loss from its registry entry, with links that open a run preset to it."""

from __future__ import annotations

import streamlit as st

from dmlviz.config import RunConfig
from dmlviz.losses.base import FAMILIES, LossSpec
from dmlviz.losses.catalog import paper_text, preset, specs_by_family, status


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
