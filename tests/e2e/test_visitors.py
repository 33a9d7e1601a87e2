"""One visitor, many tabs: a browser's tabs share its share of the queue (Streamlit's own cookie tells the
server they are one browser), while another browser still gets its turn."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest

from dmlviz.config import RunConfig
from dmlviz.runner import MAX_ACTIVE_PER_VISITOR
from dmlviz.store import RunStore

from .waiting import wait_until

pytestmark = pytest.mark.e2e

# Long enough to stay queued or running while the test looks (the server's end stops them).
RUN = {"dataset": "digits", "loss": "softmax", "device": "cpu", "steps": 100_000, "batch_size": 32,
       "probe_size": 100}
MESSAGE_JS = "() => { const e = document.querySelector('.st-key-control_message'); return e ? e.innerText : ''; }"


def start_in_new_tab(context, url: str):
    tab = context.new_page()
    tab.set_default_timeout(60_000)
    tab.goto(url)
    tab.locator(".st-key-start button").filter(visible=True).first.click()
    return tab


def test_a_browsers_tabs_share_one_visitors_share_of_the_queue(app, browser, e2e_output):
    url = f"{app.url}/train?{urlencode(RunConfig.from_dict(RUN).to_query())}"
    store = RunStore(app.store_dir)
    before = len(store.list_runs())
    one_browser = browser.new_context(viewport={"width": 1400, "height": 900})
    other_browser = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        tabs = []
        for count in range(1, MAX_ACTIVE_PER_VISITOR + 1):
            tabs.append(start_in_new_tab(one_browser, url))
            wait_until(tabs[-1], lambda count=count: len(store.list_runs()) == before + count, "the tab's run")
        extra = start_in_new_tab(one_browser, url)
        said = wait_until(extra, lambda: extra.evaluate(MESSAGE_JS), "the refusal in the extra tab")
        assert f"Not started: you already have {MAX_ACTIVE_PER_VISITOR} runs" in said, said
        extra.screenshot(path=str(e2e_output / "visitor-refused.png"))
        assert len(store.list_runs()) == before + MAX_ACTIVE_PER_VISITOR
        owners = {run.owner for run in store.list_runs()[:MAX_ACTIVE_PER_VISITOR]}
        assert len(owners) == 1 and None not in owners  # one visitor, recorded as a hash

        start_in_new_tab(other_browser, url)
        wait_until(extra, lambda: len(store.list_runs()) == before + MAX_ACTIVE_PER_VISITOR + 1,
                   "another browser's run")
        assert store.list_runs()[0].owner not in owners
    finally:
        one_browser.close()
        other_browser.close()
