"""Never break the host: background failures are reported and counted, never raised or hung;
the queue is bounded without dropping data."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

from journal_helpers import count, integrity_ok, rows
from comet_journal import Experiment

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_disk_full_is_reported_counted_and_does_not_hang(tmp_path, capfd):
    journal = str(tmp_path / "run.db")
    exp = Experiment(journal=journal, max_journal_bytes=256 * 1024, max_queue=1000,
                     flush_interval=0.02)
    started = time.monotonic()
    for i in range(30_000):  # far more than 256 KiB of rows
        exp.log_metric("m", float(i), step=i)
    elapsed = time.monotonic() - started
    stats = exp.end(timeout=10)
    assert elapsed < 30  # the loop kept going
    assert stats["lost"] > 0 and stats["journaled"] > 0
    assert stats["journaled"] + stats["lost"] == 30_000 + 3  # every call accounted for
    assert "full" in stats["last_error"]
    err = capfd.readouterr().err
    assert err.count("cannot write to the journal") == 1  # reported once, not per call
    assert "could not be journaled" in err or "calls are being lost" in err
    assert integrity_ok(journal)


def test_deleted_journal_is_reported_not_raised(tmp_path, capfd):
    journal = str(tmp_path / "run.db")
    exp = Experiment(journal=journal, flush_interval=0.02)
    exp.log_metric("m", 1)
    assert exp.flush(5)
    os.unlink(journal)
    for i in range(100):
        exp.log_metric("m", i)
    assert exp.flush(5) is False
    stats = exp.end(timeout=5)
    assert stats["lost"] >= 100
    assert "deleted" in capfd.readouterr().err


LOCKER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("PRAGMA busy_timeout=10000")
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("COMMIT")
"""


def test_locked_journal_neither_blocks_the_loop_nor_loses_calls(tmp_path, capfd):
    journal = str(tmp_path / "run.db")
    exp = Experiment(journal=journal, flush_interval=0.02)
    exp.log_metric("m", -1)
    exp.flush(5)
    locker = subprocess.Popen([sys.executable, "-c", LOCKER, journal, "2.5"],
                              stdout=subprocess.PIPE, text=True)
    assert locker.stdout.readline().strip() == "locked"
    started = time.monotonic()
    for i in range(2000):
        exp.log_metric("m", i, step=i)
    assert time.monotonic() - started < 1.0  # not waiting on the lock
    locker.wait(30)
    stats = exp.end(timeout=60)
    assert stats["lost"] == 0
    steps = [r["payload"].get("step") for r in rows(journal, "log_metric")]
    assert steps[1:] == list(range(2000))


def test_bounded_queue_slows_the_caller_and_drops_nothing(tmp_path):
    journal = str(tmp_path / "run.db")
    exp = Experiment(journal=journal, max_queue=500, flush_interval=0.01)
    peak = 0
    stop = threading.Event()

    def watch():
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, len(exp._writer.queue))
            time.sleep(0.0005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    for i in range(100_000):
        exp.log_metric("m", i, step=i)
    stop.set()
    watcher.join()
    stats = exp.end()
    assert stats["lost"] == 0
    assert peak <= 500 + 1  # bounded (one call may sit above the mark while it waits)
    assert count(journal, "log_metric") == 100_000


def test_end_reports_calls_that_could_not_be_journaled(tmp_path, caplog):
    journal = str(tmp_path / "run.db")
    exp = Experiment(journal=journal, max_journal_bytes=64 * 1024, flush_interval=0.02)
    for i in range(20_000):
        exp.log_metric("metric-with-a-long-name", float(i), step=i)
    stats = exp.end(timeout=10)
    assert stats["lost"] > 0
    assert f"{stats['lost']} calls of experiment {exp.key} could not be journaled" in caplog.text
