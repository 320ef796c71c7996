#!/usr/bin/env python3
"""Lag of the watch daemon: from a call being journaled to its being on the server.

Starts an emulator, a ``comet-upload watch`` daemon (default settings) on a fresh directory
and ``--journals`` live recorder processes writing into it (each logs ``--rate`` metric points
per second for ``--seconds``). For every metric point it takes the journal time (``ts_ms``)
and the time the emulator applied it (``atMs``) and prints the median, p99 and max lag.
Target: p99 under 5 s with 10 live journals.

    python scripts/bench_watch.py                 # 10 journals x 50 points/s x 20 s
    python scripts/bench_watch.py --quick         # a short smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from comet_journal.emulator.server import Emulator

KEY = "bench-key"
WRITER = """
import sys, time
from comet_journal import Experiment
exp = Experiment(journal=sys.argv[1], project_name="bench", workspace="ws")
rate, seconds = float(sys.argv[2]), float(sys.argv[3])
start = time.time()
i = 0
while time.time() - start < seconds:
    exp.log_metric("loss", 1.0 / (i + 1), step=i)
    i += 1
    time.sleep(max(0.0, start + i / rate - time.time()))
exp.end()
"""


def journal_times(path: str) -> dict[tuple[str, int], int]:
    conn = sqlite3.connect(path)
    try:
        key = conn.execute("SELECT key FROM experiments").fetchone()[0]
        return {(key, json.loads(p)["step"]): ts for p, ts in conn.execute(
            "SELECT payload, ts_ms FROM calls WHERE endpoint='log_metric'")}
    finally:
        conn.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--journals", type=int, default=10)
    ap.add_argument("--rate", type=float, default=50.0, help="points per second per journal")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--segments", action="store_true", help="cross-host mode: writers seal "
                    "segments (1 s), the daemon polls every second and reads only segments")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench-results", "watch.json"))
    args = ap.parse_args()
    if args.quick:
        args.journals, args.seconds = 3, 5.0
    tmp = tempfile.mkdtemp(prefix="bench-watch-")
    watched = os.path.join(tmp, "runs")
    os.makedirs(watched)
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMET_")}
    env.update(PYTHONPATH=ROOT, COMET_JOURNAL_AUTO_LOG="0",
               XDG_STATE_HOME=os.path.join(tmp, "state"))
    writer_env = dict(env, COMET_JOURNAL_SEGMENTS="1") if args.segments else env
    with Emulator(db_path=os.path.join(tmp, "server.db"), api_key=KEY) as emu:
        daemon = subprocess.Popen([sys.executable, "-m", "comet_journal.uploader.cli", "watch", "--url",
                                   emu.url, "--api-key", KEY, "-q", watched,
                                   *(["--poll", "1"] if args.segments else [])], env=env)
        time.sleep(1.0)
        paths = [os.path.join(watched, f"run{i}.db") for i in range(args.journals)]
        writers = [subprocess.Popen([sys.executable, "-c", WRITER, p, str(args.rate),
                                     str(args.seconds)], env=writer_env) for p in paths]
        for w in writers:
            w.wait()
        expected = {}
        for p in paths:
            expected.update(journal_times(p))
        deadline = time.time() + 60
        applied = {}
        while time.time() < deadline:
            applied = {}
            for a in emu.state()["applied"]:
                if a["endpoint"] == "log_metric":
                    applied[(a["experimentKey"], a["fields"].get("step"))] = a["atMs"]
                elif a["endpoint"] == "batch_metrics":
                    for v in a["fields"].get("values", []):
                        applied[(a["experimentKey"], v.get("step"))] = a["atMs"]
            if len(applied) >= len(expected):
                break
            time.sleep(0.5)
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(30)
    shutil.rmtree(tmp, ignore_errors=True)
    lags = sorted((applied[k] - ts) / 1000 for k, ts in expected.items() if k in applied)
    per_journal: dict[str, list[float]] = {}
    for k, ts in expected.items():
        if k in applied:
            per_journal.setdefault(k[0], []).append((applied[k] - ts) / 1000)
    for key, values in sorted(per_journal.items()):
        values.sort()
        print(f"  experiment {key[:8]}: median {statistics.median(values):.2f} s, "
              f"max {values[-1]:.2f} s, first points lag {values[0]:.2f} s")
    missing = len(expected) - len(lags)
    result = {"journals": args.journals, "segments": args.segments,
              "points": len(expected), "missing": missing,
              "median_s": statistics.median(lags) if lags else None,
              "p99_s": lags[int(len(lags) * 0.99)] if lags else None,
              "max_s": lags[-1] if lags else None}
    print(f"{args.journals} live journals x {args.rate:g} points/s x {args.seconds:g} s: "
          f"{len(expected)} points, {missing} missing")
    print(f"lag journal -> server: median {result['median_s']:.2f} s, p99 "
          f"{result['p99_s']:.2f} s, max {result['max_s']:.2f} s (target p99 < 5 s)")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(result, fh, indent=2)


if __name__ == "__main__":
    main()
