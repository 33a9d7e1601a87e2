"""The store and the runner, one of each per server process, shared by every browser session."""

from __future__ import annotations

import atexit
import hashlib
import hmac
import secrets
from typing import TYPE_CHECKING

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from dmlviz import settings
from dmlviz.store import RunStore, StoreError

if TYPE_CHECKING:
    from dmlviz.runner import Runner


def store() -> RunStore:
    return _store(str(settings.store_dir()))


def runner() -> Runner:
    """Runs are shared by all sessions: the cap on concurrent runs is the machine's, not a tab's. Where its
    executor cannot start (a Ray cluster out of reach, an unknown $DMLVIZ_EXECUTOR) the page says why and
    stops; the next page view tries again."""
    try:
        return _runner(str(settings.store_dir()))
    except (RuntimeError, ValueError) as error:
        st.error(f"No run can start on this server: {error}", icon="⚠️")
        st.stop()


#: The browser's own cookie that Streamlit sets for its XSRF protection (on by default): one value for all
#: the tabs of a browser, kept until the visitor clears it.
BROWSER_COOKIE = "_streamlit_xsrf"
_VISITOR_KEY = secrets.token_bytes(32)  # this server process's: the store never holds an address or cookie


def visitor() -> str | None:
    """Who is at this page, as a short hash: their browser (``BROWSER_COOKIE``, shared by its tabs), else
    their address (a client that sends no cookie), else this session. The runner counts each visitor's
    share of its queue by it and a public server lets only a run's visitor change it (``RunRecord.owner``).

    A cookie rather than the address first: behind a reverse proxy every visitor has the proxy's address.
    A visitor who clears the cookie becomes another one (and loses their runs' controls); the server-wide
    queue limit (``$DMLVIZ_MAX_QUEUE``) bounds what that gains. None outside a page."""
    context = get_script_run_ctx()
    if context is None:
        return None
    candidates = (("browser", _browser_token(st.context.cookies.get(BROWSER_COOKIE))),
                  ("address", st.context.ip_address),
                  ("session", context.session_id))
    kind, value = next((kind, value) for kind, value in candidates if value)
    return hmac.new(_VISITOR_KEY, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()[:16]


def _browser_token(cookie: str | None) -> str | None:
    """The token inside the browser's XSRF cookie. The server sends the cookie again with every page,
    masked anew (``2|mask|masked token|time``, tornado's format), so the cookie differs from tab to tab
    while the token stays the browser's. (Streamlit decodes it in a private module of its server, which
    this does not import: eight lines of the format are steadier than an internal path.)"""
    parts = (cookie or "").split("|")
    if len(parts) != 4 or parts[0] != "2":
        return cookie or None
    try:
        mask, masked = bytes.fromhex(parts[1]), bytes.fromhex(parts[2])
    except ValueError:
        return cookie
    if not mask:
        return cookie
    return bytes(byte ^ mask[i % len(mask)] for i, byte in enumerate(masked)).hex()


def owns(owner: str | None) -> bool:
    """Whether this page's visitor may stop, rename, tag or delete a run started by ``owner``: anyone may,
    except on a public server (``settings.limits().owner_only``), where only the visitor who started it."""
    return not settings.limits().owner_only or (owner is not None and owner == visitor())


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
    # Where the runs train is the server's setting: $DMLVIZ_EXECUTOR (local, or ray with $DMLVIZ_RAY_ADDRESS).
    # Imported here: the runner loads torch (seconds), which a first page view need not wait for.
    from dmlviz.runner import make_runner

    instance = make_runner(_store(root))
    atexit.register(instance.shutdown)
    return instance


@st.cache_resource
def _damage(root: str) -> list[str]:
    """SQLite's quick_check reads the whole file: once per server process."""
    return _store(root).damage()
