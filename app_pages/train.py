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
from dmlviz.store import parse_run_id
from ui import live, settings_form
from ui.job import job

# Query keys that are about the page, not the run.
PAGE_KEYS = ("present", "run")


def settings_from_url() -> list[str]:
    """Seed the widgets from the URL when it changed from outside (first visit, a link, a preset
    link from Learn); return the URL's problems, if any."""
    query = {k: v for k, v in st.query_params.to_dict().items() if k not in PAGE_KEYS}
    errors = []
    run = st.query_params.get("run")
    if run is not None and run != st.session_state.get("written_run"):
        # A link to a run (from Home, or shared): show that run.
        st.session_state["written_run"] = run
        run_id = parse_run_id(run)
        if run_id is None:
            errors.append(f"run must be the number of a stored run, like 3, got {run!r}")
        elif [run_id] != job("train").ids:
            job("train").show([run_id])
    if query == st.session_state.get("written_query") and settings_form.PREFIX + "loss" in st.session_state:
        return errors
    if not query and "written_query" in st.session_state:
        query = st.session_state["written_query"]  # back from another page: the URL lost its settings
    # A hand-edited link loses only its mistakes: the valid settings are kept, the others take their defaults.
    config, problems = RunConfig.salvage(query)
    settings_form.seed(config)
    st.session_state["written_query"] = query  # the URL keeps it while the widgets make no valid config
    return errors + problems


def write_url(config: RunConfig | None, present: bool) -> None:
    query = config.to_query() if config is not None else st.session_state.get("written_query", {})
    st.session_state["written_query"] = query
    page_keys = {"present": "1"} if present else {}
    if ids := job("train").ids:
        page_keys["run"] = st.session_state["written_run"] = str(ids[0])
    if st.query_params.to_dict() != {**query, **page_keys}:
        st.query_params.from_dict({**query, **page_keys})


def page() -> None:
    """The settings in the sidebar, the stage, then what the run is and how to reproduce it."""
    present = st.query_params.get("present") in ("1", "true", "yes")
    url_errors = settings_from_url()
    with st.sidebar:
        settings_form.render()
    config, errors = settings_form.read()
    write_url(config, present)

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
