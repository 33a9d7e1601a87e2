"""Compare: two to four losses side by side, on equal terms, in sync.

New runs: the losses on the left train together in one worker, from the same initial backbone, on
the same batches, and are snapshotted at the same steps. Or stored runs, picked below, with a warning
when they differ in more than the loss. The comparison lives in the URL (``runs=<ids>`` for the runs
on screen).
"""

from __future__ import annotations

import streamlit as st

from dmlviz.comparison import MAX_LOSSES, MIN_LOSSES, Comparison, differences
from dmlviz.losses import get_spec
from ui import compare, compare_form, settings_form
from ui.job import job
from ui.resources import store


def settings_from_url() -> list[str]:
    """Show the runs the URL names and seed the widgets from its settings when it changed from outside (a
    first visit, a shared link); return the URL's problems, if any."""
    shown = job("compare")
    errors = shown.runs_from_url("runs", range(MIN_LOSSES, MAX_LOSSES + 1))
    query = shown.settings_from_url(("runs",), seeded=compare_form.PREFIX + "count" in st.session_state)
    if not query:
        return errors
    # A hand-edited link loses only its mistakes: the valid settings and losses are kept.
    comparison, problems = Comparison.salvage(query)
    if comparison is not None:
        compare_form.seed(comparison)
    return errors + problems


def fairness(comparison: Comparison) -> str:
    configs = comparison.configs()
    pairs = [c.loss for c in configs if get_spec(c.loss).needs_pairs]
    shared = comparison.shared
    text = (f"On equal terms: every run starts from the same backbone weights (seed {shared.seed}), sees the same "
            f"batches in the same order and tracks the same {shared.probe_size:,} probe images; they train "
            "together, so every panel shows the same step.")
    if pairs:
        text += (f" {', '.join(pairs)} needs several samples per class in a batch, so every run draws "
                 "class-balanced batches.")
    return text


def page() -> None:
    """The losses in the sidebar, the fairness note, stored runs to pick, then the live comparison."""
    url_errors = settings_from_url()
    with st.sidebar:
        compare_form.render()
    comparison, errors = compare_form.read()
    job("compare").write_url(comparison.to_query() if comparison is not None else None, "runs")

    st.title("Compare")
    settings_form.show_problems("Some of this link's settings are not valid and were left out", url_errors)
    settings_form.show_problems("Fix these settings to start the comparison", errors)
    if not errors:
        st.caption(fairness(comparison))
        if note := st.session_state.get("compare_note"):
            st.info(f"**{note[0]}** — {note[1]}")

    with st.expander("Or compare stored runs"):
        runs = store().list_runs()
        labels = {run.id: f"#{run.id} · {run.name or run.config.get('loss')} · {run.config.get('dataset')} · "
                          f"{run.config.get('feature_dim')}-D · {run.status}" for run in runs}
        picked = st.multiselect("Runs (2 to 4)", list(labels), format_func=labels.get, max_selections=4,
                                key="compare_pick", placeholder="Pick runs from the store")
        if picked and len(picked) >= 2:
            found = differences([store().get_run(run_id).config for run_id in picked])
            if found:
                st.warning("These runs differ in more than the loss, so the comparison is not on equal terms:\n\n"
                           + "\n".join(f"- {d}" for d in found))
            st.button("Show these runs", key="compare_show", on_click=job("compare").show, args=(picked,))

    compare.controls(comparison)
    compare.live_view()


page()
