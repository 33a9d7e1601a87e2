"""Streamlit glue shared by the pages: cached resources, the settings form and the live view.

The library (``dmlviz``) never imports Streamlit; everything here is thin and draws what the
library computes.
"""
