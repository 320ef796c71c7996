"""Journal files: created stamped and migrated; anything else is refused clearly, untouched."""

from __future__ import annotations

import hashlib
import os
import random
import sqlite3

import pytest

from comet_journal.schema import migrations
from comet_journal.schema.errors import (JournalNotFoundError, NewerFormatError, NotAJournalError,
                           TruncatedJournalError)
from comet_journal.schema.journal import APPLICATION_ID, Journal, is_journal, read_header
from comet_journal import Experiment


def _digest(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def _siblings(path) -> set[str]:
    d = os.path.dirname(path)
    return set(os.listdir(d))


def test_new_journal_is_stamped_and_migrated(tmp_path):
    path = tmp_path / "run.db"
    with Journal.open(path, create=True) as journal:
        assert journal.format_version() == migrations.format_version()
        meta = journal.meta()
        assert meta["format_version"] == str(migrations.format_version())
        assert len(meta["journal_id"]) == 32
    header = read_header(path)
    assert header.application_id == APPLICATION_ID
    conn = sqlite3.connect(path)
    names = [r[0] for r in conn.execute("SELECT name FROM migrations ORDER BY name")]
    assert names == [m.name for m in migrations.MIGRATIONS]
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    assert is_journal(path)


def test_reopening_applies_nothing_twice(tmp_path):
    path = tmp_path / "run.db"
    Journal.open(path, create=True).close()
    Journal.open(path).close()
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT count(*) FROM migrations").fetchone()[0] == len(
        migrations.MIGRATIONS)


def _make_text(path):
    path.write_text("hello, I am a text file\n" * 50)


def _make_random(path):
    path.write_bytes(random.Random(7).randbytes(8192))


def _make_unrelated_sqlite(path):
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (x)")
    conn.execute("INSERT INTO t VALUES (1)")
    conn.commit()
    conn.close()


def _make_truncated(path):
    with Experiment(journal=str(path), project_name="p", workspace="w") as exp:
        for i in range(3000):
            exp.log_metric("m", i, step=i)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2 + 100])
    for suffix in ("-wal", "-shm"):
        if os.path.exists(str(path) + suffix):
            os.unlink(str(path) + suffix)


def _make_tiny(path):
    path.write_bytes(b"SQLite for")


def _make_empty(path):
    path.write_bytes(b"")


def _make_newer(path):
    Journal.open(path, create=True).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {migrations.format_version() + 5}")
    conn.commit()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


@pytest.mark.parametrize("make,error,words", [
    (_make_text, NotAJournalError, "not an SQLite file"),
    (_make_random, NotAJournalError, "not an SQLite file"),
    (_make_unrelated_sqlite, NotAJournalError, "not a comet-journal journal"),
    (_make_truncated, TruncatedJournalError, "truncated"),
    (_make_tiny, TruncatedJournalError, "truncated"),
    (_make_empty, NotAJournalError, "empty"),
    (_make_newer, NewerFormatError, "upgrade"),
])
@pytest.mark.parametrize("readonly", [False, True])
def test_bad_files_are_refused_clearly_and_left_untouched(tmp_path, make, error, words,
                                                          readonly):
    path = tmp_path / "bad.db"
    make(path)
    before, files_before = _digest(path), _siblings(path)
    with pytest.raises(error) as info:
        Journal.open(path, readonly=readonly)
    message = str(info.value)
    assert str(path) in message and words in message
    assert _digest(path) == before
    assert _siblings(path) == files_before  # no -wal/-shm or temp files left behind
    assert not is_journal(path)


def test_recorder_refuses_a_non_journal_without_touching_it(tmp_path):
    path = tmp_path / "notes.db"
    _make_unrelated_sqlite(path)
    before = _digest(path)
    with pytest.raises(NotAJournalError):
        Experiment(journal=str(path))
    assert _digest(path) == before


def test_missing_journal(tmp_path):
    with pytest.raises(JournalNotFoundError) as info:
        Journal.open(tmp_path / "nope.db")
    assert "nope.db" in str(info.value)


def test_readonly_open_never_writes(tmp_path):
    path = tmp_path / "run.db"
    with Experiment(journal=str(path), project_name="p", workspace="w") as exp:
        exp.log_metric("m", 1.0)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    before = _digest(path)
    os.chmod(path, 0o444)
    try:
        with Journal.open(path, readonly=True) as journal:
            assert journal.format_version() == migrations.format_version()
    finally:
        os.chmod(path, 0o644)
    assert _digest(path) == before


OPENER = """
import sys, time
from comet_journal.schema.journal import Journal
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))  # start together
Journal.open(sys.argv[1], create=True).close()
"""


def test_many_processes_creating_and_migrating_one_journal_at_once(tmp_path):
    import subprocess
    import sys
    import time
    path = str(tmp_path / "run.db")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    start = str(time.time() + 1.0)
    procs = [subprocess.Popen([sys.executable, "-c", OPENER, path, start],
                              env=dict(os.environ, PYTHONPATH=root), stderr=subprocess.PIPE,
                              text=True) for _ in range(4)]
    for p in procs:
        _out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
    conn = sqlite3.connect(path)
    names = [r[0] for r in conn.execute("SELECT name FROM migrations ORDER BY name")]
    assert names == [m.name for m in migrations.MIGRATIONS]  # each applied exactly once


def test_an_older_journal_is_migrated_forward_keeping_its_rows(tmp_path):
    path = tmp_path / "old.db"
    with Experiment(journal=str(path), project_name="p") as exp:
        exp.log_metric("m", 1.5, step=1)
    # Turn it back into a format-1 journal: drop what later migrations added.
    conn = sqlite3.connect(path, isolation_level=None)
    later = [m.name for m in migrations.MIGRATIONS[1:]]
    for name in later:
        conn.execute("DELETE FROM migrations WHERE name=?", (name,))
    for table in ("upload_targets", "upload_experiments", "upload_state", "upload_projects"):
        conn.execute(f"DROP TABLE IF EXISTS {table}")
    conn.execute("PRAGMA user_version = 1")
    conn.close()
    with Journal.open(path, readonly=True) as journal:  # read as it is, not migrated
        assert journal.format_version() == 1
    with Journal.open(path) as journal:
        assert journal.format_version() == migrations.format_version()
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT payload FROM calls WHERE endpoint='log_metric'").fetchone()[0] \
        == '{"metricName":"m","metricValue":1.5,"step":1}'
