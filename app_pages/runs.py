"""Runs: every stored run, and one of them replayed, renamed, exported, trained again or deleted.

The replay is a figure with plotly frames: it plays in the browser without a round trip per frame. The
page is :func:`page`, its parts functions that take what they draw as arguments: a callback or a file made
on a click reads the run it was drawn for, never a name the script assigns later.
"""

from __future__ import annotations

import io
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pandas as pd
import streamlit as st

from dmlviz import export
from dmlviz.config import ConfigError, RunConfig
from dmlviz.store import MAX_NAME_LENGTH, MAX_TAG_LENGTH, MAX_TAGS, RunRecord, StoreError
from dmlviz.view import AXES, RunView
from ui import live
from ui.job import job
from ui.resources import owns, store


def page() -> None:
    st.title("Runs")
    try:
        runs = store().list_runs()
    except StoreError as error:  # the store failed while this server ran (a file removed, a disk gone)
        st.error(f"The stored runs cannot be read: {error}")
        return
    st.caption(f"{len(runs)} run(s), {store().size_bytes() / 1e6:.1f} MB in {store().root}. Long runs keep every "
               "epoch end and a few hundred snapshots in between.")
    if not runs:
        st.info("No runs yet: start one on Train or Compare, or `python -m dmlviz train --dataset digits`.")
        return
    all_tags = sorted({tag for r in runs for tag in r.tags})
    run_id = _history(runs, all_tags)
    record = store().get_run(run_id)
    st.subheader(f"Run {run_id}{': ' + record.name if record.name else ''}")
    if record.error:
        st.warning(f"{record.status}: {record.error}")
    index, axes, regions, forces = _replay(run_id)
    config = _actions(record, all_tags)
    st.markdown("**Export the whole run**")
    with st.container(horizontal=True, key="run_exports"):
        _export_buttons(run_id, index, config, "run", export.ExportOptions(axes=axes, regions=regions, forces=forces))
    if index:
        st.markdown("**Export one snapshot**")
        position = st.select_slider("Snapshot", range(len(index)), value=len(index) - 1,
                                    format_func=lambda i: f"step {index[i].step:,} · epoch {index[i].epoch:.2f}",
                                    key=f"export_snapshot-{run_id}")
        with st.container(horizontal=True, key="snapshot_exports"):
            _export_buttons(run_id, index, config, "snapshot", export.ExportOptions(snapshot=position, regions=regions,
                                                                                    forces=forces),
                            step=index[position].step)
    _delete(record)


def _when(timestamp: float | None) -> str:
    return datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M") if timestamp else ""


def _history(runs: list[RunRecord], all_tags: list[str]) -> int:
    """The table of runs with its filters; returns the run to open (the ticked one, else the one open)."""
    table = pd.DataFrame([{
        "id": r.id, "name": r.name, "tags": r.tags, "loss": r.config.get("loss"), "dataset": r.config.get("dataset"),
        "d": r.config.get("feature_dim"), "status": r.status, "date": _when(r.created_at),
        "duration (s)": round(r.duration, 1) if r.duration is not None else None,
        "test accuracy": r.summary.get("test_acc"), "MAP@R": r.summary.get("map_at_r"), "why it ended": r.error or "",
    } for r in runs])
    status_filter, loss_filter, dataset_filter, tag_filter = st.columns(4)
    statuses = status_filter.multiselect("Status", sorted(table["status"].unique()), key="runs_status")
    losses = loss_filter.multiselect("Loss", sorted(table["loss"].dropna().unique()), key="runs_loss")
    datasets = dataset_filter.multiselect("Dataset", sorted(table["dataset"].dropna().unique()), key="runs_dataset")
    tagged = tag_filter.multiselect("Tag", all_tags, key="runs_tags", help="Runs with any of these tags.")
    keep = pd.Series(True, index=table.index)
    for column, chosen in (("status", statuses), ("loss", losses), ("dataset", datasets)):
        if chosen:
            keep &= table[column].isin(chosen)
    if tagged:
        keep &= table["tags"].map(lambda tags: bool(set(tags) & set(tagged)))
    shown = table[keep]
    picked = st.dataframe(shown, hide_index=True, on_select="rerun", selection_mode="single-row", key="runs_table",
                          placeholder="—",  # a missing value, as the other pages show it (not "None")
                          column_config={"test accuracy": st.column_config.NumberColumn(format="percent"),
                                         "MAP@R": st.column_config.NumberColumn(format="%.3f"),
                                         "tags": st.column_config.ListColumn()})
    rows = picked.selection.rows if picked is not None else []
    run_id = int(shown.iloc[rows[0]]["id"]) if rows else st.session_state.get("runs_open")
    if run_id is None or run_id not in set(table["id"]):
        run_id = runs[0].id  # the newest
    st.caption("Tick a run's row to open it: replay, rename, tag, export, train again or delete.")
    st.session_state["runs_open"] = run_id
    return run_id


