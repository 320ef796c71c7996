#!/usr/bin/env python3
"""Benchmark read-back at scale: does what is in doubt cost what is in doubt?

For one long metric series, uploads the same journal to a fresh emulator *process*
(deduplication off) clean and with a share of requests dropped after being applied (the
uploader cannot know whether they were: it reads back), in batch mode and per call. Prints,
per run: wall time, requests, series reads (``experiment/metrics/get-metric``), drops, and
the peak RSS of the uploader and of the emulator; then the time of a no-op re-upload of the
fully uploaded journal.

Usage::

    .venv/bin/python scripts/bench_scale.py                     # 1M batch, 100k per call
    .venv/bin/python scripts/bench_scale.py --points 200000 --per-call-points 10000  # quick
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_upload import KEY, EmulatorProcess, build_journal, run_upload  # noqa: E402

SERIES_READ = "read:experiment/metrics/get-metric"


def summary_of(url: str) -> dict:
    import requests
    answer = requests.get(url + "/emulator/state", params={"summary": "1"},
                          headers={"Authorization": KEY}, timeout=600)
    answer.raise_for_status()
    return answer.json()


def peak_rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) * 1024


def upload(url: str, path: str, *extra: str) -> tuple[dict, float, int]:
    """``bench_upload.run_upload`` with a deadline long enough for 10M-point runs."""
    return run_upload(url, path, *extra, deadline="3600")


def one_run(journal: str, route: str, rate: float, extra: list[str], noop: bool) -> dict:
    faults = {"seed": 7, "rules": [{"route": route, "kind": "drop_after", "rate": rate}]
              if rate else []}
    with EmulatorProcess("--hashes-only", "--faults", json.dumps(faults)) as emu:
        summary, wall, rss = upload(emu.url, journal, *extra)
        state = summary_of(emu.url)
        points = sum(sum(e["metricPoints"].values()) for e in state["experiments"].values())
        figures = {"wall_s": round(wall, 2), "points_on_server": points,
                   "requests": state["requests"]["total"],
                   "series_reads": state["requests"]["by_route"].get(SERIES_READ, 0),
                   "drops": state["faults"].get("drop_after", 0),
                   "uploader_rss_mb": round(rss / 2**20, 1),
                   "emulator_rss_mb": round(peak_rss(emu.proc.pid) / 2**20, 1)}
        if noop:
            started = time.perf_counter()
            again, _, _ = upload(emu.url, journal, *extra)
            figures["noop_reupload_s"] = round(time.perf_counter() - started, 2)
            figures["noop_uploaded"] = again["uploaded"]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=1_000_000, help="batch-mode series")
    parser.add_argument("--per-call-points", type=int, default=100_000)
    parser.add_argument("--rates", default="0,0.005,0.02", help="drop_after rates")
    parser.add_argument("--concurrency", type=int, default=32, help="per-call concurrency")
    parser.add_argument("--repeat", type=int, default=1,
                        help="rounds over the rates (a busy machine: the median is reported, "
                             "with every wall time, ratios from the same round)")
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench-scale-")
    rates = [float(r) for r in args.rates.split(",")]
    results: dict = {}
    for mode, points, route, extra in (
            ("batch", args.points, "batch_metrics", ["--batch"]),
            ("per_call", args.per_call_points, "log_metric",
             ["--no-batch", "--concurrency", str(args.concurrency)])):  # batch is the default
        if not points:
            continue
        journal = build_journal(os.path.join(tmp, f"{mode}.db"), points)
        rounds = []
        for i in range(args.repeat):  # rates interleaved: load changes hit them alike
            rounds.append({rate: one_run(journal, route, rate, extra, noop=rate == 0 and i == 0)
                           for rate in rates})
            print(f"{mode} {points} round {i + 1}: " + ", ".join(
                f"{r:g}: {f['wall_s']} s" for r, f in rounds[-1].items()), file=sys.stderr,
                flush=True)
        for rate in rates:
            runs = [r[rate] for r in rounds]
            walls = sorted(f["wall_s"] for f in runs)
            figures = dict(runs[0], wall_s=walls[len(walls) // 2])
            if args.repeat > 1:
                figures["wall_s_all"] = [f["wall_s"] for f in runs]
                if rate:
                    figures["vs_clean_per_round"] = [
                        round(r[rate]["wall_s"] / r[rates[0]]["wall_s"], 2) for r in rounds]
            results[f"{mode} {points} drops={rate:g}"] = figures
    width = max(len(k) for k in results)
    print("read-back at scale (emulator on loopback, separate process, dedupe off)")
    for name, figures in results.items():
        print(f"  {name:<{width}}  " + "  ".join(f"{k}={v}" for k, v in figures.items()))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
