"""Sweep: one protocol for every loss and setting, several seeds, and the spread of what they give.

A sweep is a YAML file in the data folder's ``sweeps/`` (``dmlviz.sweep`` reads it: base settings, axes,
seeds); the page lists them, edits one with every mistake shown as it is typed, saves it under a plain
name, queues the runs the store lacks, follows them, and shows the results: each cell's mean ± 95 %
interval, one number against one axis with error bars, and the cells' final feature spaces side by side.
The sweep on screen lives in the URL (``sweep=<name>``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from dmlviz import settings, sweep
from dmlviz.config import MAX_CONFIG_CHARS, ConfigError, RunConfig
from dmlviz.runner import QueueFull
from dmlviz.status import ACTIVE, RunStatus
from dmlviz.store import RunRecord, StoreError
from dmlviz.sweep_figures import CellSpace, drawing_dims, metric_figure, results_table, small_multiples
from dmlviz.view import RunView
from ui.plotly_live import live_plotly_chart
from ui.resources import runner, store

FOLDER = "sweeps"  # in the data folder, beside lessons/ and custom/
NEW = ""  # the picker's "New sweep"
#: A sweep's file name: letters, digits, - and _, so that a name (typed, or from a link) is never a path.
NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
EXAMPLE = """\
# A sweep: base settings, the axes to vary, and the seeds. Every combination of the axes is a cell,
# trained once per seed; the results are each cell's mean and 95 % interval over its seeds.
base: {dataset: digits, feature_dim: 3, epochs: 3}
axes:
  loss: [normface, cosface, arcface]
  hp.margin: [0.2, 0.35, 0.5]   # reaches only the losses that have a margin; NormFace gets one cell
seeds: 3
"""
MAX_PANELS = {2: 16, 3: 9}  # small multiples drawn: a browser gives a page about 16 WebGL contexts, a scene one
FAILED = (RunStatus.FAILED, RunStatus.DIVERGED)
ENDED_EARLY = (RunStatus.STOPPED, RunStatus.INTERRUPTED)


# -- the files ---------------------------------------------------------------------------------------------

def folder() -> Path:
    return settings.data_dir() / FOLDER


def saved() -> list[str]:
    """The sweeps of the data folder, by name (files whose names the page could not have written are left out)."""
    where = folder()
    return sorted(path.stem for path in where.glob("*.yaml") if NAME.fullmatch(path.stem)) if where.is_dir() else []


def read(name: str) -> str:
    """A saved sweep's text; one too long to be a sweep is cut (``sweep.parse`` then says it is too long)."""
    with (folder() / f"{name}.yaml").open(encoding="utf-8", errors="replace") as file:
        return file.read(MAX_CONFIG_CHARS + 1)


def save(text_key: str, name_key: str) -> None:
    """Write the editor's text under the typed name and open it (a button's callback: before the rerun)."""
    name = st.session_state.get(name_key, "").strip()
    if not NAME.fullmatch(name):
        st.session_state["sweep_said"] = ("error", f"{name!r} cannot be a sweep's name: use 1 to 64 letters, "
                                                   "digits, - and _ (no spaces, dots or slashes).")
        return
    try:
        folder().mkdir(parents=True, exist_ok=True)
        (folder() / f"{name}.yaml").write_text(st.session_state[text_key], encoding="utf-8")
    except OSError as error:
        st.session_state["sweep_said"] = ("error", f"The sweep could not be saved: {error}")
        return
    st.session_state["sweep_said"] = ("success", f"Saved as {FOLDER}/{name}.yaml in the data folder.")
    st.session_state.pop(f"sweep_text.{name}", None)  # the saved text, not older edits of a sweep of that name
    st.session_state["sweep_pick"] = name
    st.query_params["sweep"] = name


def picked() -> None:
    name = st.session_state["sweep_pick"]
    if name:
        st.query_params["sweep"] = name
    else:
        st.query_params.pop("sweep", None)


def chosen(names: list[str]) -> str:
    """The saved sweep the URL names, else a new one (saying so when the URL names one that is not there)."""
    name = st.query_params.get("sweep", NEW)
    if name and name not in names:
        st.warning(f"There is no sweep {name!r} in the data folder's {FOLDER}/: here is a new one.")
        return NEW
    return name


# -- the runs ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Tally:
    """Where a sweep's runs stand in the store, each planned run counted once, by its newest run."""

    total: int
    finished: int
    queued: int
    running: int  # paused ones too: they hold their slot
    failed: int  # failed or diverged
    ended_early: int  # stopped or interrupted (a server restart): pressing Run again trains them


