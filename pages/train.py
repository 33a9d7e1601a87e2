"""Train: the run a link describes (the live view of a run builds on this page)."""

from __future__ import annotations

import streamlit as st

from dmlviz.config import ConfigError, RunConfig
from dmlviz.losses import get_spec

st.title("Train")
try:
    config = RunConfig.from_query(st.query_params.to_dict())
except ConfigError as error:
    st.error("This link's settings are not valid:\n\n" + "\n".join(f"- {e}" for e in error.errors))
    st.stop()
spec = get_spec(config.loss)
st.markdown(f"**{spec.display_name}** on **{config.dataset}**, {config.feature_dim}-D features")
st.code(config.to_yaml(), language="yaml")
st.caption("Train this run from a terminal with `python -m dmlviz train --config run.yaml`.")
