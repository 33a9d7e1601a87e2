"""dmlviz's Streamlit entry point (``make run``): page config and navigation over ``app_pages/``.

The pages live in ``app_pages/``, not ``pages/``: a ``pages/`` folder switches Streamlit into its legacy
multi-page mode for the first run of every session, with a second, untitled navigation."""

from __future__ import annotations

import streamlit as st

from ui.resources import store_problem

st.set_page_config(page_title="dmlviz", page_icon="🧭", layout="wide")

opens, problem = store_problem()
if problem:
    st.error(problem, icon="⚠️")
learn = st.Page("app_pages/learn.py", title="Learn", icon="📖", url_path="learn")
navigation = st.navigation([
    st.Page("app_pages/home.py", title="Home", icon="🏠", default=True),
    st.Page("app_pages/train.py", title="Train", icon="▶️", url_path="train"),
    st.Page("app_pages/compare.py", title="Compare", icon="⚖️", url_path="compare"),
    st.Page("app_pages/runs.py", title="Runs", icon="🗂️", url_path="runs"),
    learn,
])
if not opens and navigation.url_path != learn.url_path:
    # Every other page trains or shows stored runs: without a store it would fail on each view.
    st.page_link(learn, label="The Learn page works without a store", icon="📖")
    st.stop()
navigation.run()
