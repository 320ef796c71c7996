"""Batch mode's bulk path (uploader/bulk.py): metric points in groups, against a real
emulator. Each test checks exactly-once delivery item by item (assert_server_matches)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time

from test_upload_support import (CLI, FAST, KEY, ROOT, applied_counts, assert_server_matches,
                                 make_journal, new_experiment, upload)
from comet_journal.uploader.config import resolve
from comet_journal.uploader.replay.summary import Options
from comet_journal.uploader.wire.retry import RetryPolicy
from comet_journal.uploader.upload import upload_journal

POLICY = RetryPolicy(base_s=0.01, cap_s=0.05, read_timeout_s=10)


def config(emu):
    return resolve(url=emu.url, api_key=KEY, environ={})


def test_identical_points_never_fly_in_two_batches_at_once(emulator_factory, tmp_path):
    # Identical points (same payload and time) in different batches: if two such batches
    # were in flight together and one failed ambiguously (503: applied or not?), the
    # read-back would count the other's copy and drop a point. 503s on a third of batches.
    path = tmp_path / "same.db"
    with new_experiment(path, "same") as exp:
        for i in range(120):
            exp.log_metric("x", 1.0, step=1, timestamp=1_700_000_000.0)  # all identical
            exp.log_metric("y", float(i), step=i)
    emu = emulator_factory(faults={"seed": 11, "rules": [
        {"route": "batch_metrics", "kind": "status", "status": 503, "rate": 0.3}]})
    summary = upload_journal(str(path), config(emu), Options(
        batch=True, batch_size=6, concurrency=8, policy=POLICY))
    assert emu.state()["faults"]["status"] > 0 and summary.batches >= 40
    assert not summary.rejected
    assert_server_matches(emu, str(path))


def test_batches_never_exceed_batch_size(emulator, tmp_path):
    # a journal page holds far more points than the window: the dispatcher takes groups
    # early while the page is half read, and still no request carries more than batch_size
    path = make_journal(tmp_path / "run.db", points=2000)
    summary = upload_journal(path, config(emulator), Options(
        batch=True, batch_size=10, concurrency=8, policy=POLICY))
    sizes = [len(a["fields"]["values"]) for a in emulator.state()["applied"]
             if a["endpoint"] == "batch_metrics"]
    assert sizes and max(sizes) <= 10 and sum(sizes) == 2001
    assert summary.batches >= 200 and not summary.rejected
    assert_server_matches(emulator, path)


def test_points_with_their_own_time_or_unusual_json_go_as_they_are(emulator, tmp_path):
    path = tmp_path / "odd.db"
    with new_experiment(path, "odd") as exp:
        for i in range(30):
            exp.log_metric("t", float(i), step=i, timestamp=1_700_000_000.5 + i)  # own time
            exp.log_metric("loss", float(i), step=i)
    conn = sqlite3.connect(path)  # valid JSON no recorder writes: whitespace between tokens
    ts = conn.execute("SELECT max(ts_ms) FROM calls").fetchone()[0]
    with conn:
        conn.execute("INSERT INTO calls (endpoint, experiment_id, ts_ms, payload) VALUES "
                     "('log_metric', 1, ?, ?)", (ts, '{"metricName": "ws",\n "metricValue": 2}'))
    conn.close()
    summary = upload_journal(str(path), config(emulator), Options(
        batch=True, batch_size=7, policy=POLICY))
    assert not summary.rejected and applied_counts(emulator)["log_metric"] == 0
    assert_server_matches(emulator, str(path))


def test_groups_keep_to_the_barriers_of_their_experiment(emulator, tmp_path):
    path = tmp_path / "barrier.db"
    with new_experiment(path, "b") as exp:
        for i in range(100):
            exp.log_metric("loss", float(i), step=i)
        exp.archive()  # a barrier: after every earlier call, before every later one
        for i in range(100, 200):
            exp.log_metric("loss", float(i), step=i)
    summary = upload_journal(str(path), config(emulator), Options(
        batch=True, batch_size=30, concurrency=8, policy=POLICY))
    assert not summary.rejected
    applied = emulator.state()["applied"]
    archived = next(a["id"] for a in applied if a["endpoint"] == "experiment_archive")
    for a in applied:
        if a["endpoint"] == "batch_metrics":
            steps = {v["step"] for v in a["fields"]["values"]}
            assert steps <= set(range(100)) and a["id"] < archived or \
                steps <= set(range(100, 200)) and a["id"] > archived, (steps, a["id"])
    assert applied_counts(emulator)["log_metric"] == 0
    assert_server_matches(emulator, str(path))


def test_a_rejected_batch_rejects_its_points_and_retry_rejected_sends_them(emulator,
                                                                           tmp_path):
    path = make_journal(tmp_path / "run.db", points=100)
    emulator.set_faults({"rules": [{"route": "batch_metrics", "kind": "status",
                                    "status": 400, "count": 1}]})
    summary = upload_journal(path, config(emulator), Options(
        batch=True, batch_size=25, policy=POLICY))
    rejected = summary.rejected
    assert rejected and {r["endpoint"] for r in rejected} == {"log_metric"}
    assert {r["status"] for r in rejected} == {400} and len(rejected) <= 25
    assert summary.uploaded + len(rejected) == summary.pending
    again = upload_journal(path, config(emulator), Options(batch=True, policy=POLICY))
    assert again.uploaded == 0 and not again.rejected  # kept, not resent on its own
    retried = upload_journal(path, config(emulator), Options(
        batch=True, retry_rejected=True, policy=POLICY))
    assert retried.uploaded == len(rejected) and not retried.rejected
    assert_server_matches(emulator, path)


def test_kill_9_mid_batch_upload_then_resume(emulator_factory, tmp_path):
    path = make_journal(tmp_path / "run.db", experiments=2, points=1500)
    emu = emulator_factory(faults={"seed": 5, "rules": [
        {"route": "*", "kind": "latency", "ms": 8},
        {"route": "batch_metrics", "kind": "drop_after", "rate": 0.05}]})
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMET_")}
    env["PYTHONPATH"] = ROOT
    for delay in (0.3, 0.1):
        before = applied_counts(emu).get("batch_metrics", 0)
        proc = subprocess.Popen([*CLI, "--url", emu.url, "--api-key", KEY, *FAST, "--batch",
                                 "--batch-size", "40", path], cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30  # a loaded machine may take seconds to start it
        while applied_counts(emu).get("batch_metrics", 0) <= before and \
                time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        time.sleep(delay)  # then kill it mid-upload
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert applied_counts(emu)["batch_metrics"] > 0
    emu.set_faults({"rules": []})
    proc = upload(emu, path, "--batch", "--json", check=0)
    summary = json.loads(proc.stdout)["journals"][0]
    assert summary["skipped_already_uploaded"] > 0
    assert_server_matches(emu, path)
