"""Damaged and foreign journal files, for every command that opens journals (no tests here).

``BAD_JOURNALS`` is a list of :class:`BadJournal`: each ``make(path, good)`` turns ``path``
into one kind of bad file (``good`` is the path of a healthy journal to start from, see
:func:`good_journal`), and says which words a clear error must contain. ``comet-upload``
must refuse each with exit 1, naming the file and the problem, leaving it byte for byte as
it was (``tests/test_bad_journals.py``); ``comet-upload watch`` must report and skip each.
:func:`hold_locked` keeps a journal locked by another process (the locked-journal case).

Every maker leaves the file alone on disk: no ``-wal``/``-shm`` beside it (the changes are
checkpointed into the main file), so "unchanged" means the same bytes in one file.

Example::

    from bad_journals import BAD_JOURNALS, good_journal
    good = good_journal(tmp_path / "good.db")
    for bad in BAD_JOURNALS:
        path = tmp_path / f"{bad.name}.db"
        bad.make(path, good)
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

from test_upload_support import ROOT, make_journal


@dataclass(frozen=True)
class BadJournal:
    """One kind of bad journal file.

    :param words: what the error message must contain (besides the file's path).
    :param seq: the message names the damaged call (``call <seq>``); ``make`` returns it.
    """

    name: str
    make: Callable[[str, str], int | None]
    words: tuple[str, ...]
    seq: bool = False
    tags: frozenset = field(default_factory=frozenset)


def good_journal(path) -> str:
    """A healthy journal with two experiments, every ordered and positioned kind of call and
    a 2.5 MB asset (three 1 MiB chunks). Build it once and copy it: makers start from it."""
    make_journal(path, experiments=2, points=30, assets=True)
    _settle(str(path))
    return str(path)


def _settle(path: str) -> None:
    """Checkpoint and drop the WAL so the file on disk is the whole journal."""
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    for suffix in ("-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path + suffix)


def _copy(good: str, path: str) -> None:
    shutil.copyfile(good, path)


def _edit(path: str, *statements: tuple[str, tuple]) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for sql, args in statements:
            conn.execute(sql, args)
    finally:
        conn.close()
    _settle(path)


def _a_metric_call(path: str, nth: int = 10) -> int:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT seq FROM calls WHERE endpoint='log_metric' ORDER BY seq "
                            "LIMIT 1 OFFSET ?", (nth,)).fetchone()[0]
    finally:
        conn.close()


def _the_big_asset(path: str) -> tuple[int, str]:
    """(seq, blob sha256) of the journal's largest asset."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        seq, payload = conn.execute(
            "SELECT seq, payload FROM calls WHERE endpoint='upload_asset' ORDER BY "
            "json_extract(payload, '$.file.size') DESC LIMIT 1").fetchone()
        return seq, json.loads(payload)["file"]["$blob"]
    finally:
        conn.close()


# --- whole-file damage --------------------------------------------------------------------