def tally(plan: sweep.Sweep, records: list[RunRecord]) -> Tally:
    """``records``: the store's runs, newest first (``RunStore.list_runs()``)."""
    finished, active, newest = set(), {}, {}
    for record in records:
        newest.setdefault(record.config_hash, record.status)
        if record.status == RunStatus.FINISHED:
            finished.add(record.config_hash)
        elif record.status in ACTIVE:
            active.setdefault(record.config_hash, record.status)
    counts = {"queued": 0, "running": 0, "failed": 0, "ended_early": 0}
    hashes = {config.config_hash() for _, config in sweep.planned(plan)}
    for key in hashes - finished:
        status = active.get(key, newest.get(key))
        if status == RunStatus.QUEUED:
            counts["queued"] += 1
        elif status in (RunStatus.RUNNING, RunStatus.PAUSED):
            counts["running"] += 1
        elif status in FAILED:
            counts["failed"] += 1
        elif status in ENDED_EARLY:
            counts["ended_early"] += 1
    return Tally(total=len(hashes), finished=len(hashes & finished), **counts)


def queue(todo: list[tuple[sweep.Cell, RunConfig]]) -> None:
    """Hand the runs to the server's runner, one job each (it trains them one at a time on a CPU). A script's
    submission (no visitor): a sweep is one person's many runs, which a visitor's share of two would stop."""
    for count, (cell, config) in enumerate(todo):
        try:
            runner().submit(config.replace(name=sweep.run_name(cell, config)), visitor=None)
        except (QueueFull, ConfigError, StoreError) as error:
            st.warning(f"{count} of {len(todo)} runs queued; the others were not: {error}")
            return
    st.toast(f"{len(todo)} runs queued")


def stop(plan: sweep.Sweep) -> None:
    """Stop the sweep's queued runs, then its running ones (so a run's end starts none of the queued)."""
    hashes = {config.config_hash() for _, config in sweep.planned(plan)}
    mine = [record for record in store().list_runs(ACTIVE) if record.config_hash in hashes]
    for record in sorted(mine, key=lambda record: record.status != RunStatus.QUEUED):
        try:
            runner().stop(record.id)
        except KeyError:  # queued by another process (the CLI): it stops there
            continue


def run_controls(plan: sweep.Sweep) -> None:
    todo = sweep.missing(plan, store())
    blocked = store().read_only or settings.public()
    with st.container(horizontal=True, vertical_alignment="center"):
        label = f"Run sweep ({len(todo)} run{'s' if len(todo) != 1 else ''} to train)" if todo else \
            "Run sweep (every run is stored)"
        if st.button(label,
                     key="sweep_run", type="primary", icon=":material/play_arrow:", disabled=blocked or not todo):
            queue(todo)
        st.button("Stop sweep", key="sweep_stop", icon=":material/stop:", disabled=blocked, on_click=stop,
                  args=(plan,))
    if settings.public():
        st.caption("A public server runs no sweeps from its page: run one with `python -m dmlviz sweep FILE`.")
    st.caption("Runs already in the store (the same settings, whatever their name) are used again. A sweep "
               "stopped, or cut off by a restart of the server, goes on where it was: press Run sweep again.")


def show_progress(counts: Tally) -> None:
    st.progress(counts.finished / counts.total if counts.total else 0.0,
                text=f"{counts.finished} of {counts.total} runs finished")
    parts = [f"{counts.queued} queued", f"{counts.running} running", f"{counts.failed} failed"]
    if counts.ended_early:
        parts.append(f"{counts.ended_early} stopped or interrupted")
    st.caption(" · ".join(parts))


def progress(plan: sweep.Sweep) -> None:
    """The sweep's progress, polled every 2 s while a run of it is queued or running; each run that ends
    redraws the page, so the results grow as the runs finish."""
    shown = tally(plan, store().list_runs())
    if not shown.queued and not shown.running:
        show_progress(shown)
        return

    @st.fragment(run_every=2.0)
    def polling() -> None:
        now = tally(plan, store().list_runs())
        if now != shown and (now.finished != shown.finished or not now.queued and not now.running):
            st.rerun()
        show_progress(now)

    polling()


# -- the results -------------------------------------------------------------------------------------------

def results(plan: sweep.Sweep) -> None:
    rows = sweep.results(plan, store())
    if not any(row["runs"] for row in rows):
        st.info("No run of this sweep has finished yet: its results appear here as they do.")
        return
    axes = list(plan.cells[0].values)
    st.subheader("Results")
    st.dataframe(results_table(rows, axes, len(plan.seeds)), hide_index=True, key="sweep_table")
    st.caption("Each number: the mean over the cell's finished runs ± the half-width of its 95 % confidence "
               "interval (Student's t over the seeds); a cell with one run has no interval yet.")
    if axes:
        metric_plot(rows, axes)
    feature_grid(plan)


def metric_plot(rows: list[dict], axes: list[str]) -> None:
    left, right = st.columns(2)
    metric = left.selectbox("Number", list(sweep.RESULTS.values()), key="sweep_metric")
    x_axis = right.selectbox("Against", axes, key="sweep_axis",
                             help="A line for each combination of the other axes' values.")
    st.plotly_chart(metric_figure(rows, axes, x_axis, metric), key="sweep_metric_chart")


