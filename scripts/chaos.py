#!/usr/bin/env python3
"""Chaos soak: everything that can be killed is killed, the server misbehaves, and at the end
the server must hold every journaled call exactly once, in order where order matters.

For ``--minutes``: two recorder processes journal a realistic mix of every kind of call
(metrics at a high rate, parameters, others, output, system samples, assets of various sizes
including one over 100 MB, tags, html, lifecycle calls) into a watched directory; a
``comet-upload watch`` daemon uploads them (with ``--batch``) while one-shot ``comet-upload``
runs join in now and then. At random moments (``--seed``) recorders, the daemon and the
one-shot uploaders are killed with SIGKILL and restarted. The emulator injects 10-20% faults
of every kind (5xx, 429 with both retry headers, drops before and after applying, latency,
slow bodies) and an outage window.

At the end the faults stop, the runs end cleanly, the daemon catches up, and the emulator's
state is compared with the journals (``emulator.compare``). Calls a recorder lost to SIGKILL
inside its flush window are counted separately; a lost call older than the window is a
failure. Exit status 0 only when nothing is missing, duplicated or out of order.

    python scripts/chaos.py --minutes 1 --seed 1
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from comet_journal.emulator.compare import compare
from comet_journal.emulator.server import Emulator

KEY = "chaos-key"
FLUSH_INTERVAL_S = 0.2
WINDOW_SLACK_S = 0.5  # scheduling slack on a loaded 2-core machine

RECORDER = r"""
import json, os, random, sqlite3, sys, time
from comet_journal import Experiment
journal, key, name, seed, rate, big_mb, final = sys.argv[1:8]
rate, big_mb, final = float(rate), int(big_mb), final == "1"
rng = random.Random(int(seed))
step = 0
if os.path.exists(journal):
    conn = sqlite3.connect(journal)
    row = conn.execute("SELECT max(json_extract(payload, '$.step')) FROM calls WHERE "
                       "endpoint='log_metric' AND json_extract(payload, '$.metricName')='loss'"
                       ).fetchone()
    conn.close()
    step = (row[0] + 1) if row and row[0] is not None else 0
exp = Experiment(journal=journal, experiment_key=key, project_name="chaos", workspace="ws",
                 experiment_name=name, flush_interval=%(flush)r)
if big_mb:
    path = journal + ".big.bin"
    with open(path, "wb") as fh:
        for _ in range(big_mb):
            fh.write(os.urandom(1 << 20))
    exp.log_asset(path, file_name="big.bin")
    os.unlink(path)
print("P", step - 1, time.time(), flush=True)
started = time.time()
count = 0
while True:
    for _ in range(10):
        exp.log_metric("loss", rng.random(), step=step)
        step += 1
    count += 10
    if count %% 200 == 0:
        print("P", step - 1, time.time(), flush=True)
        exp.log_parameter("lr", rng.random(), step=step)
        exp.log_other("phase", f"p{step}")
        exp.log_output(f"step {step}\n", stderr=rng.random() < 0.2)
        exp.log_cpu_metrics([rng.uniform(0, 100) for _ in range(4)], step=step)
        exp.log_ram_metrics(16 << 30, rng.randrange(1 << 30, 8 << 30), step=step)
        exp.log_load_metrics(rng.uniform(0, 4), step=step)
    if count %% 1000 == 0:
        exp.add_tags([f"tag{step %% 7}"])
        exp.log_html(f"<p>{step}</p>", clear=rng.random() < 0.1)
        exp.log_asset_data(os.urandom(rng.choice([100, 50_000, 2_500_000])),
                           name=f"a{step}.bin", step=step)
        exp.log_text(f"sample {step}", step=step)
        exp.keep_alive()
    if final and time.time() - started > 1.0:
        break
    time.sleep(10 / rate)
