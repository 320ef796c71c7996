"""Issue 15: a journal left by a full disk is whole, and opens (read-only too) afterwards.

A real small filesystem (tmpfs of 2 MiB) is filled by a real recorder process. Mounting needs
root; the tests are skipped, saying why, where mount is not permitted.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

import pytest

from journal_helpers import count, integrity_ok, small_tmpfs
from comet_journal.schema.journal import Journal, read_header

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FILL = """
import sys
from comet_journal import Experiment
exp = Experiment(journal=sys.argv[1], flush_interval=0.02, auto_output_logging=None,
                 log_env_details=False, log_git_metadata=False, log_git_patch=False,
                 log_code=False)
for i in range(20000):
    exp.log_parameter("p", "y" * 200 + str(i))
print(exp.end(timeout=10)["journaled"])
"""


def _fill(journal: str) -> subprocess.CompletedProcess:
    """A recorder fills the disk; then one more checkpoint tries to move the WAL into the
    main file on the full disk (what any later writer's open or close does): page 1, with
    the new page count, fits, the pages past the end of the file do not."""
    proc = subprocess.run([sys.executable, "-c", FILL, journal], capture_output=True,
                          text=True, env=dict(os.environ, PYTHONPATH=ROOT), timeout=120)
    conn = sqlite3.connect(journal)
    try:
        with pytest.raises(sqlite3.OperationalError, match="full"):
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    finally:
        conn.close()
    return proc


@pytest.fixture
def small_disk(tmp_path):
    with small_tmpfs(tmp_path / "small", "size=2m") as mount_point:
        yield mount_point


def test_journal_left_by_a_full_disk_opens(small_disk):
    journal = str(small_disk / "run.db")
    proc = _fill(journal)
    assert proc.returncode == 0, proc.stderr
    assert "disk is full" in proc.stderr  # the disk really filled up
    journaled = int(proc.stdout.split()[-1])
    header = read_header(journal)  # was: "truncated", forever
    assert os.path.getsize(journal) < header.page_count * header.page_size  # pages in the WAL
    with Journal.open(journal, readonly=True) as reader:
        with reader.engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM calls").scalar() == journaled
    assert count(journal) == journaled and journaled > 1000
    assert integrity_ok(journal)
    Journal.open(journal).close()  # writable too


def test_truncated_copy_is_still_refused(small_disk, tmp_path):
    journal = str(small_disk / "run.db")
    _fill(journal)
    copy = tmp_path / "copy.db"  # the main file without its WAL: really missing pages
    copy.write_bytes(open(journal, "rb").read())
    from comet_journal.schema.errors import TruncatedJournalError
    with pytest.raises(TruncatedJournalError, match="truncated"):
        read_header(copy)


def test_the_uploader_recovers_from_its_own_full_disk(tmp_path, emulator, monkeypatch):
    """The uploader's own progress (in its state directory) fills the disk: the upload stops
    with a clear error, keeping what was acknowledged; with room again, it continues and
    nothing reaches the server twice."""
    from test_upload_support import KEY, assert_server_matches, make_journal, run_cli

    # room for the progress database's write-ahead log (up to 4 MiB before a checkpoint)
    with small_tmpfs(tmp_path / "state", "size=8m") as state:
        monkeypatch.setenv("COMET_JOURNAL_STATE", str(state))  # where the comparison looks
        _recover_from_full_state(state, tmp_path, emulator, KEY, assert_server_matches,
                                 make_journal, run_cli)


def _recover_from_full_state(small_disk, tmp_path, emulator, KEY, assert_server_matches,
                             make_journal, run_cli):
    journal = make_journal(tmp_path / "run.db", points=3000)
    filler = small_disk / "filler"
    with open(filler, "wb") as fh:  # leave the progress database too little room
        fh.write(b"\0" * (8 * 1024 * 1024 - 96 * 1024))
    cli = ["--url", emulator.url, "--api-key", KEY, "--no-batch",
           "--backoff-base", "0.01", "--backoff-cap", "0.05", "--deadline", "10", journal]
    env = {"COMET_JOURNAL_STATE": str(small_disk)}
    first = run_cli(*cli, timeout=120, env=env)
    assert first.returncode == 1, (first.stdout, first.stderr)
    assert "Traceback" not in first.stderr and "full" in first.stderr.lower()
    filler.unlink()  # room again
    second = run_cli(*cli, timeout=120, env=env)
    assert second.returncode == 0, second.stderr
    assert_server_matches(emulator, journal)
