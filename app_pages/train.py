"""Train: pick a loss, press Start, and watch it shape the feature space, live.

The settings live in the sidebar and in the URL (a link reproduces the run; ``present=1`` hides
the settings and fills the screen with the figures for a projector); training runs in the runner's
worker and the live view polls the store. The feature space is the page's first thing: the buttons
on one row above it, what the run is and its terminal recipe below the charts.
"""

from __future__ import annotations

import streamlit as st

from dmlviz.config import RunConfig
from dmlviz.losses import get_spec
from ui import live, settings_form
from ui.job import job

PAGE_KEYS = ("present", "run")  # query keys about the page, not the run


def settings_from_url() -> list[str]:
    """Show the run the URL names and seed the widgets from its settings when it changed from outside
    (first visit, a link, a preset link from Learn); return the URL's problems, if any."""
    train = job("train")
    errors = train.runs_from_url("run", range(1, 2))
    query = train.settings_from_url(PAGE_KEYS, seeded=settings_form.PREFIX + "loss" in st.session_state)
    if query is None:
        return errors
    # A hand-edited link loses only its mistakes: the valid settings are kept, the others take their defaults.
    config, problems = RunConfig.salvage(query)
    settings_form.seed(config)
    return errors + problems


def page() -> None:
    """The settings in the sidebar, the stage, then what the run is and how to reproduce it."""
    present = st.query_params.get("present") in ("1", "true", "yes")
    url_errors = settings_from_url()
    with st.sidebar:
        settings_form.render()
    config, errors = settings_form.read()
    job("train").write_url(config.to_query() if config is not None else None, "run",
                           **({"present": "1"} if present else {}))

    settings_form.show_problems("Some of this link's settings are not valid, so they are left at their defaults",
                                url_errors)
    settings_form.show_problems("Fix these settings to start a run", errors)
    # The stage first: the buttons on one row, then the feature space at the top of the screen. A projector
    # (present=1) gets nothing else on its first screen: no sidebar, no header.
    live.live_view(config, present)
    if not errors and not present:
        # What the run is and how to reproduce it, below the stage, for whoever scrolls to read it.
        spec = get_spec(config.loss)
        note = st.session_state.get("preset_note")
        st.caption(f"**{spec.display_name}** on **{config.dataset}**, {config.feature_dim}-D features, "
                   f"{config.epochs:g} epochs, seed {config.seed}. {spec.description}")
        if note:
            st.info(f"**{note[0]}** — {note[1]}")
        with st.expander("Reproduce from a terminal"):
            st.caption("Save as `run.yaml` and run `python -m dmlviz train --config run.yaml`; the page's URL "
                       "reproduces it too.")
            st.code(config.to_yaml(), language="yaml")


page()
