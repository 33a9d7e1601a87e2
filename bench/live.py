"""The Train and Compare pages' live views on MNIST, measured in a real browser (``python -m bench.live``).

1. Start → first frame: from the click on Start to the first drawn feature chart with points, dataset
   cached; median of 3 fresh browser sessions, each split into click → first snapshot in the store →
   drawn.
2. Refresh rate with the default 2,000 probe points: redraws of the feature chart per second over a
   window of a running run, all of them (``Plotly.react`` calls) and those with new data (snapshots).
3. Training throughput with the page open against the same run from ``python -m dmlviz train``
   (default settings, each stopped after the same training time): images per second of wall time over
   the run (snapshots included) and the median rate between snapshots, with the cores each process
   used. "The same run" takes live snapshots as often as a watching page has them taken
   (``--snapshot-budget`` = ``engine.WATCHED_SNAPSHOT_BUDGET``); the CLI's default, unwatched run is
   measured too, which shows what the live picture itself costs.
4. Server memory: RSS of the Streamlit process every 5 s while a run trains with the page polling
   (a run of 1,000 epochs, stopped at the end), and the least-squares slope over the second half.
5. The Compare page with two losses (softmax vs center loss, MNIST): new frames of the grid per second,
   and the two runs' images/s together against one run alone (the CLI run of 3.).
6. What one frame costs, part by part, and the floor they set: in this process, with the default run
   after some training, the probe pass (on one thread and on all), the snapshot's numbers, and the
   server's figures of a frame (built and serialised); from the page run of 2., the browser's and the
   server's CPU per new frame. At the target frame rate these leave some cores to training; their
   share of the cores the unwatched CLI run uses is the throughput ratio that the frame rate allows
   at best (training is assumed to scale linearly with cores, which favours the page).

The app is served by ``streamlit run app.py`` on a loopback port with its own store, and driven by
Chromium through Playwright (Debian's chromium; Playwright's own browsers are never downloaded). An
init script in every frame wraps ``Plotly.react`` in the chart component's iframe and counts what it
draws, so the page itself is measured unchanged. Other processes on a shared machine slow the page
and the training down: each measurement first waits (``--settle``) for the CPU to go idle, the CLI
and page runs are repeated (``--attempts``) while others took more than a quarter of a core, and
every result carries the load average and the cores other processes used. Results are printed and
written to ``bench/results/live.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Any
from urllib.parse import urlencode

import numpy as np
import plotly
import streamlit
import torch
from scipy import stats

from bench import appserver
from bench.engine import mnist_cache
from dmlviz import settings
from dmlviz.comparison import get_comparison_preset
from dmlviz.config import RunConfig
from dmlviz.data import load_raw
from dmlviz.engine import WATCHED_SNAPSHOT_BUDGET
from dmlviz.store import RunStore

REPO = Path(__file__).resolve().parents[1]
OUT = Path(__file__).parent / "results" / "live.json"
VIEWPORT = {"width": 1400, "height": 1000}
SERVER_START_S = 90.0
WARMUP_S = 5.0  # snapshots before this much run time are left out of the images/s median
WINDOW_AFTER_S = 10.0  # the refresh window opens this far into the page run
SAMPLE_S = 5.0  # memory sampling period
QUIET_CORES = 0.25  # other processes' CPU use below which a measurement counts as undisturbed
TARGETS = {
    "start_to_first_frame_s": ("<=", 3.0),
    "page_redraws_per_s": (">=", 2.0),
    "new_frames_per_s": (">=", 2.0),
    "page_vs_cli_throughput": (">=", 0.85),
    # "flat", read as: the server grows by at most 1 MB a minute over the second half of the run.
    "server_rss_slope_mb_per_min": ("abs<=", 1.0),
    # The Compare page with two runs: its grid still refreshes at 1 Hz, and the two runs together train
    # at ≥ 0.85× the images/s of one run alone (the same run from the CLI, with the same snapshots).
    "compare_redraws_per_s": (">=", 1.0),
    "compare_two_runs_vs_one": (">=", 0.85),
    # With the page open: at least half the images/s of the run nobody watches.
    "page_vs_unwatched_throughput": (">=", 0.5),
}
FRAME_RATE = 2.0  # the target frame rate at which the floor of part 6 is worked out

# Runs in every frame before its own scripts. In the page: the time Start is pressed. In a chart
# component's iframe: every Plotly.react call, timed, and whether it brought new points (the first
# values of the first class trace, as the browser tests compare them).
INIT_JS = """(() => {
  if (window.top === window) {
    window.addEventListener('pointerdown', (e) => {
      if (e.target.closest && e.target.closest('.st-key-start')) window.__benchClickAt = Date.now();
    }, true);
    return;
  }
  const b = window.__bench = {renders: 0, calls: 0, newData: 0, reactMs: [], specChars: 0, signature: null,
                              lastRenderAt: null, pointsRenderAt: null, pointsCallAt: null, firstPointsAt: null,
                              points: 0};
  window.addEventListener('message', (e) => {
    if (!e.data || e.data.type !== 'streamlit:render') return;
    b.renders++;
    b.lastRenderAt = Date.now();
    b.specChars = e.data.args && e.data.args.spec ? e.data.args.spec.length : 0;
  });
  const wrap = (P) => {
    const react = P.react;
    P.react = async function (gd, ...rest) {
      const t0 = performance.now(), calledAt = Date.now(), renderAt = b.lastRenderAt;
      const result = await react.call(this, gd, ...rest);
      b.calls++;
      b.reactMs.push(performance.now() - t0);
      if (b.reactMs.length > 2000) b.reactMs.shift();
      const classes = (gd._fullData || []).filter((t) => t._input && t._input.customdata != null);
      const points = classes.reduce((n, t) => n + (t.x ? t.x.length : 0), 0);
      const signature = points + ':' + JSON.stringify(classes.length && classes[0].x ?
                                                      Array.from(classes[0].x.slice(0, 8)) : []);
      if (signature !== b.signature) { b.newData++; b.signature = signature; }
      b.points = points;
      if (points > 0 && b.firstPointsAt === null) {
        // The first frame with points: when its render message came, when it was drawn from and to.
        b.firstPointsAt = Date.now(); b.pointsCallAt = calledAt; b.pointsRenderAt = renderAt;
      }
      return result;
    };
  };
  let plotlyModule;
  Object.defineProperty(window, 'Plotly', {configurable: true, get: () => plotlyModule,
                                           set: (value) => { plotlyModule = value; wrap(value); }});
})();"""
COUNTERS_JS = """(key) => {
  const frame = document.querySelector('.st-key-' + key + ' iframe');
  const b = frame && frame.contentWindow && frame.contentWindow.__bench;
  if (!b) return null;
  return {now: Date.now(), clickAt: window.__benchClickAt || null, renders: b.renders, calls: b.calls,
          newData: b.newData, points: b.points, specChars: b.specChars, pointsRenderAt: b.pointsRenderAt,
          pointsCallAt: b.pointsCallAt, firstPointsAt: b.firstPointsAt, reactMs: b.reactMs.slice()};
}"""


# -- the machine --------------------------------------------------------------------------------

def load() -> dict[str, Any]:
    """The load averages now, as ``uptime`` gives them, with the time they were read."""
    one, five, fifteen = os.getloadavg()
    return {"at": time.strftime("%H:%M:%S"), "1min": one, "5min": five, "15min": fifteen}


def machine_jiffies() -> tuple[int, int]:
    """All CPU time and idle time (idle + iowait) of the machine so far, in clock ticks."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(values), values[3] + values[4]


