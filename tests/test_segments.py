"""Sealed segments: the writer's host seals what it committed into immutable, self-verifying
files; a reader elsewhere assembles a private copy from them only (torn or missing segments
wait), compaction keeps the file count bounded, and a SIGKILLed writer loses nothing it
committed more than a second before the kill."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

from comet_journal.recorder.sealing import Sealer
from comet_journal.schema.journal import Journal
from comet_journal.schema.segments import (ENDED_FILE_NAME, chain, list_segments, read_segment,
                                           SegmentNotReady)
from comet_journal.uploader.config import resolve
from comet_journal.uploader.journal.mirror import Mirror, mirror_path
from comet_journal.uploader.replay.summary import Options
from comet_journal.uploader.upload import upload_journal
from comet_journal.uploader.wire.retry import RetryPolicy
from test_upload_support import KEY, ROOT, assert_server_matches, make_journal

import pytest


def _rows(path, sql):
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def _same_content(journal, copy) -> None:
    for sql in ("SELECT seq, endpoint, experiment_id, ts_ms, payload FROM calls ORDER BY seq",
                "SELECT id, key FROM experiments ORDER BY id",
                "SELECT sha256, size FROM blobs ORDER BY sha256",
                "SELECT sha256, length(data) FROM chunks ORDER BY sha256",
                "SELECT value FROM meta WHERE key='journal_id'"):
        assert _rows(journal, sql) == _rows(copy, sql), sql


def test_segments_sealed_as_a_run_grows_make_an_identical_copy_that_uploads(emulator,
                                                                              tmp_path):
    path = str(tmp_path / "runs" / "run.db")
    make_journal(path, points=20)
    sealer = Sealer(path)
    first = sealer.seal_now()
    assert sealer.seal_now() is None  # nothing new: no file
    make_journal(path, points=20, assets=True)  # a second experiment, with a 2.5 MB asset
    second = sealer.seal_now()
    assert first and second and len(list_segments(sealer.directory)) == 2
    mirror = Mirror(sealer.directory, mirror_path(sealer.directory))
    assert mirror.update() == _rows(path, "SELECT count(*) FROM calls")[0][0]
    assert mirror.update() == 0  # applied once
    _same_content(path, mirror.path)
    summary = upload_journal(mirror.path, resolve(url=emulator.url, api_key=KEY, environ={}),
                             Options(policy=RetryPolicy(base_s=0.01, cap_s=0.05)))
    assert summary.rejected == [] and not summary.more_pending
    assert_server_matches(emulator, mirror.path)


def test_a_torn_or_missing_segment_is_waited_on_never_read_or_skipped(tmp_path):
    path = str(tmp_path / "run.db")
    make_journal(path, points=5)
    sealer = Sealer(path)
    sealed = [sealer.seal_now()]
    for _ in range(2):
        make_journal(path, points=5)
        sealed.append(sealer.seal_now())
    middle = sealed[1]
    whole = open(middle, "rb").read()
    with open(middle, "wb") as f:  # what another host may see: the name, half the bytes
        f.write(whole[: len(whole) // 2])
    with pytest.raises(SegmentNotReady):
        read_segment(middle)
    stale = bytearray(whole)  # every byte there, one page not up to date: a stale cache
    stale[len(whole) - 700] ^= 0x01
    with open(middle, "wb") as f:
        f.write(stale)
    with pytest.raises(SegmentNotReady):
        read_segment(middle)
    with open(middle, "wb") as f:
        f.write(whole[: len(whole) // 2])
    mirror = Mirror(sealer.directory, str(tmp_path / "state" / "copy.db"))
    first_count = _rows(sealed[0], "SELECT count(*) FROM calls")[0][0]
    assert mirror.update() == first_count and mirror.waiting  # stopped before the torn one
    os.remove(middle)  # a gap: the next segment is there, the one before it is not
    assert [s.path for s in chain(sealer.directory)] == [sealed[0]]
    assert mirror.update() == 0 and mirror.end() == first_count
    with open(middle, "wb") as f:
        f.write(whole)
    assert mirror.update() > 0
    _same_content(path, mirror.path)


def test_the_copy_appears_whole_to_readers_of_the_state_directory(tmp_path, monkeypatch):
    # status and inspect read the daemon's copy while it is being made: at its name there is
    # either nothing or a journal with its tables, never an empty file.
    path = str(tmp_path / "run.db")
    make_journal(path, points=5)
    sealer = Sealer(path)
    sealer.seal_now()
    copy = str(tmp_path / "state" / "copy.db")
    seen = []
    real_open = Journal.open

    def open_and_look(target, *args, **kwargs):
        journal = real_open(target, *args, **kwargs)
        if os.path.exists(copy):  # what a reader of the copy would open now
            seen.append(_rows(copy, "SELECT name FROM sqlite_master WHERE name = 'calls'"))
        else:
            seen.append("absent")
        return journal

    monkeypatch.setattr(Journal, "open", staticmethod(open_and_look))
    mirror = Mirror(sealer.directory, copy)
    assert mirror.update() > 0
    assert seen == ["absent"]
    assert os.listdir(os.path.dirname(copy)) == ["copy.db"]  # no temp file left
    _same_content(path, copy)


def test_compaction_bounds_the_file_count_and_the_end_leaves_one_segment(tmp_path):
    path = str(tmp_path / "run.db")
    make_journal(path, points=2)
    sealer = Sealer(path, fanout=4)
    for _ in range(24):
        make_journal(path, points=2)
        sealer.seal_now()
        assert len(list_segments(sealer.directory)) <= 3 * 3  # (fanout - 1) x levels
    reader = Mirror(sealer.directory, str(tmp_path / "state" / "mid.db"))
    reader.update()
    _same_content(path, reader.path)  # every seq, in a handful of files
    sealer.close()
    assert len(list_segments(sealer.directory)) == 1
    assert os.path.exists(os.path.join(sealer.directory, ENDED_FILE_NAME))
    copy = Mirror(sealer.directory, str(tmp_path / "state" / "end.db"))
    copy.update()
    _same_content(path, copy.path)
    assert copy.ended()


WRITER = r"""
import sys, time
from comet_journal import Experiment
from comet_journal.recorder.sealing import Sealer
path = sys.argv[1]
exp = Experiment(journal=path, project_name="p", workspace="w")
exp.flush()
sealer = Sealer(path, interval_s=0.3).start()
step = 0
while True:
    for _ in range(20):
        exp.log_metric("loss", 1.0 / (step + 1), step=step)
        step += 1
    exp.flush()
    print(step - 1, flush=True)   # every step up to here is committed
    time.sleep(0.02)
