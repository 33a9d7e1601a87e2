"""dmlviz's Streamlit entry point (``make run``): page config and navigation over ``app_pages/``.

The pages live in ``app_pages/``, not ``pages/``: a ``pages/`` folder switches Streamlit into its legacy
multi-page mode for the first run of every session, with a second, untitled navigation."""

from __future__ import annotations

import streamlit as st

from ui.resources import store_problem

st.set_page_config(page_title="dmlviz", page_icon="🧭", layout="wide")
# A narrow window (900 px or less: half a laptop's screen) starts with the sidebar closed, so the charts
# get the width; Streamlit's "auto" closes it only below 768 px. The sidebar's own button closes it, once
# per page load and only if the person has not opened or closed it themselves; what that click writes in
# localStorage is taken back, so a wide window later opens with the sidebar as usual. The element that
# carries the script takes no room.
st.html("""<span id="dmlviz-narrow"></span>
<style>[data-testid="stElementContainer"]:has(#dmlviz-narrow) {display: none}</style>
<script>
(() => {
  if (window.__dmlvizNarrow || window.innerWidth > 900) return;
  window.__dmlvizNarrow = true;
  const stored = () => Object.keys(localStorage).filter((k) => k.startsWith("stSidebarCollapsed-"));
  if (stored().length) return;  // the person's own choice
  let tries = 0;
  const close = () => {
    const sidebar = document.querySelector('[data-testid="stSidebar"]');
    const button = document.querySelector('[data-testid="stSidebarCollapseButton"] button');
    if (sidebar && sidebar.getAttribute("aria-expanded") === "false") return;
    if (!sidebar || !button) { if (++tries < 100) setTimeout(close, 100); return; }
    const before = new Set(stored());
    button.click();
    setTimeout(() => stored().filter((k) => !before.has(k)).forEach((k) => localStorage.removeItem(k)), 0);
  };
  close();
})();
</script>""", unsafe_allow_javascript=True)

opens, problem = store_problem()
if problem:
    st.error(problem, icon="⚠️")
learn = st.Page("app_pages/learn.py", title="Learn", icon="📖", url_path="learn")
navigation = st.navigation([
    st.Page("app_pages/home.py", title="Home", icon="🏠", default=True),
    st.Page("app_pages/train.py", title="Train", icon="▶️", url_path="train"),
    st.Page("app_pages/compare.py", title="Compare", icon="⚖️", url_path="compare"),
    st.Page("app_pages/sweep.py", title="Sweep", icon="🧪", url_path="sweep"),
    st.Page("app_pages/runs.py", title="Runs", icon="🗂️", url_path="runs"),
    st.Page("app_pages/lessons.py", title="Lessons", icon="🎓", url_path="lessons"),
    learn,
])
if not opens and navigation.url_path != learn.url_path:
    # Every other page trains or shows stored runs: without a store it would fail on each view.
    st.page_link(learn, label="The Learn page works without a store", icon="📖")
    st.stop()
navigation.run()
