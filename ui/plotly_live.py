"""A Plotly chart for live updates: one long-lived graph that redraws in place with ``Plotly.react``.

``st.plotly_chart`` derives its element's identity from the whole figure, so every new frame
mounts a new chart: the 3-D camera and the 2-D zoom are lost, the chart blinks out while it
remounts, and the browser runs out of WebGL contexts. This small component (``live_plot/index.html``,
no build step) keeps one graph per key, re-applies the 3-D camera the person chose, holds redraws
while they drag, skips redraws of an unchanged figure, and sends clicks on probe points back to Python.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import plotly
import plotly.graph_objects as go
import streamlit as st
import streamlit.components.v1 as components

_live_plot = components.declare_component("live_plot", path=str(Path(__file__).parent / "live_plot"))
# plotly.js from the plotly package, served beside the chart's page, which loads it from there.
components.declare_component("plotlyjs", path=str(Path(plotly.__file__).parent / "package_data"))


def live_plotly_chart(figure: go.Figure | str, *, key: str, camera_key: str | None = None,
                      on_click: Callable[[int], None] | None = None, fill: float | None = None,
                      autoplay: bool = False) -> None:
    """Draw ``figure`` (or its JSON, made once for many visitors); a click on a probe point calls
    ``on_click`` with its probe index before the rerun.

    ``camera_key`` names the remembered 3-D camera (per run and view, so a new run starts from
    the default camera). A figure without a height is drawn 450 px high; with ``fill``, at least that
    share of the browser window's height (a projector's screen is filled, whatever its size).
    ``autoplay``: a figure with frames (a replay) starts playing as soon as it is drawn, as its ▶ does.
    """
    # The page redraws twice a second, mostly with the figure it drew last: serialise each figure once.
    cached = st.session_state.get(f"{key}.spec")
    if cached is None or cached[0] is not figure:
        spec = figure if isinstance(figure, str) else figure.to_json()
        cached = st.session_state[f"{key}.spec"] = (figure, spec)

    def clicked() -> None:
        value = st.session_state.get(key)
        if value and on_click is not None:
            on_click(int(value["index"]))

    _live_plot(spec=cached[1], camera_key=camera_key or key, clickable=on_click is not None, fill=fill, key=key,
               autoplay=autoplay, default=None, on_change=clicked if on_click is not None else None)
