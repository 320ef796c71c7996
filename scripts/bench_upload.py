#!/usr/bin/env python3
"""Benchmark comet-upload against the emulator on loopback; prints figures side by side.

Each measurement starts its own emulator *process* (``python -m emulator.cli``), so the
client under test never shares a GIL with the server, and both the bare loop and the uploader
face the same server:

1. per-call replay vs a bare loop: the same journal's metric calls sent one by one with
   ``requests`` and no journal (sequential, keep-alive), then by ``comet-upload`` (per-call
   REST endpoints, default concurrency); the ratio is replay/bare (target >= 0.85);
2. 50 ms emulated latency, ``--concurrency 32``: calls/s (target >= 400);
3. ``--batch``: metric points/s (target >= 150,000);
4. peak RSS of ``comet-upload --batch`` on a journal of ``--rss-calls`` calls (default
   1,000,000; target < 150 MB), read from the child's ``ru_maxrss``.

Usage::

    .venv/bin/python scripts/bench_upload.py                  # full run
    .venv/bin/python scripts/bench_upload.py --calls 2000 --rss-calls 100000   # quick
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEY = "bench-key"


class EmulatorProcess:
    def __init__(self, *args: str):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "comet_journal.emulator.cli", "--api-key", KEY, *args], cwd=ROOT,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env={**os.environ, "PYTHONPATH": ROOT})
        line = self.proc.stdout.readline().strip()
        if not line.startswith("listening on "):
            raise RuntimeError(f"emulator did not start: {line!r}")
        self.url = line.split("listening on ", 1)[1]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.wait(timeout=30)


def build_journal(path: str, calls: int, name: str = "bench") -> str:
    """``calls`` metric calls in one experiment, written fast through the recorder."""
    import inspect
    from comet_journal import Experiment
    quiet = {"auto_output_logging": False, "log_env_details": False, "log_env_host": False,
             "log_env_gpu": False, "log_env_cpu": False, "log_git_metadata": False,
             "log_git_patch": False, "log_code": False}
    accepted = inspect.signature(Experiment.__init__).parameters
    opts = {k: v for k, v in quiet.items() if k in accepted}
    with Experiment(journal=path, project_name="bench", workspace="ws", experiment_name=name,
                    **opts) as exp:
        for i in range(calls):
            exp.log_metric("loss", 1.0 / (i + 1), step=i)
    return path


def bare_loop(url: str, path: str) -> float:
    """Requests/s of a plain loop sending the journal's metric calls (same bodies)."""
    import sqlite3
    import requests
    conn = sqlite3.connect(path)
    session = requests.Session()
    session.headers["Authorization"] = KEY
    key = session.post(url + "/api/rest/v2/write/experiment/create",
                       json={"workspaceName": "ws", "projectName": "bare"}).json()["experimentKey"]
    rows = conn.execute("SELECT ts_ms, payload FROM calls WHERE endpoint='log_metric'").fetchall()
    conn.close()
    target = url + "/api/rest/v2/write/experiment/metric"
    started = time.perf_counter()
    for ts, text in rows:
        body = json.loads(text)
        body["experimentKey"] = key
        body.setdefault("timestamp", ts)
        response = session.post(target, json=body)
        response.raise_for_status()
    return len(rows) / (time.perf_counter() - started)


# comet-upload, reporting its own peak RSS on stderr as it exits. Not ru_maxrss: Linux carries
# it across fork and exec (it would include this script's own RSS), and RUSAGE_CHILDREN is
# the largest of every child so far, the emulators included. VmHWM is the new program's own.
_MEASURED_CLI = """\
import resource, runpy, sys
sys.argv[0] = "comet-upload"
try:
    runpy.run_module("comet_journal.uploader.cli", run_name="__main__", alter_sys=True)
finally:
    try:
        with open("/proc/self/status") as status:
            kib = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    sys.stderr.write(f"\\npeak_rss_kib={kib}\\n")
"""


def run_upload(url: str, path: str, *extra: str, deadline: str = "60"
               ) -> tuple[dict, float, int]:
    """(summary, wall seconds, peak RSS in bytes) of one ``comet-upload`` process."""
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _MEASURED_CLI, "--url", url, "--api-key", KEY,
                           "--json", "--deadline", deadline, *extra, path], cwd=ROOT,
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ROOT})
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"comet-upload failed ({proc.returncode}): {proc.stderr[-2000:]}")
    peak_kib = int(proc.stderr.rsplit("peak_rss_kib=", 1)[1].split()[0])
    summary = json.loads(proc.stdout)["journals"][0]
    return summary, wall, peak_kib * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=5000, help="calls for the rate runs")
    parser.add_argument("--latency-calls", type=int, default=3000)
    parser.add_argument("--batch-calls", type=int, default=300_000)
    parser.add_argument("--rss-calls", type=int, default=1_000_000)
    parser.add_argument("--skip-rss", action="store_true")
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench-upload-")
    results: dict = {}

    journal = build_journal(os.path.join(tmp, "rate.db"), args.calls)
    with EmulatorProcess("--hashes-only") as emu:
        bare = bare_loop(emu.url, journal)
    with EmulatorProcess("--hashes-only") as emu:
        summary, wall, _ = run_upload(emu.url, journal, "--no-batch")
    replay = summary["uploaded"] / summary["elapsed_s"]
    results["per_call"] = {"bare_loop_req_s": round(bare), "replay_calls_s": round(replay),
                           "ratio": round(replay / bare, 3), "target_ratio": 0.85}

    journal = build_journal(os.path.join(tmp, "latency.db"), args.latency_calls)
    with EmulatorProcess("--hashes-only", "--latency-ms", "50") as emu:
        summary, wall, _ = run_upload(emu.url, journal, "--no-batch", "--concurrency", "32")
    results["latency_50ms_c32"] = {"calls_s": round(summary["uploaded"] / summary["elapsed_s"]),
                                   "target": 400}

    journal = build_journal(os.path.join(tmp, "batch.db"), args.batch_calls)
    with EmulatorProcess("--hashes-only") as emu:
        summary, wall, _ = run_upload(emu.url, journal, "--batch")
    results["batch"] = {"points_s": round(summary["uploaded"] / summary["elapsed_s"]),
                        "batches": summary["batches"], "target": 150_000}

    if not args.skip_rss:
        t = time.perf_counter()
        journal = build_journal(os.path.join(tmp, "rss.db"), args.rss_calls)
        build_s = time.perf_counter() - t
        with EmulatorProcess("--hashes-only") as emu:
            summary, wall, rss = run_upload(emu.url, journal, "--batch")
        results["peak_rss"] = {"calls": args.rss_calls, "journal_build_s": round(build_s, 1),
                               "upload_s": round(wall, 1), "peak_rss_mb": round(rss / 2**20, 1),
                               "target_mb": 150}

    width = max(len(k) for k in results)
    print("comet-upload benchmark (emulator on loopback, separate process)")
    for name, figures in results.items():
        print(f"  {name:<{width}}  " + "  ".join(f"{k}={v}" for k, v in figures.items()))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
