"""dmlviz's Streamlit entry point (``make run``): page config and navigation over ``pages/``."""

from __future__ import annotations

import streamlit as st

st.set_page_config(page_title="dmlviz", page_icon="🧭", layout="wide")

navigation = st.navigation([
    st.Page("pages/home.py", title="Home", icon="🏠", default=True),
    st.Page("pages/train.py", title="Train", icon="▶️", url_path="train"),
    st.Page("pages/learn.py", title="Learn", icon="📖", url_path="learn"),
])
navigation.run()
