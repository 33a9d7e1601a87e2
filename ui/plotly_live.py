"""A Plotly chart for live updates: one long-lived graph that redraws in place with ``Plotly.react``.

``st.plotly_chart`` derives its element's identity from the whole figure, so every new frame
mounts a new chart: the 3-D camera and the 2-D zoom are lost, the chart blinks out while it
remounts, and the browser runs out of WebGL contexts. This small component (``live_plot/index.html``,
no build step) keeps one graph per key, re-applies the 3-D camera the person chose, holds redraws
while they drag, and sends clicks on probe points back to Python.
"""

from __future__ import annotations

from pathlib import Path

import plotly
import plotly.graph_objects as go
import streamlit as st
import streamlit.components.v1 as components

_live_plot = components.declare_component("live_plot", path=str(Path(__file__).parent / "live_plot"))
# plotly.js from the plotly package, served beside the chart's page, which loads it from there.
components.declare_component("plotlyjs", path=str(Path(plotly.__file__).parent / "package_data"))


def live_plotly_chart(figure: go.Figure, *, key: str, camera_key: str | None = None) -> int | None:
    """Draw ``figure``; return the probe index of a point clicked since the last call, if any.

    ``camera_key`` names the remembered 3-D camera (per run and view, so a new run starts from
    the default camera).
    """
    clicked = _live_plot(spec=figure.to_json(), camera_key=camera_key or key, key=key, default=None)
    if not clicked or clicked.get("at") == st.session_state.get(f"{key}.clicked_at"):
        return None
    st.session_state[f"{key}.clicked_at"] = clicked["at"]
    return int(clicked["index"])