"""


def test_a_sigkilled_writer_loses_nothing_committed_a_second_before_the_kill(tmp_path):
    path = str(tmp_path / "run.db")
    writer = subprocess.Popen([sys.executable, "-c", WRITER, path], stdout=subprocess.PIPE,
                              text=True, env=dict(os.environ, PYTHONPATH=ROOT))
    committed: list[tuple[float, int]] = []
    started = time.monotonic()
    while time.monotonic() - started < 2.5:
        line = writer.stdout.readline()
        if not line:
            break
        committed.append((time.monotonic(), int(line)))
    killed_at = time.monotonic()
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    assert committed, "the writer did not start"
    mirror = Mirror(path + ".segments", str(tmp_path / "state" / "copy.db"))
    mirror.update()
    steps = {int(r[0]) for r in _rows(mirror.path, "SELECT json_extract(payload, '$.step') "
                                                   "FROM calls WHERE endpoint='log_metric'")}
    due = max(step for at, step in committed if at < killed_at - 1.0)
    assert set(range(due + 1)) <= steps  # everything committed 1 s before the kill
    assert not mirror.ended()  # a killed run is not marked finished
    beat = mirror.heartbeat()
    time.sleep(0.8)
    assert beat and mirror.heartbeat() == beat  # and its heartbeat stopped
    shutil.rmtree(tmp_path / "state", ignore_errors=True)


TERMINATED = r"""
import sys, time
from comet_journal import Experiment
exp = Experiment(journal=sys.argv[1], project_name="p", workspace="w")
for step in range(50):
    exp.log_metric("loss", 0.5, step=step)
exp.flush()
print("ready", flush=True)
while True:
    time.sleep(0.05)
