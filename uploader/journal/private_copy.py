"""A private copy of a journal whose writer is gone, on the uploader's own disk.

A journal left with a ``-wal`` file (its writer was killed, or its node died) must not be
opened in place by another process than its writer: a read-only open needs the ``-shm``
index, which is stale, shared with nobody, or on a read-only mount cannot be made at all;
and SQLite's backup API from an ``immutable=1`` open would ignore the ``-wal`` (the last
commits). So the uploader copies the bytes of the journal and its ``-wal`` (never the
``-shm``) into its state directory, checks that neither changed while it copied, opens the
copy read-write (SQLite rebuilds the index from the ``-wal``: every committed transaction,
nothing torn), runs ``integrity_check``, checkpoints it into one file and renames it into
place (``<state>/copies/<name>-<path digest>.db``). The copy is refreshed only when the
journal's files change.

Progress follows the file the daemon uploads: :func:`carry_progress` hands the newer of two
progress databases (the journal's, the copy's) to the other, so switching between them never
resends or skips a call.

Example::

    copy = PrivateCopy("/shared/runs/run.db", copy_path("/shared/runs/run.db"))
    if copy.refresh():          # False: the journal changed while being copied (retry later)
        upload_journal(copy.path, config)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import tempfile

from comet_journal.uploader.journal.progress_store import progress_db_path
from comet_journal.uploader.state_home import default_state_dir

COPIES_DIR = "copies"


class CopyNotReady(Exception):
    """The journal changed while being copied, or the copy does not verify: retry later."""


def copy_path(journal_path: str, state_dir: str | None = None) -> str:
    """Where the private copy of ``journal_path`` lives (one per journal path)."""
    digest = hashlib.sha256(os.path.realpath(journal_path).encode()).hexdigest()[:16]
    return os.path.join(default_state_dir(state_dir), COPIES_DIR,
                        f"{os.path.basename(journal_path)}-{digest}.db")


def has_wal(journal_path: str) -> bool:
    """A non-empty ``-wal``: a writer has the journal open now, or died without closing it."""
    try:
        return os.path.getsize(journal_path + "-wal") > 0
    except OSError:
        return False


def file_signature(journal_path: str) -> list:
    """(size, mtime) of the journal and its ``-wal``: what changes when anyone commits."""
    out = []
    for p in (journal_path, journal_path + "-wal"):
        try:
            st = os.stat(p)
            out.append([st.st_size, st.st_mtime_ns])
        except OSError:
            out.append(None)
    return out


class PrivateCopy:
    """The private copy of one journal (made on the first :meth:`refresh`)."""

    def __init__(self, journal_path: str, path: str):
        self.journal_path = journal_path
        self.path = path
        self._source = path + ".source"  # the journal's signature when last copied

    def current(self) -> bool:
        """The copy exists and the journal has not changed since it was made."""
        try:
            with open(self._source) as f:
                return os.path.exists(self.path) and \
                    json.load(f) == file_signature(self.journal_path)
        except (OSError, ValueError):
            return False

    def refresh(self) -> bool:
        """Bring the copy up to date; False when the journal changed meanwhile."""
        if self.current():
            return True
        try:
            self._copy()
        except CopyNotReady:
            return False
        return True

    def _copy(self) -> None:
        before = file_signature(self.journal_path)
        directory = os.path.dirname(self.path)
        os.makedirs(directory, exist_ok=True)
        work = tempfile.mkdtemp(prefix=".copy-", dir=directory)
        try:
            staged = os.path.join(work, "journal.db")
            shutil.copyfile(self.journal_path, staged)
            if before[1] is not None:
                shutil.copyfile(self.journal_path + "-wal", staged + "-wal")
            if file_signature(self.journal_path) != before:
                raise CopyNotReady(f"{self.journal_path} changed while being copied")
            _verify_and_checkpoint(staged, self.journal_path)
            os.replace(staged, self.path)
            tmp = f"{self._source}.tmp"
            with open(tmp, "w") as f:
                json.dump(before, f)
            os.replace(tmp, self._source)
        finally:
            shutil.rmtree(work, ignore_errors=True)


def _verify_and_checkpoint(staged: str, original: str) -> None:
    """Open the staged copy (SQLite recovers its -wal), check it, fold the -wal in."""
    try:
        conn = sqlite3.connect(staged, isolation_level=None)
        try:
            result = conn.execute("PRAGMA integrity_check").fetchall()
            if result != [("ok",)]:
                raise CopyNotReady(f"a copy of {original} does not verify: {result[:3]}")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise CopyNotReady(f"a copy of {original} cannot be read: {exc}") from None
    for suffix in ("-wal", "-shm"):
        try:
            os.remove(staged + suffix)
        except FileNotFoundError:
            pass


def carry_progress(source: str, target: str, copy: str, state_dir: str | None = None) -> bool:
    """Give ``target`` the upload progress of ``source`` (the journal and its private
    ``copy``, one either way) when it is newer than its own. Returns whether it did. The
    journal's id is read from the copy: the journal itself is not opened."""
    given, own = (_progress_db(p, copy, state_dir) for p in (source, target))
    if _last_update(given) <= _last_update(own):
        return False
    os.makedirs(os.path.dirname(own), exist_ok=True)
    src = sqlite3.connect(given)
    tmp = f"{own}.carry.tmp"
    try:
        dst = sqlite3.connect(tmp)
        try:
            src.backup(dst)
        finally:
            dst.close()
    finally:
        src.close()
    for suffix in ("-wal", "-shm"):
        try:
            os.remove(own + suffix)
        except FileNotFoundError:
            pass
    os.replace(tmp, own)
    return True


def _progress_db(journal_path: str, copy: str, state_dir: str | None) -> str:
    """``progress_db_path`` of ``journal_path``, its id read from ``copy``."""
    if journal_path == copy:
        return progress_db_path(copy, state_dir)
    name = os.path.basename(progress_db_path(copy, state_dir)).rsplit("-", 1)[0]
    where = hashlib.sha256(os.path.realpath(journal_path).encode()).hexdigest()[:16]
    return os.path.join(os.path.dirname(progress_db_path(copy, state_dir)), f"{name}-{where}.db")


def _last_update(progress_db: str) -> int:
    """The newest progress stamp a state database holds (-1: none)."""
    if not os.path.exists(progress_db):
        return -1
    try:
        conn = sqlite3.connect(f"file:{progress_db}?mode=ro", uri=True)
        try:
            row = conn.execute("SELECT max(coalesce(updated_ms, 0)) FROM "
                               "upload_targets").fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return -1
    return row[0] if row and row[0] is not None else 0