def _truncated(fraction: float | None = None, offset: int | None = None, page: bool = False,
               seed: int = 0):
    """Cut the file: at ``offset``, or at a random offset in the given part of the file
    (reproducible from ``seed``), or at a random page boundary."""
    def make(path: str, good: str) -> None:
        data = open(good, "rb").read()
        rng = random.Random(seed)
        if offset is not None:
            cut = offset
        elif page:
            cut = 4096 * rng.randrange(1, len(data) // 4096)
        else:
            low = int(len(data) * (fraction or 0.5))
            cut = rng.randrange(low, len(data) - 1)
            cut += 1 if cut % 4096 == 0 else 0  # not a page boundary: that is the other case
        with open(path, "wb") as fh:
            fh.write(data[:cut])
    return make


def _random_bytes(path: str, good: str) -> None:
    with open(path, "wb") as fh:
        fh.write(random.Random(11).randbytes(64 * 1024))


def _sqlite_magic_then_random(path: str, good: str) -> None:
    """The SQLite magic string, then noise: looks like SQLite for 16 bytes only."""
    with open(path, "wb") as fh:
        fh.write(b"SQLite format 3\x00" + random.Random(12).randbytes(64 * 1024 - 16))


def _random_page(path: str, good: str) -> None:
    """A healthy header, but the root page of the calls table overwritten with noise."""
    _copy(good, path)
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name='calls'").fetchone()[0]
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    finally:
        conn.close()
    _settle(path)
    with open(path, "r+b") as fh:
        fh.seek((root - 1) * page_size)
        fh.write(random.Random(13).randbytes(page_size))


def _unrelated_sqlite(path: str, good: str) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
    conn.execute("INSERT INTO notes (text) VALUES ('not a journal')")
    conn.commit()
    conn.close()


def _newer_format(path: str, good: str) -> None:
    from comet_journal.schema import migrations
    _copy(good, path)
    _edit(path, (f"PRAGMA user_version = {migrations.format_version() + 3}", ()))


def _text_file(path: str, good: str) -> None:
    with open(path, "w") as fh:
        fh.write("epoch,loss\n1,0.5\n" * 200)


# --- rows altered after they were written ---------------------------------------------------

def _payload(text: str):
    def make(path: str, good: str) -> int:
        _copy(good, path)
        seq = _a_metric_call(path)
        _edit(path, ("UPDATE calls SET payload=? WHERE seq=?", (text, seq)))
        return seq
    return make


def _payload_as_bytes(path: str, good: str) -> int:
    _copy(good, path)
    seq = _a_metric_call(path)
    _edit(path, ("UPDATE calls SET payload=CAST(payload AS BLOB) WHERE seq=?", (seq,)))
    return seq


def _unknown_endpoint(path: str, good: str) -> int:
    _copy(good, path)
    seq = _a_metric_call(path)
    _edit(path, ("UPDATE calls SET endpoint='log_magic' WHERE seq=?", (seq,)))
    return seq


def _orphan_call(experiment_id):
    def make(path: str, good: str) -> int:
        _copy(good, path)
        seq = _a_metric_call(path)
        _edit(path, ("UPDATE calls SET experiment_id=? WHERE seq=?", (experiment_id, seq)))
        return seq
    return make


def _missing_chunk(path: str, good: str) -> int:
    """The asset's second chunk row deleted."""
    _copy(good, path)
    seq, sha = _the_big_asset(path)
    _edit(path, ("DELETE FROM chunks WHERE id=(SELECT chunk_id FROM blob_parts WHERE "
                 "blob_sha256=? AND idx=1)", (sha,)))
    return seq


def _missing_blob(path: str, good: str) -> int:
    _copy(good, path)
    seq, sha = _the_big_asset(path)
    _edit(path, ("DELETE FROM blobs WHERE sha256=?", (sha,)))
    return seq


BAD_JOURNALS: list[BadJournal] = [
    BadJournal("truncated-in-magic", _truncated(offset=10), ("truncated",)),
    BadJournal("truncated-in-header", _truncated(offset=77), ("truncated",)),
    BadJournal("truncated-early", _truncated(fraction=0.02, seed=1), ("truncated",)),
    BadJournal("truncated-late", _truncated(fraction=0.6, seed=2), ("truncated",)),
    BadJournal("truncated-at-page", _truncated(page=True, seed=3), ("truncated",)),
    BadJournal("random-bytes", _random_bytes, ("not an SQLite file",)),
    BadJournal("sqlite-magic-then-random", _sqlite_magic_then_random, ("not",)),
    BadJournal("random-page", _random_page, ("damaged",)),
    BadJournal("text-file", _text_file, ("not an SQLite file",)),
    BadJournal("unrelated-sqlite", _unrelated_sqlite, ("not a comet-journal journal",)),
    BadJournal("newer-format", _newer_format, ("journal format", "upgrade")),
    BadJournal("payload-not-json", _payload('{"metricName": "loss", "metricVal'),
               ("not valid JSON",), seq=True, tags=frozenset({"row"})),
    BadJournal("payload-not-object", _payload('[1, 2, 3]'), ("not a JSON object",), seq=True,
               tags=frozenset({"row"})),
    BadJournal("payload-wrong-type", _payload('{"metricName": "loss", "metricValue": {"a": 1}}'),
               ("does not fit the catalogue", "metricValue"), seq=True, tags=frozenset({"row"})),
    BadJournal("payload-missing-field", _payload('{"metricValue": 0.5, "step": 3}'),
               ("does not fit the catalogue", "metricName", "required"), seq=True,
               tags=frozenset({"row"})),
    BadJournal("payload-unknown-field",
               _payload('{"metricName": "loss", "metricValue": 0.5, "stepp": 3}'),
               ("does not fit the catalogue", "stepp"), seq=True, tags=frozenset({"row"})),
    BadJournal("payload-stored-as-bytes", _payload_as_bytes, ("payload is not text",),
               seq=True, tags=frozenset({"row"})),
    BadJournal("unknown-endpoint", _unknown_endpoint, ("unknown endpoint", "log_magic"),
               seq=True, tags=frozenset({"row"})),
    BadJournal("call-of-a-missing-experiment", _orphan_call(99), ("experiment id 99",),
               seq=True, tags=frozenset({"row"})),
    BadJournal("call-of-no-experiment", _orphan_call(None), ("belongs to no experiment",),
               seq=True, tags=frozenset({"row"})),
    BadJournal("missing-asset-chunk", _missing_chunk, ("MissingBlobError", "chunk", "missing"),
               seq=True, tags=frozenset({"blob"})),
    BadJournal("missing-asset-blob", _missing_blob, ("MissingBlobError", "not in the journal"),
               seq=True, tags=frozenset({"blob"})),
]


# --- a journal locked by another process ----------------------------------------------------

_HOLDER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
# A rollback-journal lock: an exclusive lock there blocks readers too (in WAL mode readers
# go on, and so does an upload, which only reads).
conn.execute("PRAGMA journal_mode=DELETE")
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("ROLLBACK")
conn.close()
print("unlocked", flush=True)
"""


@contextlib.contextmanager
def hold_locked(path, seconds: float) -> Iterator[subprocess.Popen]:
    """Another process holds ``BEGIN EXCLUSIVE`` on the journal for ``seconds`` (from when
    this returns), then lets go; on exit from the block it is waited for (or killed)."""
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(path), str(seconds)],
                            stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        line = proc.stdout.readline().strip()
        assert line == "locked", f"the lock holder did not start: {line!r}"
        yield proc
    finally:
        if proc.poll() is None:
            try:
                proc.wait(timeout=seconds + 10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_unlocked(proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
