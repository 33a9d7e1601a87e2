"""Runs: every stored run, and one of them replayed, renamed, exported, trained again or deleted.

The replay is a figure with plotly frames: it plays in the browser without a round trip per frame.
"""

from __future__ import annotations

import io
import tempfile
import zipfile
from datetime import datetime
from pathlib import Path

import pandas as pd
import streamlit as st

from dmlviz import export
from dmlviz.config import ConfigError, RunConfig
from dmlviz.store import StoreError
from dmlviz.view import RunView, ViewOptions
from ui import live
from ui.resources import store

st.title("Runs")
runs = store().list_runs()
st.caption(f"{len(runs)} run(s), {store().size_bytes() / 1e6:.1f} MB in {store().root}. Long runs keep every epoch "
           "end and a few hundred snapshots in between.")
if not runs:
    st.info("No runs yet: start one on Train or Compare, or `python -m dmlviz train --dataset digits`.")
    st.stop()


def _when(timestamp: float | None) -> str:
    return datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M") if timestamp else ""


table = pd.DataFrame([{
    "id": r.id, "name": r.name, "loss": r.config.get("loss"), "dataset": r.config.get("dataset"),
    "d": r.config.get("feature_dim"), "status": r.status, "date": _when(r.created_at),
    "duration (s)": round(r.duration, 1) if r.duration is not None else None,
    "test accuracy": r.summary.get("test_acc"), "MAP@R": r.summary.get("map_at_r"), "why it ended": r.error or "",
} for r in runs])
left, middle, right = st.columns(3)
statuses = left.multiselect("Status", sorted(table["status"].unique()), key="runs_status")
losses = middle.multiselect("Loss", sorted(table["loss"].dropna().unique()), key="runs_loss")
datasets = right.multiselect("Dataset", sorted(table["dataset"].dropna().unique()), key="runs_dataset")
keep = pd.Series(True, index=table.index)
for column, chosen in (("status", statuses), ("loss", losses), ("dataset", datasets)):
    if chosen:
        keep &= table[column].isin(chosen)
shown = table[keep]
picked = st.dataframe(shown, hide_index=True, on_select="rerun", selection_mode="single-row", key="runs_table",
                      column_config={"test accuracy": st.column_config.NumberColumn(format="percent"),
                                     "MAP@R": st.column_config.NumberColumn(format="%.3f")})
rows = picked.selection.rows if picked is not None else []
run_id = int(shown.iloc[rows[0]]["id"]) if rows else st.session_state.get("runs_open")
if run_id is None or run_id not in set(table["id"]):
    run_id = runs[0].id  # the newest
st.caption("Tick a run's row to open it: replay, rename, export, train again or delete.")
st.session_state["runs_open"] = run_id
record = store().get_run(run_id)

st.subheader(f"Run {run_id}{': ' + record.name if record.name else ''}")
if record.error:
    st.warning(f"{record.status}: {record.error}")
view = RunView(store(), run_id)
if view.info is None or not view.snapshots():
    st.info("This run recorded nothing to draw.")
else:
    options = ViewOptions(directions=view.normalized, dims=3 if view.feature_dim == 3 else 2)
    st.plotly_chart(view.replay(options, height=640), key=f"replay-{run_id}", config={"displaylogo": False})
    st.caption("▶ plays the run in the browser; the slider moves through its snapshots on fixed axes.")

with st.container(horizontal=True, vertical_alignment="bottom", key="run_actions"):
    name = st.text_input("Name", value=record.name, key=f"name-{run_id}", width=260)
    if st.button("Rename", key="rename") and name != record.name:
        store().rename(run_id, name)
        st.rerun()
    try:
        config = RunConfig.from_dict(record.config)
    except ConfigError:
        config = None  # recorded by an older version
    if st.button("Train again", key="train_again", icon=":material/replay:", disabled=config is None,
                 help="The same config and seed: the same run, step for step."):
        live.start_run(config)
        st.switch_page("app_pages/train.py", query_params=config.to_query())
    st.page_link("app_pages/train.py", label="Open in the live view", icon=":material/visibility:",
                 query_params={**(config.to_query() if config else {}), "run": str(run_id)})


def _projector_zip() -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        export.write_projector(store(), run_id, Path(folder))
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(Path(folder).iterdir()):
                archive.write(path, path.name)
        return buffer.getvalue()


def _file(write) -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        path = write(Path(folder) / "out")
        return path.read_bytes()


st.markdown("**Export**")
with st.container(horizontal=True, key="run_exports"):
    # Each file is made on the click, not on every rerun.
    st.download_button("Replay (HTML)", lambda: _file(lambda p: export.write_replay(store(), run_id, p)),
                       file_name=f"run{run_id}.html", mime="text/html", on_click="ignore", key="export_html")
    st.download_button("Features (CSV)", lambda: _file(lambda p: export.write_features(store(), run_id, p, "csv")),
                       file_name=f"run{run_id}-features.csv", mime="text/csv", on_click="ignore", key="export_csv")
    st.download_button("Features (Parquet)",
                       lambda: _file(lambda p: export.write_features(store(), run_id, p, "parquet")),
                       file_name=f"run{run_id}-features.parquet", on_click="ignore", key="export_parquet")
    st.download_button("TensorBoard projector (zip)", _projector_zip, file_name=f"run{run_id}-projector.zip",
                       mime="application/zip", on_click="ignore", key="export_tensorboard")
    st.download_button("Config (YAML)", lambda: _file(lambda p: export.write_config(store(), run_id, p)),
                       file_name=f"run{run_id}.yaml", on_click="ignore", key="export_yaml")

with st.expander("Delete this run"):
    st.caption("Deletes its snapshots, curves and settings from the store; other runs are not touched.")
    if st.checkbox(f"Yes, delete run {run_id}", key=f"confirm-{run_id}"):
        if st.button("Delete", key="delete", type="primary", disabled=record.active,
                     help="Stop it first." if record.active else None):
            try:
                store().delete_run(run_id)
            except StoreError as error:
                st.error(str(error))
            else:
                st.session_state.pop("runs_open", None)
                st.rerun()
