"""Ranks sharing one experiment in one journal (the DDP recipe), with the daemon tailing it:
calls journaled before the experiment's create wait for it, and the run is finished (moved,
deleted) only when every rank has ended; the end time the server keeps is the last rank's."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
import uuid

from test_upload_support import ROOT, applied_items, journal_items
from test_watch import journaled_state, start_daemon, stop_daemon, wait_until

RANK = """
import os, sys, time
from comet_journal import Experiment
journal, key, rank, seconds, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
while not os.path.exists(go):  # both ranks start at the same moment
    time.sleep(0.001)
exp = Experiment(journal=journal, experiment_key=key, project_name="proj", workspace="ws",
                 flush_interval=0.05)
deadline = time.time() + seconds
i = 0
while time.time() < deadline:
    exp.log_metric(f"loss_rank{rank}", 1.0 / (i + 1), step=i)
    if i % 25 == 0:
        exp.log_parameter(f"lr_rank{rank}", 1.0 / (i + 1))
    i += 1
    time.sleep(0.005)
exp.end()
print(int(time.time() * 1000), flush=True)
"""


def _rank(journal, key, rank, seconds, go):
    return subprocess.Popen([sys.executable, "-c", RANK, str(journal), key, str(rank),
                             str(seconds), str(go)], stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=ROOT, COMET_JOURNAL_AUTO_LOG="0"))


def _end_times(path) -> list[int]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [json.loads(p)["endTimeMillis"] for (p,) in conn.execute(
            "SELECT payload FROM calls WHERE endpoint='experiment_start_end_time' AND "
            "payload LIKE '%endTimeMillis%' ORDER BY seq")]
    finally:
        conn.close()


def test_a_run_is_finished_only_when_every_rank_has_ended(emulator, tmp_path):
    watched, done = tmp_path / "runs", tmp_path / "done"
    watched.mkdir()
    journal, go = watched / "ddp.db", tmp_path / "go"
    key = uuid.uuid4().hex
    daemon = start_daemon(emulator, watched, "--after-upload", f"move:{done}", "--poll", "0.3")
    try:
        ranks = [_rank(journal, key, 0, 6.0, go), _rank(journal, key, 1, 1.0, go)]
        go.write_text("go")
        assert ranks[1].wait(timeout=60) == 0  # rank 1 ends first
        assert wait_until(lambda: any(a["endpoint"] == "log_metric" and "rank1" in json.dumps(
            a["fields"]) for a in emulator.state()["applied"]), timeout=30)
        time.sleep(1.5)  # the daemon has seen rank 1's end by now
        assert ranks[0].poll() is None, "rank 0 should still be logging"
        assert journal.exists(), "moved while rank 0 was still writing"
        assert ranks[0].wait(timeout=60) == 0
        assert wait_until(lambda: (done / "ddp.db").exists(), timeout=40)
    finally:
        for proc in ranks:
            if proc.poll() is None:
                proc.kill()
        stop_daemon(daemon)
    moved = done / "ddp.db"
    assert applied_items(journaled_state(emulator)) == journal_items(str(moved))  # all, once
    ends = _end_times(moved)
    assert len(ends) == 2  # one per rank; rank 0's, the last writer's, is journaled last
    (experiment,) = emulator.state()["experiments"].values()
    assert experiment["endTimeMillis"] == ends[-1] == max(ends)
