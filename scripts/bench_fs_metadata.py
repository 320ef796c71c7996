#!/usr/bin/env python3
"""Filesystem metadata load of the watch daemon on 1,000 runs, counted by the FUSE layer.

Writes ``--runs`` small directory runs (segments on; a few metrics each, ended) into a real
directory, mounts it through ``scripts/fuse_two_hosts.py`` as a second host's view with a
network client's caches (attributes ``--attr-ms``, listings ``--dir-ms``; no torn reads, no
ESTALE, no late names: the load, not the faults), runs ``comet-upload watch --poll P`` on
the mount against an emulator, and reports operations per minute:

* **first pass**: until every run is uploaded and marked so;
* **steady state**: ``--idle`` seconds with nothing changing (every run uploaded), which is
  what a daemon left running costs the filesystem.

Two counts: ``issued``, every call reaching the filesystem with the kernel's caches off
(each lookup of a path component is a getattr; an upper bound, as on a client mounted
``noac``), and ``to server``, what a client with the caches above would send on.

    python scripts/bench_fs_metadata.py                 # 1,000 runs, --poll 5, 60 s idle
    python scripts/bench_fs_metadata.py --quick         # 100 runs, 15 s idle
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fuse_two_hosts import METADATA_OPS, Faults, Mount, unavailable  # noqa: E402

from comet_journal.emulator.server import Emulator  # noqa: E402

KEY = "bench-key"
MAKE_RUNS = r"""
import os, sys
from comet_journal import Experiment
directory, count = sys.argv[1], int(sys.argv[2])
for _ in range(count):
    exp = Experiment(journal=directory + os.sep, project_name="bench", workspace="ws")
    for step in range(5):
        exp.log_metric("loss", 1.0 / (step + 1), step=step)
    exp.end()
"""


def make_runs(directory: str, runs: int, env: dict, workers: int = 4) -> float:
    started = time.monotonic()
    share = [runs // workers + (1 if i < runs % workers else 0) for i in range(workers)]
    procs = [subprocess.Popen([sys.executable, "-c", MAKE_RUNS, directory, str(n)], env=env)
             for n in share if n]
    for proc in procs:
        if proc.wait() != 0:
            raise SystemExit("writing the runs failed")
    return time.monotonic() - started


def uploaded(log_path: str) -> int:
    with open(log_path) as f:
        return sum(1 for line in f if line.startswith("{") and
                   json.loads(line).get("state") == "uploaded")


def per_minute(before: dict, after: dict) -> dict:
    seconds = after["seconds"] - before["seconds"]

    def rate(group: str, names) -> dict:
        out = {n: (after[group].get(n, 0) - before[group].get(n, 0)) * 60 / seconds
               for n in names}
        return {k: round(v) for k, v in out.items() if v}

    issued = rate("ops", METADATA_OPS)
    server = rate("server", ("getattr", "readdir", "open"))
    return {"seconds": round(seconds, 1), "issued_per_min": issued,
            "issued_metadata_per_min": sum(issued.values()), "server_per_min": server,
            "server_metadata_per_min": sum(server.values())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--poll", type=float, default=5.0, help="the daemon's --poll seconds")
    ap.add_argument("--idle", type=float, default=60.0, help="seconds of steady state")
    ap.add_argument("--attr-ms", type=float, default=3000.0, help="client attribute cache "
                    "(NFS acregmin: 3 s)")
    ap.add_argument("--dir-ms", type=float, default=30000.0, help="client listing cache "
                    "(NFS acdirmin: 30 s)")
    ap.add_argument("--deadline", type=float, default=900.0, help="give up the first pass")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench-results", "fs_metadata.json"))
    args = ap.parse_args()
    if args.quick:
        args.runs, args.idle = 100, 15.0
    why_not = unavailable()
    if why_not:
        raise SystemExit(f"no FUSE mount here: {why_not}")
    tmp = tempfile.mkdtemp(prefix="bench-fs-metadata-")
    runs, view = os.path.join(tmp, "runs"), os.path.join(tmp, "host-b")
    os.makedirs(runs)
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMET_")}
    env.update(PYTHONPATH=ROOT, COMET_JOURNAL_AUTO_LOG="0", COMET_JOURNAL_QUIET="1",
               XDG_STATE_HOME=os.path.join(tmp, "state"))
    written_s = make_runs(runs, args.runs, dict(env, COMET_JOURNAL_SEGMENTS="1"))
    print(f"{args.runs} runs written in {written_s:.1f} s; "
          f"{len(os.listdir(runs))} entries in the directory")
    faults = Faults(attr_ms=args.attr_ms, dir_ms=args.dir_ms, hide_ms=0, torn_rate=0,
                    estale_rate=0)
    log_path = os.path.join(tmp, "daemon.log")
    try:
        with Emulator(db_path=os.path.join(tmp, "server.db"), api_key=KEY) as emu, \
                Mount(runs, view, faults, os.path.join(tmp, "stats.json")) as mount, \
                open(log_path, "w") as log:
            start = mount.stats()
            daemon = subprocess.Popen([sys.executable, "-m", "comet_journal.uploader.cli",
                                       "watch", "--url", emu.url, "--api-key", KEY,
                                       "--poll", str(args.poll), "--json-log", view],
                                      stdout=subprocess.DEVNULL, stderr=log, env=env)
            try:
                result = measure(args, mount, start, log_path)
            finally:
                daemon.send_signal(signal.SIGTERM)
                daemon.wait(timeout=60)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result.update(runs=args.runs, poll_s=args.poll, attr_ms=args.attr_ms,
                  dir_ms=args.dir_ms)
    print(json.dumps(result, indent=2))
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)


def measure(args, mount: Mount, start: dict, log_path: str) -> dict:
    deadline = time.monotonic() + args.deadline
    while uploaded(log_path) < args.runs:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {uploaded(log_path)} of {args.runs} runs uploaded in "
                             f"{args.deadline:g} s")
        time.sleep(1.0)
    first = mount.stats()
    first_pass = per_minute(start, first)
    print(f"first pass: every run uploaded in {first_pass['seconds']} s, "
          f"{first_pass['issued_metadata_per_min']:,} metadata ops/min issued, "
          f"{first_pass['server_metadata_per_min']:,} to the server")
    time.sleep(args.poll + 1.0)  # the last turns end; then nothing changes
    before = mount.stats()
    time.sleep(args.idle)
    steady = per_minute(before, mount.stats())
    print(f"steady state ({args.runs} uploaded runs, --poll {args.poll:g}): "
          f"{steady['issued_metadata_per_min']:,} metadata ops/min issued "
          f"({steady['issued_per_min']}), {steady['server_metadata_per_min']:,} to the "
          f"server ({steady['server_per_min']})")
    return {"first_pass": first_pass, "steady": steady}


if __name__ == "__main__":
    main()
