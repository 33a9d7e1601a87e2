"""dmlviz's Streamlit entry point (``make run``): page config and navigation over ``app_pages/``.

The pages live in ``app_pages/``, not ``pages/``: a ``pages/`` folder switches Streamlit into its legacy
multi-page mode for the first run of every session, with a second, untitled navigation."""

from __future__ import annotations

import streamlit as st

st.set_page_config(page_title="dmlviz", page_icon="🧭", layout="wide")

navigation = st.navigation([
    st.Page("app_pages/home.py", title="Home", icon="🏠", default=True),
    st.Page("app_pages/train.py", title="Train", icon="▶️", url_path="train"),
    st.Page("app_pages/compare.py", title="Compare", icon="⚖️", url_path="compare"),
    st.Page("app_pages/runs.py", title="Runs", icon="🗂️", url_path="runs"),
    st.Page("app_pages/learn.py", title="Learn", icon="📖", url_path="learn"),
])
navigation.run()