def busy_since(start: tuple[int, int]) -> float:
    """Cores in use on the whole machine since ``start`` (a :func:`machine_jiffies` reading)."""
    total, idle = machine_jiffies()
    return (os.cpu_count() or 1) * (1 - (idle - start[1]) / max(1, total - start[0]))


def quiet(max_wait_s: float, below: float = 0.3) -> dict[str, Any]:
    """Wait (at most ``max_wait_s``) for other work on the machine to fall below ``below`` cores in
    use, so a measurement starts from an idle CPU where it can; the load then, and the wait."""
    begun = time.monotonic()
    while True:
        start = machine_jiffies()
        time.sleep(2.0)
        busy = busy_since(start)
        if busy <= below or time.monotonic() - begun >= max_wait_s:
            return {"busy_cores": busy, "waited_s": time.monotonic() - begun} | load()


def machine(browser_version: str) -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"cpu": cpu, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "torch": torch.__version__, "streamlit": streamlit.__version__,
            "plotly": plotly.__version__, "chromium": browser_version, "platform": platform.platform()}


def rss_mb(pid: int) -> float | None:
    """Resident memory of one process from /proc (psutil is not a dependency)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _stat(pid: int) -> tuple[int, float] | None:
    """Parent pid and CPU seconds (user + system) of a process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(server_pid: int, worker_pid: int | None) -> dict[str, float]:
    """CPU time so far of the Streamlit server, the training worker, and the browser (every process
    this benchmark started other than the server's group: Playwright's driver and Chromium)."""
    table = {int(p.name): s for p in Path("/proc").iterdir() if p.name.isdigit() and (s := _stat(int(p.name)))}
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)

    def tree(root: int) -> set[int]:
        found, todo = set(), [root]
        while todo:
            pid = todo.pop()
            found.add(pid)
            todo += children.get(pid, [])
        return found

    server_tree = tree(server_pid)
    browser = tree(os.getpid()) - server_tree - {os.getpid()}
    return {"server": table.get(server_pid, (0, 0.0))[1],
            "worker": table.get(worker_pid, (0, 0.0))[1] if worker_pid else 0.0,
            "browser": sum(table[p][1] for p in browser if p in table)}


