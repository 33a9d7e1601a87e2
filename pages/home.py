"""Home: what dmlviz is, and the runs in the store."""

from __future__ import annotations

import streamlit as st

from dmlviz.store import RunStore


@st.cache_resource
def store() -> RunStore:
    return RunStore()


st.title("dmlviz — a loss-geometry lab")
st.markdown(
    "Pick a feature-learning loss, train on MNIST, Fashion-MNIST or CIFAR-10, and watch the learned "
    "features take shape. The **Learn** page explains every loss and opens a run preset to it; runs "
    "started from the command line (`python -m dmlviz train`) are listed below."
)
runs = store().list_runs()
if not runs:
    st.info("No runs yet. Try `python -m dmlviz train --dataset digits --epochs 3`.")
else:
    st.dataframe(
        [
            {
                "id": r.id, "name": r.name, "loss": r.config.get("loss"), "dataset": r.config.get("dataset"),
                "d": r.config.get("feature_dim"), "status": r.status,
                "test accuracy": r.summary.get("test_acc"), "step": r.summary.get("step"), "error": r.error or "",
            }
            for r in runs
        ],
        hide_index=True,
    )