def _replay(run_id: int) -> tuple[list, str, bool, bool]:
    """The run played back in the browser; returns its snapshots, how the replay's axes move and whether it
    shades the decision regions and draws the forces (its exports do as it does)."""
    view = RunView(store(), run_id)
    index = view.snapshots()
    axes = "follow"  # how the replay's (and its exports') axes move: see dmlviz.view.AXES
    regions = forces = False
    if view.info is None or not index:
        st.info("This run recorded nothing to draw.")
    else:
        axes = st.segmented_control(
            "Axes", AXES, default="follow", key="replay_axes", format_func=str.capitalize,
            help="Follow: the view zooms out as soon as the features would leave it and back in once they have "
                 "stayed small for a while, and the histogram fits each frame. Fixed: one view and one histogram "
                 "range that hold the whole run, so sizes compare from frame to frame.") or "follow"
        regions = view.has_regions and st.toggle(
            "Decision regions", key="replay_regions",
            help="Where the loss's classifier picks each class, with the boundaries and a margin loss's band, "
                 "in the replay and in its exports.")
        forces = view.feature_dim <= 3 and st.toggle(
            "Forces", key="replay_forces", help="Arrows in the replay and its exports: where the loss pushed some "
                                                "probe images at each snapshot.")
        # Built once per run, snapshot count and axes: a replay draws every frame's histogram.
        options = replace(view.default_options(), axes=axes, regions=regions, forces=forces)
        replay = job("runs").cached("replay", (run_id, len(index), index[-1].seq, options),
                                    lambda: view.replay(options, height=640))
        st.plotly_chart(replay, key=f"replay-{run_id}", config={
            "displaylogo": False, "toImageButtonOptions": {"filename": f"run{run_id}-replay", "scale": 2}})
        st.caption("▶ plays the run in the browser; the slider moves through its snapshots, with the class means' "
                   "trails and the distance histogram of each. The camera icon saves the frame shown as a PNG.")
    return index, axes, regions, forces


def change_or_say_why(change: Callable[[], object]) -> None:
    """Make a change to the stored run and show it, or say why the store refused it (a cap, a read-only store)."""
    try:
        change()
    except StoreError as error:
        st.error(str(error))
    else:
        st.rerun()


def _actions(record: RunRecord, all_tags: list[str]) -> RunConfig | None:
    """Rename, tag, train again, open live; returns the run's config (None if it can no longer train)."""
    run_id = record.id
    # A store folder that cannot be written, or (on a public server) another visitor's run: viewable only.
    read_only = store().read_only or not owns(record.owner)
    if not store().read_only and read_only:
        st.caption("Another visitor started this run: you can replay and export it, and only they can rename, tag or "
                   "delete it.")
    with st.container(horizontal=True, vertical_alignment="bottom", key="run_actions"):
        name = st.text_input("Name", value=record.name, key=f"name-{run_id}", width=260, disabled=read_only,
                             max_chars=max(MAX_NAME_LENGTH, len(record.name)))  # a name from before the cap
        if st.button("Rename", key="rename", disabled=read_only) and name != record.name:
            change_or_say_why(lambda: store().rename(run_id, name))
        tags = st.multiselect("Tags", sorted({*all_tags, *record.tags}), default=record.tags, key=f"tags-{run_id}",
                              accept_new_options=True, width=320, placeholder="Add a tag", disabled=read_only,
                              max_selections=max(MAX_TAGS, len(record.tags)),  # a store from before the cap
                              help=f"Type a new tag and press Enter; at most {MAX_TAGS} tags of at most "
                              f"{MAX_TAG_LENGTH} characters each.")
        if tags != record.tags:
            change_or_say_why(lambda: store().set_tags(run_id, tags))
        try:
            config = RunConfig.from_dict(record.config)
        except ConfigError:
            config = None  # recorded by an older version, or with settings this server refuses
        if st.button("Train again", key="train_again", icon=":material/replay:",
                     disabled=config is None or store().read_only,
                     help="The same config and seed: the same run, step for step."):
            live.start_run(config)
            st.switch_page("app_pages/train.py", query_params=config.to_query())
        st.page_link("app_pages/train.py", label="Open in the live view", icon=":material/visibility:",
                     query_params={**(config.to_query() if config else {}), "run": str(run_id)})
    return config


def _download(run_id: int, exporter: export.Exporter, options: export.ExportOptions) -> bytes:
    """The export's bytes, made in a temporary folder; a folder is zipped."""
    with tempfile.TemporaryDirectory() as folder:
        path = exporter.write(store(), run_id, Path(folder) / "out", options)
        if not exporter.folder:
            return path.read_bytes()
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for member in sorted(path.iterdir()):
                archive.write(member, member.name)
        return buffer.getvalue()


# Why an export's button is off, by what it needs of the run.
_UNAVAILABLE = {"snapshots": "This run recorded no snapshots.",
                "config": "Its settings are no longer valid, so they cannot train again."}


def _export_buttons(run_id: int, index: list, config: RunConfig | None, scope: str, options: export.ExportOptions,
                    step: int | None = None) -> None:
    """A download button for each export of ``scope`` (one for each figure of an export that draws several);
    each file is made on the click, not on every rerun."""
    has = {"snapshots": bool(index), "config": config is not None}
    for exporter in (e for e in export.EXPORTERS.values() if e.scope == scope):
        available = has[exporter.needs]
        for figure in exporter.figures or (None,):
            chosen = replace(options, figure=figure) if figure else options
            st.download_button(exporter.label_for(figure),
                               lambda exporter=exporter, chosen=chosen: _download(run_id, exporter, chosen),
                               file_name=exporter.file_name(run_id, figure, step) + (".zip" if exporter.folder else ""),
                               mime=exporter.mime, on_click="ignore", disabled=not available,
                               key=f"export_{exporter.format}" + (f"_{figure}" if figure else ""),
                               help=exporter.help if available else _UNAVAILABLE[exporter.needs])


def _delete(record: RunRecord) -> None:
    run_id = record.id
    read_only = store().read_only or not owns(record.owner)
    with st.expander("Delete this run"):
        st.caption("Deletes its snapshots, curves and settings from the store; other runs are not touched.")
        if st.checkbox(f"Yes, delete run {run_id}", key=f"confirm-{run_id}"):
            if st.button("Delete", key="delete", type="primary", disabled=record.active or read_only,
                         help="Stop it first." if record.active else None):
                try:
                    store().delete_run(run_id)
                except StoreError as error:
                    st.error(str(error))
                else:
                    st.session_state.pop("runs_open", None)
                    st.rerun()


page()
