"""A long run with the Train page open (``python -m bench.soak --minutes 30``): does anything grow?

One MNIST run of the default settings (2,000 probe images, snapshots at the page's pace) trains for
``--minutes`` with a browser watching it, then is stopped. Every ``--every`` seconds: the Streamlit
server's and the worker's resident memory, the store's size on disk, the snapshots the run keeps and its
step. Reported: the start, peak and end of each, and the least-squares slope of the server's memory and
of the store's size over the second half (bounded means flat there: the store thins a long run's
snapshots to a few hundred, and a page keeps one run's figures). Not part of the tests: it runs for half
an hour. Results are printed and written to ``bench/results/soak.json``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from bench.engine import mnist_cache
from bench.live import chromium, latest_run, machine, press, rss_mb, serve, stop_run, train_page, wait_until

RESULTS = Path(__file__).parent / "results" / "soak.json"


def soak(minutes: float, every_s: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as root, chromium() as browser:
        store_dir, data_dir = Path(root) / "store", mnist_cache(Path(root) / "data")
        store_dir.mkdir()
        with serve(store_dir, data_dir) as app, train_page(browser, app, {"epochs": 1000}) as page:
            press(page, "start")
            wait_until(page, lambda: (run := latest_run(app.store)) and app.store.count_snapshots(run.id) > 0,
                       "the first snapshot", timeout_s=300)
            run = latest_run(app.store)
            samples, begun = [], time.monotonic()
            while (now := time.monotonic()) - begun <= minutes * 60:
                record = app.store.get_run(run.id)
                samples.append({"t_min": (now - begun) / 60, "server_mb": rss_mb(app.pid),
                                "worker_mb": rss_mb(record.pid), "store_mb": app.store.size_bytes() / 1e6,
                                "snapshots": app.store.count_snapshots(run.id),
                                "step": int(record.summary.get("step", 0)), "status": record.status})
                page.wait_for_timeout(max(0.0, every_s * len(samples) - (time.monotonic() - begun)) * 1000)
            stop_run(page, app)
            final = app.store.get_run(run.id)
        return {"minutes": minutes, "machine": machine(browser.version), **summary(samples),
                "status_at_stop": final.status, "samples": samples}


def summary(samples: list[dict[str, Any]]) -> dict[str, Any]:
    t = np.array([s["t_min"] for s in samples])
    half = t >= t[-1] / 2
    out: dict[str, Any] = {}
    for name in ("server_mb", "worker_mb", "store_mb", "snapshots"):
        values = np.array([s[name] if s[name] is not None else np.nan for s in samples], dtype=float)
        out[name] = {"start": float(values[0]), "peak": float(np.nanmax(values)), "end": float(values[-1])}
        fit = stats.linregress(t[half], values[half]) if half.sum() >= 3 else None
        out[name]["slope_per_min_second_half"] = float(fit.slope) if fit else None
    out["steps"] = samples[-1]["step"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--every", type=float, default=15.0, help="seconds between samples")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"where the results go [default: {RESULTS}]")
    args = parser.parse_args()
    results = soak(args.minutes, args.every)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(json.dumps({k: v for k, v in results.items() if k != "samples"}, indent=2))


if __name__ == "__main__":
    main()
