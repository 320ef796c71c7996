"""Two processes writing one directory run (DDP ranks sharing an experiment, the same
journal directory): each seals segments named with its own writer id, neither replaces nor
removes the other's while writing, and the private copy assembled from all of them holds
every call of both exactly once, as the daemon uploads it (a directory run seals by
default)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

from comet_journal.schema.segments import list_segments, segments_dir
from comet_journal.uploader.journal.mirror import Mirror, mirror_path
from test_upload_support import CLI, FAST, KEY, ROOT, assert_server_matches

RANK = r"""
import sys, time
from comet_journal import Experiment
runs, key, rank = sys.argv[1], sys.argv[2], int(sys.argv[3])
exp = Experiment(journal=runs + "/", experiment_key=key, project_name="p", workspace="w")
for step in range(300):
    exp.log_metric(f"loss_rank{rank}", 1.0 / (step + 1), step=step)
    if step % 20 == 19:
        exp.flush()
        time.sleep(0.15)  # about 2 s: several seal ticks of both ranks
exp.end()
"""


def test_two_ranks_sealing_one_journal_deliver_every_call_once(emulator, tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    key = "a" * 32
    path = str(runs / f"{key}.db")
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMET_")}
    env.update(PYTHONPATH=ROOT, COMET_JOURNAL_AUTO_LOG="0")  # segments: the directory default
    ranks = [subprocess.Popen([sys.executable, "-c", RANK, str(runs), key, str(rank)], env=env)
             for rank in (0, 1)]
    writers_seen: set[str] = set()
    while any(r.poll() is None for r in ranks):
        writers_seen |= {s.writer for s in list_segments(segments_dir(path))}
        time.sleep(0.05)
    assert [r.returncode for r in ranks] == [0, 0]
    assert len(writers_seen - {""}) == 2, writers_seen  # each rank sealed under its own name
    mirror = Mirror(segments_dir(path), mirror_path(segments_dir(path)))
    mirror.update()
    assert mirror.ended() and mirror.waiting is None
    assert _calls(mirror.path) == _calls(path)  # both ranks' calls, none twice, none lost
    assert _count(mirror.path, "SELECT count(DISTINCT seq) FROM calls") == _calls(path)
    for rank in (0, 1):
        assert _count(mirror.path, "SELECT count(*) FROM calls WHERE payload LIKE "
                      f"'%loss_rank{rank}%'") == 300
    daemon_env = dict(env, COMET_JOURNAL_STATE=os.environ["COMET_JOURNAL_STATE"])
    daemon = subprocess.Popen([*CLI, "watch", "--url", emulator.url, "--api-key", KEY, *FAST,
                               "--poll", "0.3", "--json-log", str(runs)],
                              stderr=subprocess.PIPE, text=True, env=daemon_env)
    try:  # the daemon reads the run through the same private copy
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and not _uploaded(emulator, mirror.path):
            time.sleep(0.3)
        time.sleep(1.5)  # its last turn marks the run uploaded after the last answer
    finally:
        daemon.send_signal(signal.SIGTERM)
        _out, err = daemon.communicate(timeout=20)
    assert_server_matches(emulator, mirror.path)  # exactly once on the server
    events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    states = {e.get("state") for e in events if e.get("journal") == path}
    assert "uploaded" in states, err[-2000:]  # the run ended (both ranks): marked uploaded


def _uploaded(emu, copy) -> bool:
    try:
        assert_server_matches(emu, copy)
    except AssertionError:
        return False
    return True


def _count(path, sql) -> int:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchone()[0]
    finally:
        conn.close()


def _calls(path) -> int:
    return _count(path, "SELECT count(*) FROM calls")


def test_a_writers_end_is_recorded_beside_the_segments_when_no_call_carries_its_meta(tmp_path):
    # The race the two-rank run can meet: a rank's end row is sealed (by itself or another
    # rank) before it marks itself ended in the journal's meta, and no later call brings that
    # meta into a segment. The ended-writers file beside the segments says it instead.
    from comet_journal.schema.segments import ended_writers
    from comet_journal.uploader.journal.liveness import ENDED, LIVE, sealed_liveness

    runs = tmp_path / "runs"
    runs.mkdir()
    key = "b" * 32
    path = str(runs / f"{key}.db")
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMET_")}
    env.update(PYTHONPATH=ROOT, COMET_JOURNAL_AUTO_LOG="0")
    rank = subprocess.run([sys.executable, "-c", RANK, str(runs), key, "0"], env=env,
                          timeout=60)
    assert rank.returncode == 0
    directory = segments_dir(path)
    recorded = ended_writers(directory)
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        keys = {k for (k,) in conn.execute("SELECT key FROM meta WHERE key LIKE 'writer/%'")}
    finally:
        conn.close()
    assert keys and recorded == keys  # the writer published its own end
    mirror = Mirror(directory, str(tmp_path / "state" / "copy.db"))
    mirror.update()
    conn = sqlite3.connect(mirror.path)  # the private copy, as a stale seal left it
    try:
        conn.execute("UPDATE meta SET value = 'live' WHERE key LIKE 'writer/%'")
        conn.commit()
    finally:
        conn.close()
    assert sealed_liveness(mirror.path, True, 0.0, 30.0).state == LIVE
    assert sealed_liveness(mirror.path, True, 0.0, 30.0, recorded).state == ENDED
