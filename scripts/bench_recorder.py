#!/usr/bin/env python3
"""Recorder speed and size, side by side with comet_ml.OfflineExperiment when installed.

Prints, for ``log_metric(name, value, step=i)``:
  caller-side calls/s     bursts that fit the in-memory queue (what the training loop pays)
  paced latency           p50/p99/max of single calls in a loop paced at --pace calls/s
  durable rows/s          calls + flush until every row is committed, end to end
  bytes per metric point  journal size / points
  burst memory            peak RSS growth over a burst of --burst calls (bounded queue)
and the same figures for OfflineExperiment (its ``end()`` is its flush), with ratios.
Raw figures go to bench-results/recorder.json.

    python scripts/bench_recorder.py            # full run (~1-2 min on 2 cores)
    python scripts/bench_recorder.py --quick    # smaller sizes, for a smoke test
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import sqlite3
import statistics
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import psutil

from comet_journal import Experiment


# OfflineExperiment with nothing captured automatically: the same work as the recorder with
# COMET_JOURNAL_AUTO_LOG=0, for a fair comparison (bench_all.py uses it too).
QUIET_OFFLINE_OPTIONS = dict(
    log_code=False, log_graph=False, auto_output_logging=None, log_env_details=False,
    log_git_metadata=False, log_git_patch=False, log_env_gpu=False, log_env_host=False,
    log_env_cpu=False, log_env_network=False, log_env_disk=False, auto_param_logging=False,
    auto_metric_logging=False, display_summary_level=0)


def caller_side(tmp: str, burst: int, rounds: int) -> float:
    exp = Experiment(journal=os.path.join(tmp, "caller.db"), max_queue=burst + 1000)
    log = exp.log_metric
    rates = []
    step = 0
    for _ in range(rounds):
        exp.flush()
        gc.collect()
        t0 = time.perf_counter()
        for _ in range(burst):
            log("loss", 0.5, step=step)
            step += 1
        rates.append(burst / (time.perf_counter() - t0))
    exp.end()
    return statistics.median(rates)


def paced_latency(tmp: str, calls: int, pace: float, log) -> dict:
    gap = 1.0 / pace
    samples = []
    clock = time.perf_counter_ns
    for i in range(calls):
        t0 = clock()
        log("loss", 0.5, step=i)
        samples.append(clock() - t0)
        time.sleep(gap)
    samples.sort()
    return {"p50_us": samples[len(samples) // 2] / 1000,
            "p99_us": samples[int(len(samples) * 0.99)] / 1000,
            "max_us": samples[-1] / 1000}


def durable(tmp: str, calls: int) -> dict:
    path = os.path.join(tmp, "durable.db")
    t0 = time.perf_counter()
    exp = Experiment(journal=path)
    log = exp.log_metric
    for i in range(calls):
        log("loss", i * 0.001, step=i)
    exp.end()
    elapsed = time.perf_counter() - t0
    conn = sqlite3.connect(path)
    n = conn.execute("SELECT count(*) FROM calls WHERE endpoint='log_metric'").fetchone()[0]
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    assert n == calls, (n, calls)
    return {"rows_per_s": calls / elapsed, "bytes_per_point": os.path.getsize(path) / calls,
            "seconds": elapsed}


def burst_memory(tmp: str, calls: int) -> dict:
    proc = psutil.Process()
    gc.collect()
    base = proc.memory_info().rss
    peak = base
    stop = threading.Event()

    def sample():
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, proc.memory_info().rss)
            time.sleep(0.05)

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    path = os.path.join(tmp, "burst.db")
    t0 = time.perf_counter()
    exp = Experiment(journal=path)
    log = exp.log_metric
    for i in range(calls):
        log("loss", 0.5, step=i)
    stats = exp.end(timeout=600)
    elapsed = time.perf_counter() - t0
    stop.set()
    watcher.join()
    conn = sqlite3.connect(path)
    n = conn.execute("SELECT count(*) FROM calls WHERE endpoint='log_metric'").fetchone()[0]
    conn.close()
    os.unlink(path)
    return {"calls": calls, "journaled": n, "lost": stats["lost"],
            "peak_rss_growth_mb": (peak - base) / 2**20, "seconds": elapsed}


def official(tmp: str, calls: int, burst: int, paced_calls: int, pace: float) -> dict | None:
    try:
        import logging
        os.environ.setdefault("COMET_LOGGING_CONSOLE", "ERROR")
        logging.getLogger("comet_ml").setLevel(logging.ERROR)
        from comet_ml import OfflineExperiment
    except ImportError:
        return None

    def make(directory: str):
        os.makedirs(directory, exist_ok=True)
        return OfflineExperiment(offline_directory=directory, project_name="bench",
                                 **QUIET_OFFLINE_OPTIONS)

    exp = make(os.path.join(tmp, "off-caller"))
    t0 = time.perf_counter()
    for i in range(burst):
        exp.log_metric("loss", 0.5, step=i)
    caller = burst / (time.perf_counter() - t0)
    latency = paced_latency(tmp, paced_calls, pace, exp.log_metric)
    exp.end()
    directory = os.path.join(tmp, "off-durable")
    exp = make(directory)
    t0 = time.perf_counter()
    for i in range(calls):
        exp.log_metric("loss", i * 0.001, step=i)
    exp.end()
    elapsed = time.perf_counter() - t0
    size = sum(os.path.getsize(os.path.join(directory, f)) for f in os.listdir(directory))
    return {"caller_calls_per_s": caller, "latency": latency, "rows_per_s": calls / elapsed,
            "bytes_per_point": size / calls, "seconds": elapsed}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=1_000_000, help="durable run size")
    ap.add_argument("--official-calls", type=int, default=100_000)
    ap.add_argument("--burst", type=int, default=10_000_000, help="memory burst size")
    ap.add_argument("--pace", type=float, default=5000.0, help="paced calls per second")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench-results", "recorder.json"))
    args = ap.parse_args()
    if args.quick:
        args.calls, args.official_calls, args.burst = 100_000, 20_000, 300_000
    tmp = tempfile.mkdtemp(prefix="bench-recorder-")
    try:
        ours_latency_exp = Experiment(journal=os.path.join(tmp, "paced.db"))
        results = {
            "caller_calls_per_s": caller_side(tmp, 50_000, 10),
            "latency": paced_latency(tmp, 20_000, args.pace, ours_latency_exp.log_metric),
        }
        ours_latency_exp.end()
        results.update(durable(tmp, args.calls))
        results["burst"] = burst_memory(tmp, args.burst)
        theirs = official(tmp, args.official_calls, 50_000, 5_000, args.pace)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{'figure':<28}{'recorder':>14}{'OfflineExperiment':>20}{'ratio':>9}")

    def row(label, ours, other, fmt="{:,.0f}", higher_better=True):
        o = fmt.format(other) if other is not None else "n/a"
        ratio = ""
        if other:
            r = ours / other if higher_better else other / ours
            ratio = f"{r:.1f}x"
        print(f"{label:<28}{fmt.format(ours):>14}{o:>20}{ratio:>9}")

    t = theirs or {}
    tl = t.get("latency", {})
    row("caller-side calls/s", results["caller_calls_per_s"], t.get("caller_calls_per_s"))
    row("paced latency p50 (us)", results["latency"]["p50_us"], tl.get("p50_us"), "{:.2f}",
        False)
    row("paced latency p99 (us)", results["latency"]["p99_us"], tl.get("p99_us"), "{:.2f}",
        False)
    row("paced latency max (us)", results["latency"]["max_us"], tl.get("max_us"), "{:.0f}",
        False)
    row("durable rows/s", results["rows_per_s"], t.get("rows_per_s"))
    row("bytes per metric point", results["bytes_per_point"], t.get("bytes_per_point"),
        "{:.1f}", False)
    b = results["burst"]
    print(f"burst of {b['calls']:,} calls: peak RSS +{b['peak_rss_growth_mb']:.0f} MB, "
          f"{b['journaled']:,} journaled, {b['lost']} lost, {b['seconds']:.1f} s")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump({"recorder": results, "official": theirs, "args": vars(args)}, fh, indent=2)
    print(f"raw figures: {args.out}")


if __name__ == "__main__":
    main()
