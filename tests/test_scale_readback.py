"""Read-back at scale: what is in doubt costs what is in doubt, not the length of the run.

Real uploader processes, SIGKILLed mid-upload, against the emulator with ambiguous drops
(applied, then the connection dropped) and deduplication off; the emulator's request counts
say how many series reads the uploader made.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

from test_upload_support import (CLI, FAST, KEY, ROOT, assert_server_matches, new_experiment,
                                 upload)
from comet_journal.emulator.testing import EmulatorClient

SERIES_READ = "read:experiment/metrics/get-metric"


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMET_")}
    env["PYTHONPATH"] = ROOT
    return env


def _metric_journal(path, points: int) -> str:
    with new_experiment(path, "long") as exp:
        for i in range(points):
            exp.log_metric("loss", i * 0.5, step=i)
    return str(path)


def _summary(emu) -> dict:
    """``GET /emulator/state?summary=1``: counts, usable on a server of any size."""
    client = EmulatorClient(emu)
    try:
        return client.get("/emulator/state", params={"summary": "1"}).json()
    finally:
        client.close()


def _applied_points(emu) -> int:
    return sum(e["metricPoints"].get("loss", 0)
               for e in _summary(emu)["experiments"].values())


def _kill_mid_upload(emu, path, args: list[str], progress, after: float) -> None:
    """Start an uploader, SIGKILL it once ``progress()`` moved and ``after`` s passed."""
    before = progress()
    proc = subprocess.Popen([*CLI, "--url", emu.url, "--api-key", KEY, *FAST, *args, path],
                            cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30  # a loaded machine may take seconds to start it
    while progress() <= before and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(after)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def _series_reads(emu) -> int:
    return _summary(emu)["requests"]["by_route"].get(SERIES_READ, 0)


def _drops(emu) -> int:
    return _summary(emu)["faults"].get("drop_after", 0)


def _run_with_kills(emu, path, args, progress) -> dict:
    for after in (0.4, 0.2):
        _kill_mid_upload(emu, path, args, progress, after)
    proc = upload(emu, path, *args, "--json", check=0, timeout=120)
    return json.loads(proc.stdout)["journals"][0]


def test_batch_200k_points_with_drops_and_two_kills_reads_what_is_in_doubt(
        emulator_factory, tmp_path):
    path = _metric_journal(tmp_path / "long.db", 200_000)
    emu = emulator_factory(faults={"seed": 3, "rules": [
        {"route": "batch_metrics", "kind": "drop_after", "rate": 0.02}]})
    args = ["--batch", "--batch-size", "500", "--concurrency", "4"]
    summary = _run_with_kills(emu, path, args, lambda: _applied_points(emu))
    assert summary["skipped_already_uploaded"] > 0  # the kills left work already done
    drops = _drops(emu)
    assert drops > 0
    assert _applied_points(emu) == 200_000
    assert _summary(emu)["applied"]["batch_metrics"] >= 400
    # In doubt: each dropped batch (one pass each, at most) and, per run after a kill, the
    # batches in flight (one snapshot of the series per run): never per point or per batch.
    reads = _series_reads(emu)
    assert 0 < reads <= drops + 3, (reads, drops)
    assert_server_matches(emu, path)


def test_per_call_with_drops_and_two_kills_reads_at_most_once_per_call_in_doubt(
        emulator_factory, tmp_path):
    path = _metric_journal(tmp_path / "calls.db", 4_000)
    emu = emulator_factory(faults={"seed": 4, "rules": [
        {"route": "log_metric", "kind": "drop_after", "rate": 0.02}]})
    args = ["--concurrency", "8"]
    _run_with_kills(emu, path, args, lambda: _applied_points(emu))
    drops = _drops(emu)
    assert drops > 0
    assert _applied_points(emu) == 4_000
    reads = _series_reads(emu)
    assert 0 < reads <= drops + 3, (reads, drops)
    assert_server_matches(emu, path)
