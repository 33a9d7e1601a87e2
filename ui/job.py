"""``LiveJob``: the runs a page shows live and drives, as one typed object per page and session.

The runner treats a run as a comparison of one, and so do the pages: the Train page's job holds one run,
the Compare page's two to four trained together. A job keeps what the page needs between reruns: the runs
on screen, the last command this session gave them, the timeline's place, the selected probe point, the
view that reads them, the figures built for their latest snapshot, and what the page last wrote in its
URL (its settings, and the runs on screen under ``run=`` or ``runs=``), so that a link is read once. Its
buttons (:func:`control_buttons`) are the same on both pages; only their keys' prefix differs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import streamlit as st

from dmlviz.config import ConfigError, RunConfig
from dmlviz.runner import QueueFull
from dmlviz.status import RunStatus
from dmlviz.store import RunRecord, StoreError, parse_run_id
from ui.resources import owns, runner, store, visitor

T = TypeVar("T")
Page = Literal["train", "compare", "runs"]
Command = Literal["run", "pause", "stop"]
# What a button asks of the runner, and the command it leaves the runs under.
_ACTIONS: dict[str, Command] = {"pause": "pause", "resume": "run", "step": "pause", "stop": "stop"}


@dataclass
class LiveJob:
    """One page's runs on screen and what this session did with them."""

    prefix: str  # of the page's widget keys: "" on Train, "compare_" on Compare
    ids: list[int] = field(default_factory=list)
    command: Command | None = None  # the last command this session gave the runs on screen
    commanded: tuple[int, ...] = ()  # the runs ``command`` went to
    selected: int | None = None  # the probe point ringed in the charts and shown in the inspector
    error: str | None = None  # a refused command or start, said once
    timeline_end: int | None = None  # the timeline's last option when the page last drew it
    view: Any = None  # the RunView or ComparisonView that reads the runs, kept between reruns
    cache: dict[str, tuple[tuple, Any]] = field(default_factory=dict)
    url_query: dict[str, str] | None = None  # the settings the page last wrote in its URL
    url_ids: str | None = None  # the runs it last wrote there ("3", "3,4")

    # -- which runs ------------------------------------------------------------------------------

    def show(self, ids: Sequence[int], command: Command | None = None) -> None:
        """Put these runs on screen (``command``: the last one this session gave them, if it started them)."""
        self.ids = list(ids)
        self.command = command
        self.commanded = tuple(ids) if command else ()
        self.selected = None
        self.view = None
        self.cache.clear()
        st.session_state.pop(self.timeline_key, None)

    def clear(self) -> None:
        self.show([])

    def start(self, configs: list[RunConfig], *, paused: bool = False, speed: float | None = None) -> None:
        """Train these runs together in a new job of the runner and put them on screen."""
        try:
            ids = runner().submit_together(configs, paused=paused, visitor=visitor())
        except (ConfigError, QueueFull, StoreError) as error:  # a server's limits, its share, a full disk
            self.error = f"Not started: {error}"
            return
        if speed is not None:
            runner().set_speed(ids[0], speed)
        self.show(ids, "pause" if paused else "run")

    def view_of(self, make: Callable[[list[int]], T]) -> T:
        """The view of the runs on screen, made once by ``make`` and kept until other runs are shown."""
        if self.view is None:
            self.view = make(self.ids)
        return self.view

    # -- the URL ----------------------------------------------------------------------------------

    def runs_from_url(self, key: str, counts: range) -> list[str]:
        """Put the runs the URL names under ``key`` (``run=3``, ``runs=3,4``) on screen when it names other
        runs than the page last wrote there (a link, Home's "open in the live view"); the problem if they
        are not ``counts`` run numbers."""
        text = st.query_params.get(key)
        if text is None or text == self.url_ids:
            return []
        self.url_ids = text
        ids = [parse_run_id(part) for part in text.split(",")]
        if None in ids or len(ids) not in counts:
            if len(counts) == 1 and counts[0] == 1:
                return [f"{key} must be the number of a stored run, like 3, got {text!r}"]
            return [f"{key} must be {counts[0]} to {counts[-1]} numbers of stored runs, like 3,4, got {text!r}"]
        if ids != self.ids:
            self.show(ids)
        return []

    def settings_from_url(self, page_keys: Sequence[str], seeded: bool) -> dict[str, str] | None:
        """The URL's settings (without ``page_keys``) when the widgets must take them: they changed from
        outside (a first visit, a link) or the page came back from another page (whose URL lost them: the
        ones last written); None when the widgets (``seeded``) already hold them."""
        query = {k: v for k, v in st.query_params.to_dict().items() if k not in page_keys}
        if query == self.url_query and seeded:
            return None
        if not query and self.url_query is not None:
            query = self.url_query
        self.url_query = query  # the URL keeps it while the widgets make no valid settings
        return query

    def write_url(self, query: dict[str, str] | None, ids_key: str, **page: str) -> None:
        """Put the settings (``query``; None: the last valid ones), the page's own keys and the runs on
        screen in the URL, so that it reproduces what the page shows."""
        self.url_query = query if query is not None else (self.url_query or {})
        if self.ids:
            page[ids_key] = self.url_ids = ",".join(map(str, self.ids))
        if st.query_params.to_dict() != {**self.url_query, **page}:
            st.query_params.from_dict({**self.url_query, **page})

    # -- driving them -----------------------------------------------------------------------------

    def send(self, action: str) -> None:
        """Pause, resume, step or stop the runs on screen: one control drives the runs trained together."""
        try:
            getattr(runner(), action)(self.ids[0])
        except (KeyError, IndexError):
            self.error = ("These runs are no longer controlled by this app (they ended or were started "
                          "elsewhere)." if len(self.ids) > 1 else "This run is no longer controlled by this "
                          "app (it ended or was started elsewhere).")
            return
        self.command, self.commanded = _ACTIONS[action], tuple(self.ids)

    def set_speed(self, speed: float | None) -> None:
        """At most ``speed`` steps a second (None: full speed), if this visitor drives the runs."""
        if self.state()[1]:
            runner().set_speed(self.ids[0], speed)

    def state(self) -> tuple[bool, bool]:
        """Whether this app's runner still trains the runs on screen (active), and whether this visitor may
        drive them (``owns`` each). The store is asked too: a worker records how its runs ended a moment
        before the runner notices its process is gone, and runs that ended have no controls."""
        # runner() on every page load, run or not: it starts the worker processes' parent while the person
        # is still choosing settings, so that Start is quick.
        if not self.ids or not set(self.ids) <= set(runner().active_runs()):
            return False, False
        try:
            records = [store().get_run(run_id) for run_id in self.ids]
        except StoreError:  # deleted meanwhile
            return False, False
        active = any(record.active for record in records)
        return active, active and all(owns(record.owner) for record in records)

    def last_command(self) -> Command:
        """This session's last command to the runs; for runs it has not commanded (opened from a link, from
        Home, picked from the store), what they are doing."""
        if self.commanded != tuple(self.ids) or self.command is None:
            paused = any(store().get_run(run_id).status == RunStatus.PAUSED for run_id in self.ids)
            self.command, self.commanded = ("pause" if paused else "run"), tuple(self.ids)
        return self.command

    def controls_change(self, seen: Sequence[RunStatus], records: Sequence[RunRecord]) -> bool:
        """Whether the runs' statuses, ``seen`` when the page drew its controls, have changed what the page
        outside the polling fragment shows: the buttons (the runs ended, or were paused or resumed in
        another tab) or the pace of polling (they left the queue)."""
        now = [record.status for record in records]
        if list(seen) == now:
            return False
        if all(status == RunStatus.QUEUED for status in seen) or not any(status.active for status in now):
            return True
        expected: Command | None = ("pause" if RunStatus.PAUSED in now else
                                    "run" if RunStatus.RUNNING in now else None)
        if expected is not None and self.command not in (expected, "stop"):
            self.command = expected
            return True
        return False

    def watch(self, records: Sequence[RunRecord]) -> None:
        """While the runs train, say that a page watches them: snapshots come at the page's pace."""
        if any(r.status == RunStatus.RUNNING for r in records) and set(self.ids) <= set(runner().active_runs()):
            try:
                runner().watch(self.ids[0])
            except KeyError:
                pass  # ended just now

    # -- what is drawn ----------------------------------------------------------------------------

    def select(self, index: int) -> None:
        """A clicked probe point: ringed in the charts and shown in the inspector on the rerun the click starts."""
        self.selected = index

    def cached(self, name: str, key: tuple, build: Callable[[], T]) -> T:
        """``build()``, or what it returned last time for ``name`` with the same ``key``."""
        if name not in self.cache or self.cache[name][0] != key:
            self.cache[name] = (key, build())
        return self.cache[name][1]

    @property
    def timeline_key(self) -> str:
        return f"{self.prefix}timeline"

    def timeline(self, options: Sequence[int], *, live: bool, live_value: int, label: str,
                 format_func: Callable[[int], str], help: str) -> int:
        """The option to draw: ``live_value`` while the runs train; else a slider over ``options`` that
        follows new ones (a single step while paused) unless the person scrubbed back."""
        if live or len(options) < 2:
            st.session_state.pop(self.timeline_key, None)
            return live_value if live else options[-1]
        shown = st.session_state.get(self.timeline_key)
        if shown not in options or shown == self.timeline_end:
            st.session_state[self.timeline_key] = options[-1]
        self.timeline_end = options[-1]
        return st.select_slider(label, options=options, key=self.timeline_key, format_func=format_func, help=help)

    def say_error(self) -> None:
        """A refused command or start, once."""
        if self.error:
            st.warning(self.error)
            self.error = None