def cpu_share(before: dict[str, float], after: dict[str, float], seconds: float) -> dict[str, float]:
    """Cores in use by each group over an interval (2.0 = both cores of a two-core machine)."""
    return {name: (after[name] - before[name]) / seconds for name in before}


# -- the app and the browser --------------------------------------------------------------------

@dataclass(frozen=True)
class App:
    url: str
    pid: int
    store: RunStore
    log: Path


@contextmanager
def serve(store_dir: Path, data_dir: Path) -> Iterator[App]:
    """The app on a loopback port with its own store (``bench.appserver``)."""
    with appserver.serve(store_dir, data_dir, store_dir / "server.log", SERVER_START_S) as server:
        yield App(server.url, server.pid, RunStore(store_dir), server.log)


@contextmanager
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    path = appserver.chromium_path()
    if path is None:
        raise RuntimeError("no Chromium found: apt-get install chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, args=list(appserver.CHROMIUM_FLAGS), headless=True)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def train_page(browser, app: App, config: dict[str, Any]) -> Iterator[Any]:
    """A fresh browser session (cold cache, new Streamlit session) on the Train page set to ``config``."""
    with open_page(browser, app, "train", RunConfig.from_dict(config).to_query(), "start") as page:
        yield page


@contextmanager
def open_page(browser, app: App, path: str, query: dict[str, str], ready: str) -> Iterator[Any]:
    """A fresh browser session on ``/<path>?<query>``, once the button keyed ``ready`` shows."""
    context = browser.new_context(viewport=VIEWPORT)
    context.add_init_script(INIT_JS)
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.received = {"frames": 0, "bytes": 0}  # what Streamlit's websocket brought: counted from the start

    def on_socket(socket) -> None:
        def count(payload) -> None:
            page.received["frames"] += 1
            page.received["bytes"] += len(payload)
        socket.on("framereceived", count)

    page.on("websocket", on_socket)
    page.goto(f"{app.url}/{path}?{urlencode(query)}" if query else f"{app.url}/{path}")
    page.locator(f".st-key-{ready} button").filter(visible=True).first.wait_for()
    try:
        yield page
    finally:
        context.close()


def press(page, key: str) -> None:
    page.locator(f".st-key-{key} button").filter(visible=True).first.click()


def wait_until(page, condition: Callable[[], Any], what: str, timeout_s: float = 60.0, poll_ms: int = 50) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout_s:g} s waiting for {what}")
        page.wait_for_timeout(poll_ms)
    return value


def counters(page, key: str = "features_chart") -> dict[str, Any] | None:
    return page.evaluate(COUNTERS_JS, key)


def latest_run(store: RunStore):
    runs = store.list_runs()
    return runs[0] if runs else None


def stop_run(page, app: App) -> None:
    """Stop the page's run and wait for the store to say so: one run at a time on a CPU."""
    run = latest_run(app.store)
    if run is None or not run.active:
        return
    press(page, "stop")
    # The final snapshot embeds the whole test set, which takes long on a busy machine.
    wait_until(page, lambda: not app.store.get_run(run.id).active, "the run to stop", timeout_s=300, poll_ms=500)


# -- 1. start → first frame ---------------------------------------------------------------------

def first_frame(browser, app: App, settle_s: float) -> dict[str, Any]:
    """One fresh session: click Start, then when the store holds the first snapshot and when the chart
    first drew points (browser clock and Python wall clock are the same system clock)."""
    before = {run.id for run in app.store.list_runs()}
    with train_page(browser, app, {}) as page:
        system_load = quiet(settle_s)
        jiffies = machine_jiffies()
        press(page, "start")
        stored_at = None

        def drawn() -> dict[str, Any] | None:
            nonlocal stored_at
            run = latest_run(app.store)
            if stored_at is None and run is not None and run.id not in before and app.store.count_snapshots(run.id):
                stored_at = time.time() * 1000
            state = counters(page)
            return state if state and state["firstPointsAt"] else None

        state = wait_until(page, drawn, "the first drawn points", poll_ms=20)
        click = state["clickAt"]
        result = {"seconds": (state["firstPointsAt"] - click) / 1000,
                  "click_to_snapshot_stored_s": (stored_at - click) / 1000 if stored_at else None,
                  "click_to_first_render_message_s": (state["pointsRenderAt"] - click) / 1000,
                  "click_to_first_react_call_s": (state["pointsCallAt"] - click) / 1000,
                  "points": state["points"], "machine_cores": busy_since(jiffies), "load": system_load}
        stop_run(page, app)
    return result


