#!/usr/bin/env python3
"""One OfflineExperiment archive uploaded three ways, each to a fresh emulator process:
``comet upload`` (the official tool), ``comet-upload ARCHIVE.zip`` and ``comet-upload --batch
ARCHIVE.zip``. Prints what reached the server (metric points, parameter values, output lines,
assets), wall time and HTTP requests, and saves them to ``bench-results/import.json``.

The run: ``--metrics`` metrics x ``--steps`` points, the parameter ``lr`` changed every 1,000
steps, ``--lines`` printed lines (half on stderr), 20 assets.

    .venv/bin/python scripts/bench_import.py                       # 3 x 100,000 points
    .venv/bin/python scripts/bench_import.py --steps 10000 --lines 2000   # quick
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))

from bench_all import KEY, Emulator, _env, official_available  # noqa: E402

RECORD = r'''
import os, sys, comet_ml
out, steps, lines, n_metrics = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
from bench_recorder import QUIET_OFFLINE_OPTIONS as quiet
quiet = dict(quiet, auto_output_logging="simple")
exp = comet_ml.OfflineExperiment(offline_directory=out, project_name="bench", workspace="ws",
                                 **quiet)
every = max(1, steps // max(1, lines))
for step in range(steps):
    if step % 1000 == 0:
        exp.log_parameter("lr", 0.1 / (step + 1), step=step)
    for j in range(n_metrics):
        exp.log_metric(f"metric_{j}", 1.0 / (step + 1 + j), step=step)
    if step % every == 0:
        print("line", step, file=sys.stderr if step % (2 * every) else sys.stdout)
for i in range(20):
    exp.log_asset_data(os.urandom(10_000), name=f"asset_{i}.bin", step=i)
exp.end()
print(exp.get_key(), file=sys.__stdout__)
'''


def record(tmp: str, steps: int, lines: int, metrics: int) -> tuple[str, float]:
    out = os.path.join(tmp, "offline")
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", RECORD, out, str(steps), str(lines),
                           str(metrics)], env=dict(_env(), PYTHONPATH=ROOT + os.pathsep
                                                   + os.path.join(ROOT, "scripts")),
                          capture_output=True, text=True, check=True)
    key = proc.stdout.strip().splitlines()[-1]
    return os.path.join(out, f"{key}.zip"), time.perf_counter() - started


def delivered(db: str) -> dict:
    """What the emulator applied, counted from its own database."""
    conn = sqlite3.connect(db)
    try:
        def count(sql: str) -> int:
            return int(conn.execute(sql).fetchone()[0] or 0)
        return {
            "experiments": count("SELECT count(*) FROM experiments"),
            "points": count("SELECT count(*) FROM applied WHERE endpoint='log_metric'")
            + count("SELECT sum(json_array_length(fields, '$.values')) FROM applied "
                    "WHERE endpoint='batch_metrics'"),
            "parameter_values": count("SELECT count(*) FROM applied WHERE "
                                      "endpoint='log_parameter' AND fields LIKE '%\"lr\"%'")
            + count("SELECT count(*) FROM applied, json_each(applied.fields, '$.values') v "
                    "WHERE endpoint='batch_parameters' AND "
                    "json_extract(v.value, '$.parameterName')='lr'"),
            "output_lines": count("SELECT sum(json_array_length(fields, '$.outputLines')) "
                                  "FROM applied WHERE endpoint IN ('log_output', "
                                  "'batch_output')"),
            "assets": count("SELECT count(*) FROM assets"),
        }
    finally:
        conn.close()


def upload(tmp: str, name: str, command: list[str], env: dict) -> dict:
    db = os.path.join(tmp, f"emu-{name}.db")
    emu = Emulator(db)
    env = dict(env)
    if "{url}" in " ".join(command):
        command = [c.replace("{url}", emu.url) for c in command]
    env.setdefault("COMET_URL_OVERRIDE", emu.url + "/clientlib/")
    started = time.perf_counter()
    proc = subprocess.run(command, cwd=tmp, env=env, capture_output=True, text=True,
                          timeout=3600)
    wall = time.perf_counter() - started
    requests_total = emu.stop()
    return {"tool": name, "exit_code": proc.returncode, "wall_s": round(wall, 2),
            "requests": requests_total, **delivered(db),
            "error": proc.stderr[-400:] if proc.returncode else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--metrics", type=int, default=3)
    parser.add_argument("--lines", type=int, default=10_000)
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench-import-")
    archive, record_s = record(tmp, args.steps, args.lines, args.metrics)
    logged = {"points": args.steps * args.metrics, "parameter_values": -(-args.steps // 1000),
              "output_lines": "see messages.json", "assets": 20}
    with __import__("zipfile").ZipFile(archive) as zf:
        logged["output_lines"] = sum(1 for line in zf.read("messages.json").splitlines()
                                     if b'"standard_output"' in line)
    print(f"archive: {os.path.getsize(archive):,} bytes, recorded in {record_s:.1f} s; "
          f"logged: {logged}", flush=True)
    env = dict(_env(), COMET_API_KEY=KEY, COMET_CONFIG=os.path.join(tmp, "no.config"))
    ours = [sys.executable, "-m", "comet_journal.uploader.cli", "--url", "{url}", "--api-key",
            KEY, "--deadline", "600"]
    results = []
    comet = official_available()
    if comet:
        results.append(upload(tmp, "comet upload", [comet, "upload", archive], env))
    results.append(upload(tmp, "comet-upload ARCHIVE.zip",
                          [*ours, "--state", os.path.join(tmp, "state1"), archive], env))
    results.append(upload(tmp, "comet-upload --batch ARCHIVE.zip",
                          [*ours, "--batch", "--state", os.path.join(tmp, "state2"), archive],
                          env))
    for r in results:
        print(f"  {r['tool']:<34} {r['wall_s']:>7.1f} s {r['requests']:>8,} requests  "
              f"points {r['points']:,}  lr values {r['parameter_values']:,}  "
              f"output lines {r['output_lines']:,}  assets {r['assets']}  "
              f"experiments {r['experiments']}  exit {r['exit_code']}", flush=True)
    os.makedirs(os.path.join(ROOT, "bench-results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench-results", "import.json"), "w") as fh:
        json.dump({"logged": logged, "record_s": record_s, "results": results}, fh, indent=1)


if __name__ == "__main__":
    main()