def job(page: Page) -> LiveJob:
    """This session's job of ``page``."""
    return st.session_state.setdefault(f"job.{page}", LiveJob(prefix="" if page == "train" else f"{page}_"))


def control_buttons(job: LiveJob, *, start: Callable[[], None], can_start: bool, start_label: str, start_help: str,
             step_help: str, stop_help: str) -> tuple[bool, bool]:
    """Start, or pause / resume, step and stop, on the current row, keyed ``<prefix><button>``; returns
    :meth:`LiveJob.state`: whether the runs on screen train, and whether this visitor drives them."""
    active, controlled = job.state()
    command = job.last_command() if controlled else None
    key = job.prefix
    if not controlled:
        st.button(start_label, key=f"{key}start", type="primary", icon=":material/play_arrow:",
                  disabled=not can_start, on_click=start, help=start_help)
    elif command == "stop":
        # The worker ends the runs after their current step and a last snapshot of the whole test set.
        st.button("Stopping…", key=f"{key}stopping", icon=":material/hourglass_top:", disabled=True)
    elif command == "run":
        st.button("Pause", key=f"{key}pause", icon=":material/pause:", on_click=job.send, args=("pause",))
    else:
        st.button("Resume", key=f"{key}resume", type="primary", icon=":material/play_arrow:", on_click=job.send,
                  args=("resume",))
    if controlled and command != "stop":
        st.button("Step", key=f"{key}step", icon=":material/skip_next:", on_click=job.send, args=("step",),
                  help=step_help)
        st.button("Stop", key=f"{key}stop", icon=":material/stop:", on_click=job.send, args=("stop",),
                  help=stop_help)
    return active, controlled