def shown_runs(plan: sweep.Sweep) -> list[tuple[str, int, float]]:
    """For each cell with a finished run: its title, and the id and end of its lowest seed's finished run."""
    done = sweep.finished(store())
    found = []
    for cell in plan.cells:
        config = next((c for c in sorted(cell.configs, key=lambda c: c.seed) if c.config_hash() in done), None)
        if config is not None:
            record = done[config.config_hash()]
            # One value a line: a panel is a quarter of the page wide, a cell's label can be longer.
            title = "<br>".join([*(f"{name} {value}" for name, value in cell.values.items()), f"seed {config.seed}"])
            found.append((title, record.id, record.finished_at or 0.0))
    return found


# A finished run never changes: its arrays are read once per server, for every visitor (``made`` tells a
# run recorded again under the same id apart, as on the Lessons page).
@st.cache_resource(max_entries=8, show_spinner=False)
def cell_spaces(runs: tuple[tuple[str, int, float], ...]) -> tuple[list[CellSpace], bool]:
    """Each run's final probe features, and whether every run's loss reads only directions."""
    spaces, normalized = [], True
    for title, run_id, _ in runs:
        view = RunView(store(), run_id)
        last = view.snapshots()[-1]
        labels, names, _ = view.classes
        spaces.append(CellSpace(title, store().get_snapshot(run_id, last.seq).features, labels, names))
        normalized = normalized and view.normalized
    return spaces, normalized


@st.cache_resource(max_entries=16, show_spinner=False)
def grid_spec(runs: tuple[tuple[str, int, float], ...], directions: bool) -> str:
    return small_multiples(cell_spaces(runs)[0], directions=directions).to_json()


def feature_grid(plan: sweep.Sweep) -> None:
    """The cells' final feature spaces side by side (one seed each), on the same axes."""
    runs = shown_runs(plan)
    try:
        spaces, normalized = cell_spaces(tuple(runs))
    except (StoreError, IndexError) as error:
        st.warning(f"The feature spaces cannot be drawn: {error}")
        return
    most = MAX_PANELS[drawing_dims(spaces)]
    st.subheader("Feature spaces")
    directions = st.toggle("Directions (unit length)", value=normalized, key="sweep_directions",
                           help="Every cell's features scaled to unit length, as a normalised loss reads them; "
                                "on by default when every loss of the sweep is normalised.")
    live_plotly_chart(grid_spec(tuple(runs[:most]), directions), key="sweep_grid")
    note = (f"The first {most} of {len(runs)} cells. " if len(runs) > most else "")
    st.caption(note + "Each cell's lowest seed with a finished run, at its last snapshot, all on the same axis "
               "ranges; features wider than the picture by PCA, each cell its own (its title says how much "
               "variance is kept).")


# -- the page ----------------------------------------------------------------------------------------------

def editor(name: str) -> str:
    """The sweep's text, as the person edits it (each sweep keeps its own edits in the session)."""
    key = f"sweep_text.{name}"
    try:
        start = read(name) if name else EXAMPLE
    except OSError as error:
        st.error(f"The sweep file cannot be read: {error}")
        start = ""
    text = st.text_area("Sweep (YAML)", value=start, key=key, height=260, max_chars=MAX_CONFIG_CHARS + 1,
                        help="base: the settings every run shares; axes: a setting, loss or hp.<name> with the "
                             "values to try; seeds: a count or a list. See the README's Sweeps section.")
    with st.container(horizontal=True, vertical_alignment="bottom"):
        st.text_input("File name", value=name, key=f"sweep_name.{name}", max_chars=64, width=260,
                      placeholder="e.g. margins-3d", help="Letters, digits, - and _; saved in the data folder's "
                                                          f"{FOLDER}/ as <name>.yaml.")
        st.button("Save", key="sweep_save", icon=":material/save:", on_click=save, args=(key, f"sweep_name.{name}"))
    if said := st.session_state.pop("sweep_said", None):
        (st.error if said[0] == "error" else st.success)(said[1])
    return text


def check(text: str) -> sweep.Sweep | None:
    """The sweep the text describes, said in a line; each of its mistakes, with its line, otherwise."""
    try:
        plan = sweep.parse(text)
    except ConfigError as error:
        for message in error.errors:
            st.error(message)
        return None
    st.success(f"{len(plan.cells)} cells × {len(plan.seeds)} seeds = {plan.runs} runs")
    return plan


def page() -> None:
    st.title("Sweep")
    st.caption("One protocol for every loss, several seeds, and the spread rather than one run.")
    names = saved()
    name = chosen(names)
    st.session_state["sweep_pick"] = name
    st.selectbox("Sweep", [NEW, *names], key="sweep_pick", on_change=picked, width=320,
                 format_func=lambda item: item or "New sweep")
    # A saved sweep opens on its results: its file folds away (a new one opens on the editor).
    with st.expander("Sweep file", expanded=not name, icon=":material/edit:"):
        text = editor(name)
    plan = check(text)
    if plan is None:
        return
    try:
        run_controls(plan)
        progress(plan)
        results(plan)
    except StoreError as error:
        st.error(f"The stored runs cannot be read: {error}")


page()
