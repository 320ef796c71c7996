#!/usr/bin/env python3
"""Segments figures: recorder durable rows/s with segments on and off, files per run after
many seals, and the cost of one seal.

    .venv/bin/python scripts/bench_segments.py            # ~1 min on 2 cores
    .venv/bin/python scripts/bench_segments.py --seals 3600

Durable rows/s: one process logs ``--points`` metric points (flush every 1,000), with
``COMET_JOURNAL_SEGMENTS`` off, then on (a 1 s sealer thread running alongside), best of
``--repeat`` (pairs interleaved); also rows per CPU second of the whole process, which the
machine's other load disturbs less (on a spare core the sealer mostly runs beside the loop:
SQLite copies the rows without the GIL). Files per run: ``--seals`` seals of a few rows each (one per simulated second)
through the real :class:`Sealer` with the default fanout; the file count is printed at the
end, with the worst seen along the way.
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

RECORD = r"""
import sys, time
from comet_journal import Experiment
path, points = sys.argv[1], int(sys.argv[2])
exp = Experiment(journal=path, project_name="p", workspace="w", auto_output_logging=False,
                 log_env_details=False, log_git_metadata=False, log_git_patch=False,
                 log_code=False)
started, cpu = time.perf_counter(), time.process_time()
for i in range(points):
    exp.log_metric("loss", 1.0 / (i + 1), step=i)
    if i % 1000 == 999:
        exp.flush()
exp.flush()
print(points / (time.perf_counter() - started), points / (time.process_time() - cpu))
exp.end()
"""


def durable_rows_per_s(points: int, segments: bool) -> tuple[float, float]:
    """(durable rows/s, rows per CPU second of the whole process, sealer included)."""
    with tempfile.TemporaryDirectory() as d:
        env = dict(os.environ, PYTHONPATH=ROOT, COMET_JOURNAL_AUTO_LOG="0",
                   COMET_JOURNAL_SEGMENTS="1" if segments else "0")
        out = subprocess.run([sys.executable, "-c", RECORD, os.path.join(d, "run.db"),
                              str(points)], capture_output=True, text=True, env=env,
                             check=True)
        wall, cpu = out.stdout.strip().splitlines()[-1].split()
        return float(wall), float(cpu)


def files_per_run(seals: int) -> dict:
    sys.path.insert(0, ROOT)
    from comet_journal import Experiment
    from comet_journal.recorder.sealing import Sealer
    from comet_journal.schema.segments import list_segments
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "run.db")
        exp = Experiment(journal=path, project_name="p", workspace="w")
        exp.flush()
        sealer = Sealer(path)
        worst, started = 0, time.perf_counter()
        for i in range(seals):
            exp.log_metric("loss", 0.5, step=i)
            exp.flush()
            sealer.seal_now()
            worst = max(worst, len(list_segments(sealer.directory)))
        took = time.perf_counter() - started
        files = len(list_segments(sealer.directory))
        exp.end()
        sealer.close()
        return {"seals": seals, "files": files, "worst_files": worst,
                "after_end": len(list_segments(sealer.directory)),
                "ms_per_seal_and_flush": round(1000 * took / seals, 2)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--points", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seals", type=int, default=3600)
    args = parser.parse_args()
    offs, ons = [], []
    for _ in range(args.repeat):  # interleaved, so a change in the machine's load hits both
        offs.append(durable_rows_per_s(args.points, False))
        ons.append(durable_rows_per_s(args.points, True))
    off, on = max(o[0] for o in offs), max(o[0] for o in ons)
    cpu_off, cpu_on = max(o[1] for o in offs), max(o[1] for o in ons)
    result = {"durable_rows_per_s_off": round(off), "durable_rows_per_s_on": round(on),
              "ratio_on_off": round(on / off, 3),
              "ratio_per_pair": [round(b[0] / a[0], 3) for a, b in zip(offs, ons)],
              "rows_per_cpu_s_off": round(cpu_off), "rows_per_cpu_s_on": round(cpu_on),
              "cpu_ratio_on_off": round(cpu_on / cpu_off, 3),
              **(files_per_run(args.seals) if args.seals else {})}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