# -- 2. + 3. the page's run: refresh rate and throughput ----------------------------------------

def throughput(series: dict[str, np.ndarray]) -> dict[str, float]:
    """Images/s of a run from its series: the median of the per-snapshot rates after the warm-up, and
    the overall rate (steps × batch / time) over the same span."""
    late = series["elapsed"] >= WARMUP_S
    rates = series["images_per_s"][late]
    rates = rates[np.isfinite(rates)]
    steps, elapsed = series["step"][late], series["elapsed"][late]
    batch = RunConfig().batch_size
    return {"median_img_s": float(np.median(rates)), "snapshots": int(late.sum()),
            "overall_img_s": float(series["step"][-1] * batch / series["elapsed"][-1]),
            "snapshot_elapsed_s": [round(float(t), 2) for t in series["elapsed"]],
            "last_step": int(series["step"][-1]),
            "span_steps": int(steps[-1] - steps[0]), "span_s": float(elapsed[-1] - elapsed[0]),
            "run_s": float(series["elapsed"][-1])}


def page_run(browser, app: App, run_s: float, window_s: float, settle_s: float) -> dict[str, Any]:
    """A run with default settings from the page, stopped after ``run_s`` of training; the refresh
    rate over a window of it."""
    system_load = quiet(settle_s)
    with train_page(browser, app, {}) as page:
        received = page.received
        press(page, "start")
        wait_until(page, lambda: (s := counters(page)) and s["firstPointsAt"], "the first drawn points", timeout_s=300)
        run = latest_run(app.store)
        began, run_jiffies, first = time.monotonic(), machine_jiffies(), counters(page)
        worker = app.store.get_run(run.id).pid
        run_cpu = cpu_seconds(app.pid, worker)
        page.wait_for_timeout(WINDOW_AFTER_S * 1000)
        start, snaps, cpu, socket_start = counters(page), app.store.count_snapshots(run.id), \
            cpu_seconds(app.pid, worker), dict(received)
        window_jiffies = machine_jiffies()
        page.wait_for_timeout(window_s * 1000)
        end, snaps_end, cpu_end = counters(page), app.store.count_snapshots(run.id), cpu_seconds(app.pid, worker)
        machine_cores = busy_since(window_jiffies)
        if end is None or end["calls"] < start["calls"]:
            raise RuntimeError("the feature chart was mounted anew during the window: its counts started over")
        seconds = (end["now"] - start["now"]) / 1000
        react_ms = end["reactMs"][len(end["reactMs"]) - (end["calls"] - start["calls"]):]
        cores = cpu_share(cpu, cpu_end, seconds)
        refresh = {
            "window_s": seconds,
            "page_redraws_per_s": (end["calls"] - start["calls"]) / seconds,
            "new_frames_per_s": (end["newData"] - start["newData"]) / seconds,
            "render_messages_per_s": (end["renders"] - start["renders"]) / seconds,
            "store_snapshots_per_s": (snaps_end - snaps) / seconds,
            "plotly_react_ms_median": float(median(react_ms)) if react_ms else None,
            "plotly_react_ms_max": float(max(react_ms)) if react_ms else None,
            "feature_spec_chars": end["specChars"], "points": end["points"],
            "websocket_kb_per_s": (received["bytes"] - socket_start["bytes"]) / 1024 / seconds,
            "websocket_messages_per_s": (received["frames"] - socket_start["frames"]) / seconds,
            "cores_used": cores | {"machine": machine_cores, "others": machine_cores - sum(cores.values())},
            "load_before": system_load, "load": load(),
        }
        page.wait_for_timeout(max(0.0, run_s - (time.monotonic() - began)) * 1000)
        last = counters(page)
        run_seconds = (last["now"] - first["now"]) / 1000
        refresh["whole_run"] = {"seconds": run_seconds,
                                "page_redraws_per_s": (last["calls"] - first["calls"]) / run_seconds,
                                "new_frames_per_s": (last["newData"] - first["newData"]) / run_seconds}
        run_cores = cpu_share(run_cpu, cpu_seconds(app.pid, worker), time.monotonic() - began)
        machine_cores = busy_since(run_jiffies)
        stop_run(page, app)
    run_cores |= {"machine": machine_cores, "others": machine_cores - sum(run_cores.values())}
    return {"refresh": refresh, "throughput": throughput(app.store.series(run.id))
            | {"cores_used": run_cores, "load_before": system_load, "load_after": load()}}


