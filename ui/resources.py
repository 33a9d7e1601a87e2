"""The store and the runner, one of each per server process, shared by every browser session."""

from __future__ import annotations

import atexit

import streamlit as st

from dmlviz import settings
from dmlviz.runner import Runner
from dmlviz.store import RunStore


def store() -> RunStore:
    return _store(str(settings.store_dir()))


def runner() -> Runner:
    """Runs are shared by all sessions: the cap on concurrent runs is the machine's, not a tab's."""
    return _runner(str(settings.store_dir()))


# Keyed by the store's folder, so a changed $DMLVIZ_STORE_DIR (tests, a second app) gets its own.
@st.cache_resource
def _store(root: str) -> RunStore:
    return RunStore(root)


@st.cache_resource
def _runner(root: str) -> Runner:
    instance = Runner(_store(root))
    atexit.register(instance.shutdown)
    return instance