exp.log_metric("final", 1.0, step=step)
exp.stop()
exp.archive()
exp.restore()
exp.end()
print("P", step - 1, time.time(), flush=True)
""" % {"flush": FLUSH_INTERVAL_S}


class Recorder:
    """One recorder 'job' (one journal, one experiment) across its incarnations."""

    def __init__(self, runs: str, name: str, rng: random.Random, rate: float, big_mb: int):
        self.journal = os.path.join(runs, f"{name}.db")
        self.name = name
        self.key = "%032x" % rng.getrandbits(128)
        self.rng = rng
        self.rate = rate
        self.big_mb = big_mb
        self.proc: subprocess.Popen | None = None
        self.progress: list[tuple[int, float]] = []
        self.kills = 0
        self.lost_in_window = 0
        self.lost_outside_window = 0
        self.incarnation = 0

    def start(self, env: dict, final: bool = False) -> None:
        big = self.big_mb if self.incarnation == 0 else 0
        self.incarnation += 1
        self.progress = []
        self.proc = subprocess.Popen(
            [sys.executable, "-c", RECORDER, self.journal, self.key, self.name,
             str(self.rng.randrange(1 << 30)), str(self.rate), str(big), "1" if final else "0"],
            stdout=subprocess.PIPE, text=True, env=env)
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            parts = line.split()
            if len(parts) == 3 and parts[0] == "P":
                self.progress.append((int(parts[1]), float(parts[2])))

    def kill(self) -> None:
        """SIGKILL, then account for calls lost inside and outside the flush window."""
        if self.proc is None or self.proc.poll() is not None:
            return
        killed_at = time.time()
        self.proc.kill()
        self.proc.wait()
        time.sleep(0.05)
        self.kills += 1
        journaled = _max_step(self.journal)
        reported = max((s for s, _t in self.progress), default=-1)
        settled = max((s for s, t in self.progress
                       if t < killed_at - FLUSH_INTERVAL_S - WINDOW_SLACK_S), default=-1)
        if settled > journaled:
            self.lost_outside_window += settled - journaled
        self.lost_in_window += max(0, reported - max(journaled, settled))


def _max_step(journal: str) -> int:
    try:
        conn = sqlite3.connect(journal)
        row = conn.execute("SELECT max(json_extract(payload, '$.step')) FROM calls WHERE "
                           "endpoint='log_metric' AND json_extract(payload, '$.metricName')="
                           "'loss'").fetchone()
        conn.close()
        return row[0] if row and row[0] is not None else -1
    except sqlite3.Error:
        return -1


def faults(minutes: float, seed: int) -> dict:
    run_s = minutes * 60
    outage = min(60.0, max(5.0, run_s / 3))  # a minute in runs of 3 minutes or more
    return {"seed": seed, "rules": [
        {"kind": "status", "status": 503, "rate": 0.04},
        {"kind": "status", "status": 500, "rate": 0.02},
        {"kind": "status", "status": 502, "rate": 0.01},
        {"kind": "status", "status": 504, "rate": 0.01},
        {"kind": "throttle", "retry_after": 0.3, "header": "both", "rate": 0.03},
        {"kind": "drop_before", "rate": 0.03},
        {"kind": "drop_after", "rate": 0.03},
        {"kind": "slow_body", "duration_ms": 200, "rate": 0.01},
        {"kind": "latency", "ms": 2, "jitter_ms": 3, "rate": 0.5},
        {"kind": "outage", "start_s": run_s / 3, "duration_s": outage},
    ]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--rate", type=float, default=1000.0, help="metric points/s per recorder")
    ap.add_argument("--big-asset-mb", type=int, default=101)
    ap.add_argument("--catch-up", type=float, default=180.0, help="seconds allowed at the end")
    ap.add_argument("--workdir", help="keep everything here (default: a temporary directory)")
    ap.add_argument("--json", dest="json_out", help="write the figures to this file")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    work = args.workdir or tempfile.mkdtemp(prefix="chaos-")
    runs = os.path.join(work, "runs")
    os.makedirs(runs, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMET_")}
    env.update(PYTHONPATH=ROOT, COMET_JOURNAL_AUTO_LOG="0")
    started = time.time()
    emu = Emulator(db_path=os.path.join(work, "server.db"), api_key=KEY,
                   store_asset_bytes=False, faults=faults(args.minutes, args.seed)).start()
    upload_args = ["--url", emu.url, "--api-key", KEY, "--backoff-base", "0.05",
                   "--backoff-cap", "1", "--timeout", "10"]
    daemon_cmd = [sys.executable, "-m", "comet_journal.uploader.cli", "watch", *upload_args, "--batch",
                  "--time-slice", "3", "--rescan", "1", runs]
    recorders = [Recorder(runs, "alpha", rng, args.rate, args.big_asset_mb),
                 Recorder(runs, "beta", rng, args.rate, 0)]
    kills = {"recorder": 0, "daemon": 0, "uploader": 0}
    for r in recorders:
        r.start(env)
    daemon_log = open(os.path.join(work, "daemon.log"), "a")
    daemon = subprocess.Popen(daemon_cmd, env=env, stderr=daemon_log)
    oneshot: subprocess.Popen | None = None
    deadline = started + args.minutes * 60
    print(f"chaos: {args.minutes:g} min, seed {args.seed}, emulator {emu.url}, work {work}",
          flush=True)
    while time.time() < deadline:
        time.sleep(rng.uniform(1.0, 4.0))
        action = rng.choice(["recorder", "recorder", "daemon", "uploader", "nothing"])
        if action == "recorder":
            victim = rng.choice(recorders)
            victim.kill()
            kills["recorder"] += 1
            time.sleep(rng.uniform(0.2, 1.5))
            victim.start(env)
        elif action == "daemon":
            daemon.kill()
            daemon.wait()
            kills["daemon"] += 1
            time.sleep(rng.uniform(0.2, 1.5))
            daemon = subprocess.Popen(daemon_cmd, env=env, stderr=daemon_log)
        elif action == "uploader":
            if oneshot is not None and oneshot.poll() is None:
                oneshot.kill()
                oneshot.wait()
                kills["uploader"] += 1
            journal = rng.choice(recorders).journal
            oneshot = subprocess.Popen([sys.executable, "-m", "comet_journal.uploader.cli", *upload_args,
                                        "--wait", "-q", journal], env=env,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # The end: one last kill each, then clean final runs; faults stop; the daemon catches up.
    for r in recorders:
        r.kill()
        kills["recorder"] += 1
    injected = emu.state()["faults"]
    emu.set_faults({"rules": []})
    for r in recorders:
        r.start(env, final=True)
    for r in recorders:
        r.proc.wait(120)
    if oneshot is not None and oneshot.poll() is None:
        oneshot.kill()
        oneshot.wait()
        kills["uploader"] += 1
    paths = [r.journal for r in recorders]
    catch_up_until = time.time() + args.catch_up
    result = compare(paths, emu.state())
    while not result.ok and time.time() < catch_up_until:
        time.sleep(2.0)
        result = compare(paths, emu.state())
    daemon.send_signal(signal.SIGTERM)
    try:
        daemon.wait(30)
    except subprocess.TimeoutExpired:
        daemon.kill()
    state = emu.state()
    emu.stop()
    lost_in = sum(r.lost_in_window for r in recorders)
    lost_out = sum(r.lost_outside_window for r in recorders)
    figures = {
        "calls_journaled": result.journaled, "on_server": result.on_server,
        "missing": sum(result.missing.values()), "duplicated": sum(result.duplicated.values()),
        "out_of_order": result.out_of_order,
        "recorder_kills": kills["recorder"], "daemon_kills": kills["daemon"],
        "uploader_kills": kills["uploader"],
        "lost_in_flush_window": lost_in, "lost_outside_window": lost_out,
        "faults_injected": sum(injected.values()) if isinstance(injected, dict) else injected,
        "faults_by_kind": injected, "requests": state["requests"]["total"],
        "wall_time_s": round(time.time() - started, 1)}
    width = max(len(k) for k in figures)
    print("\nchaos soak result")
    for k, v in figures.items():
        if k != "faults_by_kind":
            print(f"  {k:<{width}}  {v}")
    print(f"  {'faults_by_kind':<{width}}  {json.dumps(injected, sort_keys=True)}")
    ok = result.ok and lost_out == 0
    if not result.ok:
        print("FAILED: " + result.describe())
    if lost_out:
        print(f"FAILED: {lost_out} calls older than the flush window were lost")
    print("OK: every journaled call is on the server exactly once, in order" if ok else "")
    if args.json_out:
        with open(args.json_out, "w") as fh:
            json.dump(figures, fh, indent=2, default=str)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