def compare_run(browser, app: App, run_s: float, window_s: float, settle_s: float) -> dict[str, Any]:
    """Two losses on the Compare page (the softmax vs center loss preset, MNIST), stopped after ``run_s``:
    redraws of the grid over a window, and the two runs' images/s together."""
    system_load = quiet(settle_s)
    query = get_comparison_preset("softmax-vs-center").comparison().to_query()
    before = {run.id for run in app.store.list_runs()}
    with open_page(browser, app, "compare", query, "compare_start") as page:
        press(page, "compare_start")
        wait_until(page, lambda: (s := counters(page, "compare_chart")) and s["firstPointsAt"], "the grid's points",
                   timeout_s=300)
        runs = [run for run in app.store.list_runs() if run.id not in before]
        began = time.monotonic()
        page.wait_for_timeout(WINDOW_AFTER_S * 1000)
        start, jiffies = counters(page, "compare_chart"), machine_jiffies()
        page.wait_for_timeout(window_s * 1000)
        end, machine_cores = counters(page, "compare_chart"), busy_since(jiffies)
        seconds = (end["now"] - start["now"]) / 1000
        page.wait_for_timeout(max(0.0, run_s - (time.monotonic() - began)) * 1000)
        press(page, "compare_stop")
        wait_until(page, lambda: not any(app.store.get_run(run.id).active for run in runs), "the runs to stop",
                   timeout_s=300, poll_ms=500)
    rates = [throughput(app.store.series(run.id)) for run in runs]
    return {"runs": len(runs), "page_redraws_per_s": (end["calls"] - start["calls"]) / seconds,
            "new_frames_per_s": (end["newData"] - start["newData"]) / seconds,
            "overall_img_s_together": sum(r["overall_img_s"] for r in rates),
            "median_img_s_together": sum(r["median_img_s"] for r in rates), "per_run": rates,
            "machine_cores": machine_cores, "load_before": system_load, "load_after": load()}


def least_disturbed(measure: Callable[[], dict[str, Any]], others: Callable[[dict[str, Any]], float],
                    attempts: int) -> dict[str, Any]:
    """Repeat a measurement while other processes took more than ``QUIET_CORES`` of the CPU during
    it, at most ``attempts`` times; the least disturbed one, with how many were made."""
    tried = []
    for _ in range(attempts):
        tried.append(measure())
        print(f"  attempt {len(tried)}: other processes used {others(tried[-1]):.2f} cores", flush=True)
        if others(tried[-1]) <= QUIET_CORES:
            break
    return min(tried, key=others) | {"attempts": len(tried)}


