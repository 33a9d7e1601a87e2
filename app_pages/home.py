"""Home: what dmlviz is, a demo run in one click, and the runs in the store.

The title and the introduction are drawn before anything that needs the loss registry is imported:
that import brings in torch and pytorch-metric-learning, seconds on a cold server, and the page would
stay blank until it is done.
"""

from __future__ import annotations

import streamlit as st


def intro() -> None:
    st.title("dmlviz — a loss-geometry lab")
    st.markdown(
        "Pick a feature-learning loss — softmax, center loss, ArcFace, CosFace, triplet and twenty more — train a "
        "small network on MNIST, Fashion-MNIST or CIFAR-10, and **watch the learned features take shape**: the "
        "feature space of 2,000 test images live in 2-D or 3-D, the loss's class centers and weights moving, "
        "intra- and inter-class distance histograms, and retrieval metrics over time. Every number is computed "
        "from the run; every run is kept and can be scrubbed back through."
    )


def demo_button() -> None:
    from dmlviz.presets import DEMO, get_preset  # the loss registry: see the module's docstring
    from ui import live

    demo = get_preset(DEMO)
    # A short label that fits the column on a laptop and in a narrow window; the preset's name goes below it.
    if st.button("Watch a demo run", type="primary", icon=":material/play_arrow:", key="demo"):
        config = demo.config()
        live.start_run(config)
        st.session_state["preset_note"] = (demo.title, demo.what_to_watch)
        st.switch_page("app_pages/train.py", query_params=config.to_query())
    st.caption(f"**{demo.title}**: {demo.what_to_watch}")


def preset_links() -> None:
    from dmlviz.comparison import COMPARISON_PRESETS
    from dmlviz.presets import PRESETS

    st.markdown("**Presets** that reproduce the classic pictures:")
    for preset in PRESETS:
        st.page_link("app_pages/train.py", label=preset.title, query_params=preset.config().to_query())
    st.markdown("**Comparisons**, several losses trained side by side on the same batches:")
    for match in COMPARISON_PRESETS:
        st.page_link("app_pages/compare.py", label=match.title, query_params=match.comparison().to_query())
    st.page_link("app_pages/learn.py", label="Every loss, its formula and its paper", icon="📖")
    st.page_link("app_pages/lessons.py", label="Lessons to run in front of a class", icon="🎓")


def run_query(config: dict) -> dict[str, str]:
    from dmlviz.config import ConfigError, RunConfig

    try:
        return RunConfig.from_dict(config).to_query()
    except ConfigError:  # a run recorded by an older version: open it without its settings
        return {}


def stored_runs() -> None:
    from ui.resources import store

    st.subheader("Runs")
    st.page_link("app_pages/runs.py", label="Every run: replay, export, train again, delete",
                 icon=":material/folder_open:")
    runs = store().list_runs()
    if not runs:
        st.info("No runs yet. Start one above, or from a terminal: "
                "`python -m dmlviz train --dataset digits --epochs 3`.")
        return
    st.dataframe(
        [
            {
                "id": r.id, "name": r.name, "loss": r.config.get("loss"), "dataset": r.config.get("dataset"),
                "d": r.config.get("feature_dim"), "status": r.status,
                "test accuracy": r.summary.get("test_acc"), "step": r.summary.get("step"), "error": r.error or "",
            }
            for r in runs
        ],
        hide_index=True, placeholder="—",
    )
    latest = runs[0]
    st.page_link("app_pages/train.py", label=f"Open run {latest.id} ({latest.config.get('loss')}) in the live view",
                 icon=":material/visibility:", query_params={**run_query(latest.config), "run": str(latest.id)})


intro()
left, right = st.columns([2, 3])
with left:
    demo_button()
with right:
    preset_links()
stored_runs()
