"""The files of one journal as the daemon sees them: change signature, last seq, and the
after-upload delete or move (the journal, its -wal/-shm, its segments, and its progress in
the state directory following it)."""

from __future__ import annotations

import os
import shutil
import sqlite3

from comet_journal.schema.journal import sqlite_connect
from comet_journal.schema.segments import segments_dir
from comet_journal.uploader.journal.progress_store import ProgressFiles


def journal_signature(path: str) -> tuple:
    """What changes when the run writes or seals (readers never change it), at the fewest
    stats: each scan takes one per journal, and on a shared filesystem each is a metadata
    server round trip. A sealed run is one stat, of its segments directory: a new segment,
    heartbeat, end or ended-writers file is a rename into it, which changes its mtime (its
    live journal is never read from here). Otherwise the journal and its WAL."""
    try:
        st = os.stat(segments_dir(path))
        return ("sealed", st.st_size, st.st_mtime_ns)
    except OSError:
        pass
    out = []
    for p in (path, path + "-wal"):
        try:
            st = os.stat(p)
            out.append((st.st_size, st.st_mtime_ns))
        except OSError:
            out.append(None)
    return tuple(out)


def _side_files(path: str) -> list[str]:
    return [p for p in (path, path + "-wal", path + "-shm", segments_dir(path))
            if os.path.exists(p)]


def journal_end(path: str) -> int | None:
    """The journal's last seq (None when it cannot be read now)."""
    try:
        conn = sqlite_connect(path, readonly=True, timeout=5)
        try:
            return conn.execute("SELECT coalesce(max(seq), 0) FROM calls").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error:
        return None


def remove_journal(path: str) -> None:
    for p in _side_files(path):
        if os.path.isdir(p):
            shutil.rmtree(p)
        else:
            os.unlink(p)


def move_journal(path: str, directory: str, state_dir: str | None) -> str:
    os.makedirs(directory, exist_ok=True)
    target = os.path.join(directory, os.path.basename(path))
    progress = ProgressFiles(path, state_dir)  # named before the move: it reads the journal
    for p in _side_files(path):
        shutil.move(p, os.path.join(directory, os.path.basename(p)))
    progress.follow(target)  # moved whole: it still knows what it uploaded
    return target


def after_upload(path: str, action: str, state_dir: str | None) -> tuple[str, str, dict] | None:
    """``--after-upload`` for a journal fully uploaded: ``delete`` or ``move:DIR`` (its side
    files and progress following it); the event to log, or None for ``keep``. Raises
    OSError."""
    if action == "delete":
        remove_journal(path)
        return "deleted", f"{path}: deleted after upload", {}
    if action.startswith("move:"):
        target = move_journal(path, action[len("move:"):], state_dir)
        return "moved", f"{path}: moved to {target}", {"to": target}
    return None
