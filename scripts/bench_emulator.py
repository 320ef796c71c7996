#!/usr/bin/env python3
"""Benchmark the emulator: small writes per second and metrics per second through batches.

Runs ``comet-emulator`` in its own process (as the uploader's benchmarks do), then drives it
from this one over one keep-alive connection:

- small writes: ``write/experiment/metric`` POSTs, one metric each, with the stdlib
  ``http.client`` (the server's own cost) and with a ``requests.Session`` (what a client
  built on requests sees);
- batches: gzip JSON ``batch/logger/experiment/metric`` POSTs of 1000 values each.

Targets (issue #3, on a 2-core machine): at least 1,500 small writes/s and 300,000 metrics/s.

Usage: scripts/bench_emulator.py [--writes N] [--batches N] [--batch-size N] [--latency-ms MS]
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid

import requests

API_KEY = "bench-key"
HEADERS = {"Authorization": API_KEY, "Content-Type": "application/json"}


def start_emulator(db_path: str, latency_ms: float | None) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "comet_journal.emulator.cli", "--port", "0", "--db", db_path,
           "--api-key", API_KEY]
    if latency_ms:
        cmd += ["--latency-ms", str(latency_ms)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True,
                            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    line = proc.stdout.readline().strip()
    if not line.startswith("listening on "):
        proc.kill()
        raise SystemExit(f"the emulator did not start: {line!r}")
    return proc, line[len("listening on "):]


def post(conn: http.client.HTTPConnection, path: str, body: bytes, headers: dict) -> bytes:
    conn.request("POST", path, body=body, headers=headers)
    response = conn.getresponse()
    data = response.read()
    if response.status != 200:
        raise SystemExit(f"POST {path} answered {response.status}: {data[:200]!r}")
    return data


def create_experiment(conn: http.client.HTTPConnection, key: str) -> None:
    body = json.dumps({"experimentKey": key, "projectName": "bench", "teamName": "bench",
                       "offline": True}).encode()
    post(conn, "/clientlib/logger/add/run", body, HEADERS)


def bench_small_writes(conn: http.client.HTTPConnection, key: str, n: int) -> float:
    started = time.perf_counter()
    for i in range(n):
        body = json.dumps({"experimentKey": key, "metricName": "loss", "metricValue": i * 0.001,
                           "step": i, "timestamp": 1_700_000_000_000 + i}).encode()
        post(conn, "/api/rest/v2/write/experiment/metric", body, HEADERS)
    return n / (time.perf_counter() - started)


def bench_small_writes_requests(url: str, key: str, n: int) -> float:
    session = requests.Session()
    session.headers["Authorization"] = API_KEY
    started = time.perf_counter()
    for i in range(n):
        response = session.post(url + "/api/rest/v2/write/experiment/metric",
                                json={"experimentKey": key, "metricName": "acc",
                                      "metricValue": i * 0.001, "step": i})
        response.raise_for_status()
    return n / (time.perf_counter() - started)


def bench_batches(conn: http.client.HTTPConnection, key: str, n: int, size: int) -> float:
    bodies = []
    for b in range(4):  # a few distinct bodies, built before the clock starts
        values = [{"metricName": f"m{j % 10}", "metricValue": (b * size + j) * 0.5,
                   "step": b * size + j, "epoch": None, "context": None,
                   "timestamp": 1_700_000_000_000 + j} for j in range(size)]
        bodies.append(gzip.compress(json.dumps({"experimentKey": key, "values": values})
                                    .encode(), compresslevel=1))
    headers = {**HEADERS, "Content-Encoding": "gzip"}
    started = time.perf_counter()
    for i in range(n):
        post(conn, "/clientlib/batch/logger/experiment/metric", bodies[i % len(bodies)], headers)
    return n * size / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--writes", type=int, default=5000)
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--latency-ms", type=float, default=None,
                        help="run with this injected latency (shows the WAN emulation)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_emulator(os.path.join(tmp, "bench.db"), args.latency_ms)
        try:
            host, port = url.removeprefix("http://").rsplit(":", 1)
            conn = http.client.HTTPConnection(host, int(port))
            key = uuid.uuid4().hex
            create_experiment(conn, key)
            bench_small_writes(conn, key, 200)  # warm up
            writes = bench_small_writes(conn, key, args.writes)
            writes_requests = bench_small_writes_requests(url, key, min(args.writes, 3000))
            metrics = bench_batches(conn, key, args.batches, args.batch_size)
            conn.close()
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    print(f"cpus: {os.cpu_count()}  latency: {args.latency_ms or 0} ms")
    targets = not args.latency_ms
    print(f"small writes, one keep-alive http.client connection: {writes:,.0f} req/s"
          + (" (target 1,500)" if targets else ""))
    print(f"small writes, one requests.Session:                  {writes_requests:,.0f} req/s")
    print(f"batch metrics ({args.batch_size}/request, gzip):           {metrics:,.0f} metrics/s"
          + (" (target 300,000)" if targets else ""))


if __name__ == "__main__":
    main()