"""


def test_sigterm_seals_everything_and_records_the_end(tmp_path):
    path = str(tmp_path / "runs" / "run.db")
    env = dict(os.environ, PYTHONPATH=ROOT, COMET_JOURNAL_SEGMENTS="1")
    writer = subprocess.Popen([sys.executable, "-c", TERMINATED, path], stdout=subprocess.PIPE,
                              text=True, env=env)
    assert writer.stdout.readline().strip() == "ready"
    writer.send_signal(signal.SIGTERM)
    assert writer.wait(timeout=30) == 128 + signal.SIGTERM
    segments = list_segments(path + ".segments")
    assert len(segments) == 1  # the end merged the run into one segment
    copy = Mirror(path + ".segments", str(tmp_path / "state" / "copy.db"))
    copy.update()
    assert copy.ended()
    _same_content(path, copy.path)
    ends = _rows(copy.path, "SELECT payload FROM calls WHERE endpoint="
                            "'experiment_start_end_time' ORDER BY seq")
    assert "endTimeMillis" in ends[-1][0]  # the run's end is recorded, and sealed


RESUMED = r"""
import sys, time
from comet_journal import Experiment
path, key, first, count, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
exp = Experiment(journal=path, project_name="p", workspace="w", experiment_key=key)
for step in range(first, first + count):
    exp.log_metric("loss", 0.5, step=step)
exp.flush()
print("logged", flush=True)
if mode == "end":
    exp.end()
else:
    time.sleep(60)
"""


def test_a_writer_resuming_after_being_judged_stale_loses_and_duplicates_nothing(tmp_path):
    path = str(tmp_path / "run.db")
    key = "a" * 32
    env = dict(os.environ, PYTHONPATH=ROOT, COMET_JOURNAL_SEGMENTS="1")

    def run(first, count, mode):
        return subprocess.Popen([sys.executable, "-c", RESUMED, path, key, str(first),
                                 str(count), mode], stdout=subprocess.PIPE, text=True, env=env)

    dead = run(0, 200, "die")
    assert dead.stdout.readline().strip() == "logged"
    time.sleep(1.5)  # sealed at least once
    dead.send_signal(signal.SIGKILL)
    dead.wait()
    mirror = Mirror(path + ".segments", str(tmp_path / "state" / "copy.db"))
    mirror.update()
    assert mirror.end() > 0 and not mirror.ended()  # what the dead writer sealed
    resumed = run(200, 100, "end")  # the same run comes back and ends
    assert resumed.wait(timeout=60) == 0
    mirror.update()
    assert mirror.ended()
    _same_content(path, mirror.path)  # nothing lost, nothing twice
    steps = [r[0] for r in _rows(mirror.path, "SELECT json_extract(payload, '$.step') FROM "
                                              "calls WHERE endpoint='log_metric' ORDER BY seq")]
    assert steps == list(range(300))


@pytest.mark.parametrize("where, argument, env, seals", [
    ("dir", None, None, True),         # a directory run seals by default
    ("file", None, None, False),       # a single file (same-host use) does not
    ("dir", False, None, False),       # the argument opts out
    ("file", True, None, True),        # ... or in
    ("dir", None, "0", False),         # COMET_JOURNAL_SEGMENTS=0: none
    ("file", None, "1", True),         # COMET_JOURNAL_SEGMENTS=1: every run
    ("dir", True, "0", True),          # the argument wins over the environment
])
def test_directory_runs_seal_segments_by_default(tmp_path, monkeypatch, where, argument, env,
                                                 seals):
    from comet_journal import Experiment
    from comet_journal.schema.segments import segments_dir
    monkeypatch.delenv("COMET_JOURNAL_SEGMENTS", raising=False)
    if env is not None:
        monkeypatch.setenv("COMET_JOURNAL_SEGMENTS", env)
    journal = str(tmp_path / "runs") + os.sep if where == "dir" else str(tmp_path / "run.db")
    options = {} if argument is None else {"segments": argument}
    exp = Experiment(journal=journal, project_name="p", workspace="w", quiet=True,
                     auto_output_logging=None, log_env_details=False, log_git_metadata=False,
                     log_git_patch=False, log_code=False, **options)
    exp.log_metric("loss", 0.5, step=1)
    exp.end()
    sealed = chain(segments_dir(exp.path))
    assert bool(sealed) == seals and os.path.isdir(segments_dir(exp.path)) == seals
    if seals:  # the end leaves one segment holding every call
        assert len(sealed) == 1 and sealed[0].last == _rows(exp.path, "SELECT max(seq) FROM "
                                                             "calls")[0][0]


def test_segments_argument_is_checked(tmp_path):
    from comet_journal import Experiment
    with pytest.raises(TypeError, match="segments"):
        Experiment(journal=str(tmp_path / "run.db"), segments="yes")
    assert not os.listdir(tmp_path)  # refused before anything was written