def cli_run(data_dir: Path, run_s: float, settle_s: float, snapshot_budget: float | None = None) -> dict[str, Any]:
    """The same run from ``python -m dmlviz train`` (no server, no browser, a store of its own),
    stopped with Ctrl-C after ``run_s`` of training as the page's is with Stop. ``snapshot_budget``:
    the share of time live snapshots may take (a watching page asks for ``WATCHED_SNAPSHOT_BUDGET``)."""
    with tempfile.TemporaryDirectory(prefix="dmlviz-bench-cli-") as store_dir:
        system_load = quiet(settle_s)
        store = RunStore(store_dir)
        budget = ["--snapshot-budget", str(snapshot_budget)] if snapshot_budget is not None else []
        process = subprocess.Popen([sys.executable, "-m", "dmlviz", "--store", store_dir, "train", "--quiet",
                                    "--dataset", "mnist", "--data-dir", str(data_dir), *budget],
                                   cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while not ((runs := store.list_runs()) and store.count_snapshots(runs[0].id)):
                if process.poll() is not None:
                    raise RuntimeError("the train command ended before its first snapshot")
                time.sleep(0.05)
            jiffies, cpu = machine_jiffies(), _stat(process.pid)[1]
            time.sleep(run_s)
            machine_cores, cli_cores = busy_since(jiffies), (_stat(process.pid)[1] - cpu) / run_s
            process.send_signal(signal.SIGINT)
            process.wait(timeout=600)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        try:
            return throughput(store.series(runs[0].id)) | {
                "status": store.get_run(runs[0].id).status,
                "cores_used": {"cli": cli_cores, "machine": machine_cores, "others": machine_cores - cli_cores},
                "load_before": system_load, "load_after": load()}
        finally:
            store.close()


# -- 4. server memory ---------------------------------------------------------------------------

def memory(browser, app: App, minutes: float, settle_s: float) -> dict[str, Any]:
    """Server (and worker) RSS every few seconds while a long run trains with the page open, with the
    cores the machine and this benchmark's processes used in each interval."""
    system_load = quiet(settle_s)
    with train_page(browser, app, {"epochs": 1000}) as page:
        press(page, "start")
        wait_until(page, lambda: (s := counters(page)) and s["firstPointsAt"], "the first drawn points",
                   timeout_s=300)
        run = latest_run(app.store)
        worker = app.store.get_run(run.id).pid
        samples: list[dict[str, Any]] = []
        begun, first = time.monotonic(), counters(page)
        jiffies, cpu, then = machine_jiffies(), cpu_seconds(app.pid, worker), begun
        while True:
            now, state = time.monotonic(), counters(page)
            cpu_now, machine_cores = cpu_seconds(app.pid, worker), busy_since(jiffies)
            ours = sum(cpu_share(cpu, cpu_now, max(now - then, 1e-9)).values())
            jiffies, cpu, then = machine_jiffies(), cpu_now, now
            samples.append({"t_s": now - begun, "server_mb": rss_mb(app.pid), "worker_mb": rss_mb(worker),
                            "redraws": state["calls"] - first["calls"],
                            "step": app.store.snapshot_index(run.id)[-1].step,
                            "other_cores": machine_cores - ours if len(samples) else None})
            if now - begun >= minutes * 60:
                break
            page.wait_for_timeout(max(0.0, SAMPLE_S * len(samples) - (time.monotonic() - begun)) * 1000)
        status = app.store.get_run(run.id).status
        stop_run(page, app)
    return rss_summary(samples) | {"status_before_stop": status, "samples": samples, "load_before": system_load,
                                   "load_after": load()}


def rss_summary(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Start, end and peak of the server's RSS, and its least-squares slope with its standard error over
    the second half (the target) and over the whole run; the page's redraw rate over the run."""
    t = np.array([s["t_s"] for s in samples]) / 60
    mb = np.array([s["server_mb"] for s in samples])
    half = t >= t[-1] / 2
    trend = {}
    for name, chosen in (("", half), ("_whole_run", np.ones_like(half))):
        fit = stats.linregress(t[chosen], mb[chosen]) if chosen.sum() >= 3 else None
        trend[f"server_rss_slope_mb_per_min{name}"] = float(fit.slope) if fit else float("nan")
        trend[f"server_rss_slope_stderr{name}"] = float(fit.stderr) if fit else float("nan")
    worker_mb = [s["worker_mb"] for s in samples if s["worker_mb"] is not None]
    others = [s["other_cores"] for s in samples if s["other_cores"] is not None]
    return {"minutes": float(t[-1]), "server_start_mb": float(mb[0]), "server_end_mb": float(mb[-1]),
            "server_min_mb": float(mb.min()), "server_max_mb": float(mb.max()), **trend,
            "worker_start_mb": worker_mb[0] if worker_mb else None,
            "worker_end_mb": worker_mb[-1] if worker_mb else None,
            "page_redraws_per_s": samples[-1]["redraws"] / max(samples[-1]["t_s"], 1e-9),
            "training_img_s": (samples[-1]["step"] - samples[0]["step"]) * RunConfig().batch_size
            / max(samples[-1]["t_s"] - samples[0]["t_s"], 1e-9),
            "other_cores_mean": float(np.mean(others)) if others else None}


# -- the report ---------------------------------------------------------------------------------

def frame_costs(data_dir: Path, steps: int = 200, repeats: int = 5) -> dict[str, Any]:
    """Seconds (median of ``repeats``) of each part of a live frame that is computed in Python, after
    ``steps`` of the default run: the probe pass on one thread and on all, the snapshot's numbers, and
    the server's figures (feature chart and histogram, built and serialised as the chart sends them)."""
    from dmlviz import figures, geometry
    from dmlviz.engine import setup

    def timed(work: Callable[[], Any]) -> float:
        for _ in range(3):  # warm: oneDNN builds its kernels for each shape and thread count on first use
            work()
        seconds = []
        for _ in range(repeats):
            began = time.perf_counter()
            work()
            seconds.append(time.perf_counter() - began)
        return median(seconds)

    threads = torch.get_num_threads()
    trainer = setup(RunConfig.from_dict({"dataset": "mnist", "epochs": 1}), data_dir)
    for _ in range(steps):
        trainer.train_step()
    probe = trainer.data.probe_batch()
    costs = {"probe_pass_s": timed(lambda: trainer.embed(probe))}
    torch.set_num_threads(1)
    costs["probe_pass_one_thread_s"] = timed(lambda: trainer.embed(probe))
    torch.set_num_threads(threads)
    costs["snapshot_s"] = timed(lambda: trainer.snapshot("tick", 0.0, 1.0))
    snapshot = trainer.snapshot("tick", 0.0, 1.0)
    labels = trainer.data.probe_labels.cpu().numpy()
    names, classes = list(trainer.data.class_names), list(trainer.data.train_classes)

    def server_figures() -> None:
        features = figures.feature_figure(snapshot.features, labels, names, classes,
                                          class_means=snapshot.class_means, height=560)
        histogram = figures.histogram_figure(geometry.distance_histogram(snapshot.features, labels))
        features.to_json(), histogram.to_json()

    costs["server_figures_s"] = timed(server_figures)
    return costs | {"threads": threads, "steps": steps}


def frame_floor(costs: dict[str, Any], page: dict[str, Any], unwatched_cores: float) -> dict[str, Any]:
    """Core-seconds per new frame, part by part (the worker's snapshot counted on all its threads, an
    upper bound; the browser and server from the page run), and what ``FRAME_RATE`` frames a second
    leave to training on this machine's cores, as a share of the cores the unwatched run uses."""
    refresh = page["refresh"]
    frames = max(refresh["new_frames_per_s"], 1e-9)
    per_frame = {"snapshot": costs["snapshot_s"] * min(costs["threads"], os.cpu_count() or 1),
                 "browser": refresh["cores_used"]["browser"] / frames,
                 "server": refresh["cores_used"]["server"] / frames}
    left = (os.cpu_count() or 1) - FRAME_RATE * sum(per_frame.values())
    return {"core_s_per_frame": per_frame, "frame_rate": FRAME_RATE, "cores_left_for_training": left,
            "best_throughput_ratio": max(0.0, left) / unwatched_cores}


def verdicts(values: dict[str, float | None]) -> dict[str, dict[str, Any]]:
    out = {}
    for name, (op, target) in TARGETS.items():
        value = values.get(name)
        if value is None or not np.isfinite(value):
            passed = None
        elif op == "<=":
            passed = value <= target
        elif op == ">=":
            passed = value >= target
        else:
            passed = abs(value) <= target
        out[name] = {"value": value, "target": f"{op.replace('abs', '|x| ')} {target:g}", "pass": passed}
    return out


def summarize(results: dict[str, Any]) -> None:
    """The verdicts on the targets, from the measurements."""
    page = results["page"]
    results["targets"] = verdicts({
        "start_to_first_frame_s": results["first_frame"]["median_s"],
        "page_redraws_per_s": page["refresh"]["page_redraws_per_s"],
        "new_frames_per_s": page["refresh"]["new_frames_per_s"],
        "page_vs_cli_throughput": page["throughput"]["overall_img_s"] / results["cli"]["overall_img_s"],
        "server_rss_slope_mb_per_min": results.get("memory", {}).get("server_rss_slope_mb_per_min"),
        "compare_redraws_per_s": results["compare"]["new_frames_per_s"],
        "compare_two_runs_vs_one": results["compare"]["overall_img_s_together"] / results["cli"]["overall_img_s"],
        "page_vs_unwatched_throughput": page["throughput"]["overall_img_s"]
        / results["cli_unwatched"]["overall_img_s"],
    })
    results["floor"] = frame_floor(results["frame_costs"], page, results["cli_unwatched"]["cores_used"]["cli"])


def report(results: dict[str, Any]) -> str:
    """The verdicts as a table, then the numbers behind them, each with the machine's load."""
    rows = [f"{'measure':34} {'value':>10}  {'target':>10}  result"]
    for name, verdict in results["targets"].items():
        value = verdict["value"]
        shown = f"{value:10.3g}" if value is not None else f"{'—':>10}"
        result = {True: "pass", False: "FAIL", None: "not measured"}[verdict["pass"]]
        rows.append(f"{name:34} {shown}  {verdict['target']:>10}  {result}")
    rows.append("")
    for trial in results["first_frame"]["trials"]:
        rows.append(f"first frame {trial['seconds']:.2f} s: snapshot stored {trial['click_to_snapshot_stored_s']:.2f}, "
                    f"render message {trial['click_to_first_render_message_s']:.2f}, Plotly.react called "
                    f"{trial['click_to_first_react_call_s']:.2f} (load {trial['load']['1min']:.2f})")
    refresh, page, cli = results["page"]["refresh"], results["page"]["throughput"], results["cli"]
    rows.append(f"refresh over {refresh['window_s']:.0f} s: {refresh['page_redraws_per_s']:.3f} redraws/s, "
                f"{refresh['new_frames_per_s']:.3f} new frames/s, {refresh['store_snapshots_per_s']:.3f} "
                f"snapshots/s stored; over the run {refresh['whole_run']['page_redraws_per_s']:.3f} redraws/s "
                f"(load {refresh['load']['1min']:.2f})")
    for name, run in (("cli, same snapshots", cli), ("cli, unwatched", results["cli_unwatched"]), ("page", page)):
        cores = ", ".join(f"{k} {v:.2f}" for k, v in run["cores_used"].items())
        rows.append(f"{name} {run['median_img_s']:5.0f} img/s (overall {run['overall_img_s']:.0f}); cores: {cores}; "
                    f"snapshots at {run['snapshot_elapsed_s']} s (load {run['load_after']['1min']:.2f})")
    c = results["compare"]
    rows.append(f"compare, two runs: {c['new_frames_per_s']:.3f} new frames/s, {c['overall_img_s_together']:.0f} "
                f"img/s together (medians {c['median_img_s_together']:.0f}); machine {c['machine_cores']:.2f} "
                f"cores (load {c['load_after']['1min']:.2f})")
    costs, floor = results["frame_costs"], results["floor"]
    parts = ", ".join(f"{k} {v:.3f}" for k, v in floor["core_s_per_frame"].items())
    rows.append(f"one frame: probe pass {costs['probe_pass_s'] * 1000:.0f} ms ({costs['threads']} threads), "
                f"{costs['probe_pass_one_thread_s'] * 1000:.0f} ms (1 thread); whole snapshot "
                f"{costs['snapshot_s'] * 1000:.0f} ms; server figures {costs['server_figures_s'] * 1000:.0f} ms")
    rows.append(f"floor: core-seconds per frame: {parts}; at {floor['frame_rate']:g} frames/s "
                f"{floor['cores_left_for_training']:.2f} cores are left to training, at best "
                f"{floor['best_throughput_ratio']:.2f}x the unwatched run")
    if "memory" in results:
        m = results["memory"]
        rows.append(f"server RSS over {m['minutes']:.1f} min: start {m['server_start_mb']:.0f} MB, end "
                    f"{m['server_end_mb']:.0f}, min {m['server_min_mb']:.0f}, max {m['server_max_mb']:.0f}; slope "
                    f"{m['server_rss_slope_mb_per_min']:.2f} ± {m['server_rss_slope_stderr']:.2f} MB/min (second "
                    f"half), {m['server_rss_slope_mb_per_min_whole_run']:.2f} ± "
                    f"{m['server_rss_slope_stderr_whole_run']:.2f} (whole run); {m['page_redraws_per_s']:.3f} "
                    f"redraws/s, {m['training_img_s']:.0f} img/s (load {m['load_after']['1min']:.2f})")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the memory measurement")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--run-seconds", type=float, default=60.0,
                        help="training time of the page's and the CLI's run before they are stopped")
    parser.add_argument("--window", type=float, default=20.0, help="seconds over which redraws are counted")
    parser.add_argument("--settle", type=float, default=120.0,
                        help="seconds to wait at most, before each measurement, for a busy machine to go idle")
    parser.add_argument("--attempts", type=int, default=2,
                        help="runs of the CLI and page measurements at most, while other processes disturb them")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    data_dir = mnist_cache(settings.data_dir(args.data_dir))
    load_raw("mnist", data_dir)  # unpacked and cached once: every measurement starts from a cached dataset

    results: dict[str, Any] = {"settings": {"run_s": args.run_seconds, "window_s": args.window,
                                            "minutes": None if args.skip_memory else args.minutes,
                                            "probe_size": RunConfig().probe_size}}
    with tempfile.TemporaryDirectory(prefix="dmlviz-bench-live-") as root, chromium() as browser:
        results["machine"] = machine(browser.version)
        print(f"load at start: {load()}", flush=True)
        results["frame_costs"] = frame_costs(data_dir)
        print(f"frame costs: {results['frame_costs']}", flush=True)
        # The same run as the page's: with the live snapshots a watching page asks for; and as the CLI
        # runs it by default, with nobody watching.
        results["cli"] = least_disturbed(
            lambda: cli_run(data_dir, args.run_seconds, args.settle, WATCHED_SNAPSHOT_BUDGET),
            lambda r: r["cores_used"]["others"], args.attempts)
        print(f"cli: {results['cli']}", flush=True)
        results["cli_unwatched"] = least_disturbed(lambda: cli_run(data_dir, args.run_seconds, args.settle),
                                                   lambda r: r["cores_used"]["others"], args.attempts)
        print(f"cli, unwatched: {results['cli_unwatched']}", flush=True)
        with serve(Path(root), data_dir) as app:
            trials = []
            for _ in range(3):
                trials.append(first_frame(browser, app, args.settle))
                print(f"first frame: {trials[-1]}", flush=True)
            results["first_frame"] = {"median_s": median(t["seconds"] for t in trials), "trials": trials}
            results["page"] = least_disturbed(
                lambda: page_run(browser, app, args.run_seconds, args.window, args.settle),
                lambda r: r["throughput"]["cores_used"]["others"], args.attempts)
            print(f"page: {results['page']}", flush=True)
            results["compare"] = compare_run(browser, app, args.run_seconds, args.window, args.settle)
            print(f"compare: {results['compare']}", flush=True)
            if not args.skip_memory:
                results["memory"] = memory(browser, app, args.minutes, args.settle)
            app.store.close()
    summarize(results)
    print(report(results))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=float))


if __name__ == "__main__":
    main()
