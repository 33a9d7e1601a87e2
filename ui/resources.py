"""The store and the runner, one of each per server process, shared by every browser session."""

from __future__ import annotations

import atexit

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from dmlviz import settings
from dmlviz.runner import Runner
from dmlviz.store import RunStore, StoreError


def store() -> RunStore:
    return _store(str(settings.store_dir()))


def runner() -> Runner:
    """Runs are shared by all sessions: the cap on concurrent runs is the machine's, not a tab's."""
    return _runner(str(settings.store_dir()))


def session() -> str | None:
    """This browser session's id: the runner counts each session's share of its queue by it."""
    context = get_script_run_ctx()
    return context.session_id if context is not None else None


def store_problem() -> tuple[bool, str | None]:
    """Whether the run store opens, and what is wrong with it (None: nothing)."""
    root = str(settings.store_dir())
    try:
        opened = _store(root)
    except StoreError as error:  # not cached: the next page view tries again
        return False, f"Runs cannot be stored or shown: {error}"
    if opened.read_only:
        return True, (f"The run store folder {root} is read-only: its runs can be viewed and exported, but no run "
                      "can start until the folder is writable again (or DMLVIZ_STORE_DIR names another one).")
    damage = _damage(root)
    return True, None if not damage else (
        f"The run store {opened.path} is damaged ({'; '.join(damage)[:400]}). Runs that can still be read open as "
        "usual; export what you need from the Runs page, then move the file aside to start a new store.")


# Keyed by the store's folder, so a changed $DMLVIZ_STORE_DIR (tests, a second app) gets its own.
@st.cache_resource
def _store(root: str) -> RunStore:
    return RunStore(root)


@st.cache_resource
def _runner(root: str) -> Runner:
    instance = Runner(_store(root))
    atexit.register(instance.shutdown)
    return instance


@st.cache_resource
def _damage(root: str) -> list[str]:
    """SQLite's quick_check reads the whole file: once per server process."""
    return _store(root).damage()
