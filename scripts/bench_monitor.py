#!/usr/bin/env python3
"""CPU overhead of the system monitor (recorder.monitor), as a percentage of one core.

Two measurements:

1. Cost per sample: the monitor runs with a shortened interval until it has taken
   ``--samples`` rounds (CPU per core, RAM, load, GPU when NVML works, plus the step/epoch
   lookup and journaling). Its thread's CPU time (``time.thread_time`` inside the thread)
   and the process's extra CPU time (including the journal writer's share) are divided by
   the rounds and extrapolated to the default 30 s interval.
2. Real time (``--seconds``, 0 to skip): the process's CPU time over a run at the public
   minimum interval (1 s), against the same run with the monitor off.

Usage: .venv/bin/python scripts/bench_monitor.py [--samples 300] [--seconds 10]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.pop("COMET_JOURNAL_AUTO_LOG", None)

from comet_journal.recorder import Experiment, monitor

ONLY_MONITOR = dict(auto_output_logging=None, log_env_details=True, log_env_host=False,
                    log_git_metadata=False, log_git_patch=False, log_code=False,
                    keep_alive_interval=None)


def per_sample(directory: str, rounds: int, interval: float) -> dict:
    monitor.min_interval_s = 0.001
    exp = Experiment(journal=os.path.join(directory, "per-sample.db"),
                     system_monitor_interval=interval, **ONLY_MONITOR)
    for step in range(100):
        exp.log_metric("loss", 1.0 / (step + 1), step=step)  # a step for the lookup to find
    sampler = exp._auto.monitor
    while sampler.samples < 2:  # skip the start-up (psutil import, NVML init, first window)
        time.sleep(0.01)
    thread0, samples0, cpu0, wall0 = sampler.cpu_time_s, sampler.samples, time.process_time(), \
        time.monotonic()
    while sampler.samples < samples0 + rounds:
        time.sleep(0.05)
    thread_s, n = sampler.cpu_time_s - thread0, sampler.samples - samples0
    process_s, wall_s = time.process_time() - cpu0, time.monotonic() - wall0
    stats = sampler.stats()
    exp.end()
    monitor.min_interval_s = monitor.MIN_INTERVAL_S
    # The writer's idle wake-ups (every flush_interval) happen with or without the monitor.
    return {"rounds": n, "thread_ms": 1000 * thread_s / n, "process_ms": 1000 * process_s / n,
            "wall_s": wall_s, "probes": sorted(stats["journaled"]), "gpu": "gpu" in
            stats["journaled"]}


def real_time(directory: str, seconds: float, with_monitor: bool) -> float:
    exp = Experiment(journal=os.path.join(directory, f"rt-{with_monitor}.db"),
                     system_monitor_interval=1.0 if with_monitor else None, **ONLY_MONITOR)
    time.sleep(0.5)
    cpu0, wall0 = time.process_time(), time.monotonic()
    time.sleep(seconds)
    used = (time.process_time() - cpu0) / (time.monotonic() - wall0)
    exp.end()
    return 100 * used


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--interval", type=float, default=0.01,
                        help="shortened interval for the per-sample measurement (s)")
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        r = per_sample(directory, args.samples, args.interval)
        default = monitor.DEFAULT_INTERVAL_S
        print(f"per sample ({r['rounds']} rounds, probes: {', '.join(r['probes'])}):")
        print(f"  monitor thread  {r['thread_ms']:.3f} ms CPU per round")
        print(f"  whole process   {r['process_ms']:.3f} ms CPU per round (incl. journal writer)")
        for label, ms in (("monitor thread", r["thread_ms"]), ("whole process", r["process_ms"])):
            print(f"  => at the default {default:g} s interval ({label}): "
                  f"{ms / 1000 / default * 100:.4f} % of one core "
                  f"(at the 1 s minimum: {ms / 1000 * 100:.3f} %)")
        if args.seconds > 0:
            off = real_time(directory, args.seconds, False)
            on = real_time(directory, args.seconds, True)
            print(f"real time, {args.seconds:g} s at a 1 s interval: process CPU {on:.3f} % "
                  f"with the monitor, {off:.3f} % without: monitor ~{on - off:.3f} % of one "
                  f"core (~{(on - off) / default:.4f} % at {default:g} s)")
        target = r["process_ms"] / 1000 / default * 100
        print(f"target < 1 % of one core at the default interval: "
              f"{'met' if target < 1 else 'NOT met'} ({target:.4f} %)")


if __name__ == "__main__":
    main()
