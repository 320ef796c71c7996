"""The watch daemon's parts: journal discovery by header, file-system type detection,
debounced native and polling events, and live/ended/stale classification."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time

import pytest

from comet_journal import Experiment
from comet_journal.uploader.journal.discovery import iter_journals, journal_of, mount_fs_type, needs_polling
from comet_journal.uploader.watch.fs_events import JournalEvents
from comet_journal.uploader.journal.liveness import ENDED, LIVE, STALE, journal_liveness

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _journal(path, end=True):
    exp = Experiment(journal=str(path), flush_interval=0.02)
    exp.log_metric("m", 1)
    if end:
        exp.end()
    else:
        exp.flush()
    return exp


def test_journals_are_found_by_header_not_by_name(tmp_path):
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    _journal(tmp_path / "a.db")
    _journal(tmp_path / "sub" / "deeper" / "b.db")
    (tmp_path / "fake.db").write_text("not a journal")
    conn = sqlite3.connect(tmp_path / "other.db")
    conn.execute("CREATE TABLE x (y)")
    conn.close()
    _journal(tmp_path / "c.sqlite")  # a journal, but outside the pattern
    found = list(iter_journals([str(tmp_path)], "*.db"))
    assert found == [str(tmp_path / "a.db"), str(tmp_path / "sub" / "deeper" / "b.db")]
    assert list(iter_journals([str(tmp_path)], "*.sqlite")) == [str(tmp_path / "c.sqlite")]


def test_side_files_map_to_their_journal():
    assert journal_of("/d/run.db-wal") == "/d/run.db"
    assert journal_of("/d/run.db-shm") == "/d/run.db"
    assert journal_of("/d/run.db") == "/d/run.db"
    assert journal_of("/d/notes.txt") is None
    assert journal_of("/d/.run.db.123.tmp") is None


def test_network_file_systems_need_polling(tmp_path):
    mounts = tmp_path / "mounts"
    mounts.write_text("rootfs / ext4 rw 0 0\n"
                      "server:/export /shared nfs4 rw 0 0\n"
                      "lustre@tcp:/fs /lustre lustre rw 0 0\n"
                      "tmpfs /shared/tmp tmpfs rw 0 0\n")
    assert mount_fs_type("/shared/runs/x", str(mounts)) == "nfs4"
    assert needs_polling("/shared/runs", str(mounts))
    assert needs_polling("/lustre/project", str(mounts))
    assert not needs_polling("/shared/tmp/x", str(mounts))  # the longest mount point wins
    assert not needs_polling("/home/me", str(mounts))


@pytest.mark.parametrize("poll_interval", [0, 0.2], ids=["native", "poll"])
def test_events_are_debounced_per_journal(tmp_path, poll_interval):
    events = JournalEvents([str(tmp_path)], poll_interval=poll_interval, debounce_s=0.2,
                           max_delay_s=1.0).start()
    try:
        assert events.mode == ("poll" if poll_interval else "native")
        # Polling: no observer walks the tree; the daemon's one periodic scan notifies.
        assert events.observing == (not poll_interval)
        path = tmp_path / "run.db"
        exp = Experiment(journal=str(path), flush_interval=0.01)
        for i in range(20):  # many commits: many raw events
            exp.log_metric("m", i)
            exp.flush()
            if poll_interval:
                events.notify(str(path))  # what each scan that sees it changed does
            time.sleep(0.02)
        changed = set()
        deadline = time.monotonic() + 5
        while str(path) not in changed and time.monotonic() < deadline:
            changed |= events.wait(1.0)
        assert changed == {str(path)}
        exp.end()
        (tmp_path / "unrelated.txt").write_text("x")
        time.sleep(0.5)
        later = events.wait(0.8)
        assert str(tmp_path / "unrelated.txt") not in later
    finally:
        events.stop()


def test_liveness_ended_live_and_stale(tmp_path):
    ended = tmp_path / "ended.db"
    _journal(ended)
    assert journal_liveness(str(ended)).state == ENDED
    running = tmp_path / "running.db"
    exp = _journal(running, end=False)
    state = journal_liveness(str(running))
    assert state.state == LIVE and os.getpid() in state.live_writer_pids
    exp.end()
    # A writer that died without ending: no growth and no live writer -> stale.
    dead = tmp_path / "dead.db"
    code = ("import os, sys\nfrom recorder import Experiment\n"
            "e = Experiment(journal=sys.argv[1], flush_interval=0.01)\n"
            "e.log_metric('m', 1)\ne.flush()\nos._exit(0)\n")
    subprocess.run([sys.executable, "-c", code, str(dead)], check=True, timeout=60,
                   env=dict(os.environ, PYTHONPATH=ROOT))
    assert journal_liveness(str(dead), stale_after_s=3600).state == LIVE  # grew just now
    later = time.time() + 7200
    stale = journal_liveness(str(dead), stale_after_s=3600, now=later)
    assert stale.state == STALE and stale.live_writer_pids == ()
    assert stale.ended_experiments == 0 and stale.experiments == 1


def test_a_scan_stats_a_sealed_run_once_and_sees_every_seal_and_beat(tmp_path, monkeypatch):
    # Each scan costs every journal its signature: on Lustre or NFS each stat is a metadata
    # server round trip, so a sealed run must cost one (its segments directory), not four.
    from comet_journal.recorder.sealing import Sealer
    from comet_journal.uploader.watch.journal_files import journal_signature
    path = str(tmp_path / "run.db")
    exp = Experiment(journal=path, segments=False, flush_interval=0.02)  # sealed by hand
    exp.log_metric("m", 1)
    exp.flush()
    sealer = Sealer(path)
    sealer.seal_now()
    stats = []
    real_stat = os.stat
    monkeypatch.setattr(os, "stat", lambda p, *a, **k: stats.append(p) or real_stat(p, *a, **k))
    before = journal_signature(path)
    assert len(stats) == 1, stats
    exp.log_metric("m", 2)
    exp.flush()  # the live journal grew, nothing sealed: nothing new for another host
    time.sleep(0.01)
    assert journal_signature(path) == before
    time.sleep(0.01)
    sealer.seal_now()  # a new segment and a heartbeat
    sealed = journal_signature(path)
    assert sealed != before
    time.sleep(0.01)
    sealer.seal_now()  # nothing new to seal: the heartbeat alone
    assert journal_signature(path) != sealed
    exp.end()
    unsealed = str(tmp_path / "plain.db")
    _journal(unsealed)
    stats.clear()
    plain = journal_signature(unsealed)
    assert len(stats) == 3 and plain[0] is not None, stats  # segments dir (none), db, WAL
