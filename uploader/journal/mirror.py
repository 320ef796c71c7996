"""A private copy of a journal, assembled from its sealed segments, on the uploader's host.

The uploader on another host than the writer never opens the live journal: it reads only
sealed segments (:mod:`comet_journal.schema.segments`, opened immutable) and appends their
rows, in seq order, into a journal of its own in its state directory
(``<state>/mirrors/<journal id>.db``), which it then uploads like any journal (progress keyed
by that file). Each segment is applied in one transaction together with the new end, so a
mirror holds whole segments only; a gap in the chain (a segment not visible yet) or a segment
that does not verify (torn, partly visible) stops the update there, to be retried later:
nothing is skipped, nothing is applied twice.

Example::

    mirror = Mirror("/shared/runs/run.db.segments", "/home/me/.local/state/.../x.db")
    added = mirror.update()      # calls appended now (0: nothing new, or waiting on a gap)
    upload_journal(mirror.path, config)
"""

from __future__ import annotations

import hashlib
import os

from comet_journal.schema.journal import Journal, sqlite_connect
from comet_journal.schema.segments import (ENDED_FILE_NAME, HEARTBEAT_FILE_NAME,
                                           SegmentNotReady, chain, read_segment)
from comet_journal.uploader.state_home import default_state_dir

MIRRORS_DIR = "mirrors"
_INSERTS = {
    "experiments": "INSERT OR IGNORE INTO experiments (id, key, workspace, project, name, "
                   "created_ms, host, pid) VALUES (?,?,?,?,?,?,?,?)",
    "chunks": "INSERT OR IGNORE INTO chunks (id, sha256, data) VALUES (?,?,?)",
    "blobs": "INSERT OR IGNORE INTO blobs (sha256, size, n_chunks) VALUES (?,?,?)",
    "blob_parts": "INSERT OR IGNORE INTO blob_parts (blob_sha256, idx, chunk_id) VALUES (?,?,?)",
    "calls": "INSERT INTO calls (seq, endpoint, experiment_id, ts_ms, payload) "
             "VALUES (?,?,?,?,?)",
}


def mirror_path(segments_directory: str, state_dir: str | None = None) -> str:
    """Where the private copy of the journal sealed in ``segments_directory`` lives."""
    name = os.path.basename(os.path.normpath(segments_directory))
    digest = hashlib.sha256(
        os.path.realpath(segments_directory).encode()).hexdigest()[:16]
    return os.path.join(default_state_dir(state_dir), MIRRORS_DIR, f"{name}-{digest}.db")


class Mirror:
    """The private copy of one sealed journal (created on first :meth:`update`)."""

    def __init__(self, segments_directory: str, path: str):
        self.segments_directory = segments_directory
        self.path = path
        self.waiting: str | None = None  # why the last update stopped short, if it did

    def end(self) -> int:
        """The last seq in the copy (0: none yet)."""
        if not os.path.exists(self.path):
            return 0
        conn = sqlite_connect(self.path, readonly=True)
        try:
            return conn.execute("SELECT coalesce(max(seq), 0) FROM calls").fetchone()[0]
        finally:
            conn.close()

    def update(self) -> int:
        """Append every verified segment after the copy's end; return calls added."""
        self.waiting = None
        end = self.end()
        added = 0
        for segment in chain(self.segments_directory, after=end):
            try:
                header, rows = read_segment(segment.path)
            except SegmentNotReady as exc:  # torn or not fully visible yet: next time
                self.waiting = str(exc)
                break
            added += self._apply(header, rows, end)
            end = int(header["last_seq"])
        return added

    def _apply(self, header: dict, rows: dict, end: int) -> int:
        if not os.path.exists(self.path):
            self._create()
        conn = sqlite_connect(self.path)
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                                 [r for r in rows["meta"] if r[0] != "format_version"])
                for table in ("experiments", "chunks", "blobs", "blob_parts"):
                    conn.executemany(_INSERTS[table], rows[table])
                calls = [r for r in rows["calls"] if r[0] > end]  # a merged segment overlaps
                conn.executemany(_INSERTS["calls"], calls)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        finally:
            conn.close()
        return len(calls)

    def _create(self) -> None:
        # Made whole under a temp name, then renamed: `comet-upload status`, `inspect` and a
        # second reader open the copy while the daemon runs, and must never find the file
        # without its tables (seen: "no such table: calls").
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        temp = f"{self.path}.{os.getpid()}.creating"
        try:
            Journal.open(temp, create=True).close()
            os.replace(temp, self.path)
        finally:
            for leftover in (temp, temp + "-wal", temp + "-shm"):
                if os.path.exists(leftover):
                    os.remove(leftover)

    def heartbeat(self) -> int | None:
        """The writer's heartbeat counter (None: none written); compare on one clock."""
        try:
            with open(os.path.join(self.segments_directory, HEARTBEAT_FILE_NAME)) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def ended(self) -> bool:
        """The writer recorded the run's end, and this copy holds everything it sealed."""
        try:
            with open(os.path.join(self.segments_directory, ENDED_FILE_NAME)) as f:
                last = int(f.read().strip())
        except (OSError, ValueError):
            return False
        return self.end() >= last

