"""Many users at once, on loopback: ten browser sessions open the Train page and each starts a small
run. The runner's cap holds across sessions (one run trains at a time on a CPU, the others queue and
say where they stand), every page keeps refreshing until its own run has finished, a session that
closes stops nothing (its run still finishes), a second tab can watch another session's run, and
the server's memory stays bounded. The figures go to stdout (``pytest -s``) and to ``load.json`` in
the output folder.
"""

from __future__ import annotations

import json
import re
import time
from urllib.parse import urlencode

import pytest

from dmlviz.config import RunConfig
from dmlviz.store import RunStore

from .waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SESSIONS = 10
RUN = {"dataset": "digits", "loss": "softmax", "device": "cpu", "steps": 30, "batch_size": 32, "probe_size": 100}
LOAD_S = 420.0  # the whole test's bound: ten runs one after the other on a busy two-core machine
MEMORY_GROWTH_MB = 400.0  # ten sessions' state, figures and caches; a leak per rerun would pass this fast
STATUS_JS = "() => { const e = document.querySelector('.st-key-run_status'); return e ? e.innerText : ''; }"


def rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def test_ten_sessions_each_start_a_run(app, browser, e2e_output):
    url = f"{app.url}/train?{urlencode(RunConfig.from_dict(RUN).to_query())}"
    contexts = [browser.new_context(viewport={"width": 1200, "height": 900}) for _ in range(SESSIONS)]
    pages = [context.new_page() for context in contexts]
    try:
        for page in pages:
            page.set_default_timeout(60_000)
            page.goto(url)
        for page in pages:
            page.locator(".st-key-start button").filter(visible=True).first.click()
        baseline, peak, begun = rss_mb(app.pid), 0.0, time.monotonic()
        store = RunStore(app.store_dir)
        wait_until(pages[0], lambda: len(store.list_runs()) == SESSIONS, "every session's run to be submitted")
        # The last session goes away; another tab opens the first session's run by its link.
        contexts.pop().close()
        first_run = min(run.id for run in store.list_runs())
        contexts.append(browser.new_context(viewport={"width": 1200, "height": 900}))
        watcher = contexts[-1].new_page()
        watcher.goto(f"{app.url}/train?run={first_run}")
        pages[-1] = watcher

        seen: list[set[str]] = [set() for _ in pages]  # what each page's status line said over time
        while True:
            peak = max(peak, rss_mb(app.pid))
            for page, said in zip(pages, seen, strict=True):
                if text := page.evaluate(STATUS_JS):
                    said.add(re.sub(r"\d[\d,.]*", "N", text))
            runs = store.list_runs()
            statuses = [run.status for run in runs]
            # The cap holds across sessions: never two runs training at once on this CPU.
            assert statuses.count("running") + statuses.count("paused") <= 1, statuses
            if all(status == "finished" for status in statuses):
                break
            assert time.monotonic() - begun < LOAD_S, f"not every run finished in {LOAD_S:g} s: {statuses}"
            pages[0].wait_for_timeout(500)
        elapsed = time.monotonic() - begun

        # Each page followed its run to its end, without a reload (the watching tab joined late).
        for page, said in zip(pages, seen, strict=True):
            wait_until(page, lambda page=page: "finished" in page.evaluate(STATUS_JS).lower(),
                       "a page to show its run finished")
            # The last word too: a run queued and then quick can finish between two samples of its page.
            said.add(re.sub(r"\d[\d,.]*", "N", page.evaluate(STATUS_JS)))
        for said in seen[:-1]:
            assert len(said) >= 2, f"a page's status never changed: {said}"
        assert any("queue" in text for said in seen for text in said), "no page said its run was queued"
        assert not any(page.locator("[data-testid='stException']").count() for page in pages)
        figures = {"sessions": SESSIONS, "seconds_to_finish_all": round(elapsed, 1),
                   "server_rss_mb_before": round(baseline, 1), "server_rss_mb_peak": round(peak, 1),
                   "server_rss_mb_after": round(rss_mb(app.pid), 1)}
        print(f"\nload: {json.dumps(figures)}")
        (e2e_output / "load.json").write_text(json.dumps(figures, indent=2))
        assert peak - baseline < MEMORY_GROWTH_MB, figures
    finally:
        for context in contexts:
            context.close()
