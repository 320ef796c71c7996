#!/usr/bin/env python3
"""Benchmark of ``comet-upload view``: time to first chart paint in headless Chromium, bytes
sent for that first paint, and the server's memory, for runs of one metric of N points.

    .venv/bin/python scripts/bench_view.py                      # 10k, 100k, 1M, 10M points
    .venv/bin/python scripts/bench_view.py --points 10000 100000

Each size: a journal of N ``log_metric`` rows (written directly: a recorder would take minutes
for 10M), a viewer process on a free port, then two page loads in fresh browser contexts
(empty cache): "cold" right after the server starts (the server reads the run as the page
asks for it) and "warm" once the server has read it. The first paint is ``performance.now()``
when the first chart's draw hook fires, i.e. measured from navigation start, in the browser.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

from viewer_helpers import ViewerProcess, write_metric_journal  # noqa: E402

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--no-first-run"]
BYTES_JS = """() => performance.getEntriesByType('navigation').concat(
    performance.getEntriesByType('resource')).reduce((n, e) => n + (e.transferSize || 0), 0)"""


def rss_mb(pid: int) -> tuple[float, float]:
    """(current, peak) resident memory of a process, MiB."""
    fields = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return (int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024)


def first_paint(browser, url: str, timeout_s: float) -> dict:
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    try:
        page.goto(url)
        chart = page.wait_for_selector('[data-metric="loss"][data-painted]',
                                       timeout=timeout_s * 1000)
        return {"paint_ms": page.evaluate("window.firstPaintMs"),
                "bytes": page.evaluate(BYTES_JS),
                "points_sent": int(chart.get_attribute("data-sent"))}
    finally:
        context.close()


def wait_warm(viewer: ViewerProcess, key: str, timeout_s: float) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        with urllib.request.urlopen(f"{viewer.base}/api/run/{key}/live") as r:
            if json.load(r)["metrics"]:
                return time.monotonic() - t0
        time.sleep(0.2)
    raise TimeoutError("the server did not read the run in time")


def bench(browser, points: int, workdir: str) -> dict:
    path = os.path.join(workdir, f"metric-{points}.db")
    t0 = time.monotonic()
    key = write_metric_journal(path, points)
    result = {"points": points, "journal_mb": round(os.path.getsize(path) / 2**20, 1),
              "write_s": round(time.monotonic() - t0, 1)}
    timeout = 30 + points / 100_000
    with ViewerProcess(path) as viewer:
        cold = first_paint(browser, f"{viewer.url}#/run/{key}", timeout)
        result["read_s"] = round(wait_warm(viewer, key, timeout) + cold["paint_ms"] / 1000, 1)
        warm = first_paint(browser, f"{viewer.url}#/run/{key}", timeout)
        current, peak = rss_mb(viewer.proc.pid)
    os.unlink(path)
    result.update(cold_paint_ms=round(cold["paint_ms"]), warm_paint_ms=round(warm["paint_ms"]),
                  first_paint_kb=round(warm["bytes"] / 1024), points_sent=warm["points_sent"],
                  server_rss_mb=round(current), server_peak_rss_mb=round(peak))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, nargs="+",
                        default=[10_000, 100_000, 1_000_000, 10_000_000])
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright
    with tempfile.TemporaryDirectory() as workdir, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
        print("| points | journal MB | cold first paint ms | warm first paint ms | KB for "
              "first paint | points sent | server RSS MB (peak) |")
        print("|---:|---:|---:|---:|---:|---:|---:|")
        for n in args.points:
            r = bench(browser, n, workdir)
            print(f"| {n:,} | {r['journal_mb']} | {r['cold_paint_ms']} | {r['warm_paint_ms']} | "
                  f"{r['first_paint_kb']} | {r['points_sent']} | {r['server_rss_mb']} "
                  f"({r['server_peak_rss_mb']}) |", flush=True)
            print(json.dumps(r), file=sys.stderr, flush=True)
        browser.close()


if __name__ == "__main__":
    main()
