"""Which file the daemon reads for a run, never a live journal another host may write.

* a run that seals segments (``run.db.segments/``): its private copy assembled from the
  sealed segments (:class:`~comet_journal.uploader.watch.segmented.SegmentedRuns`);
* a journal closed cleanly (no ``-wal``): the journal itself, read-only (immutable);
* a journal with a ``-wal`` (a writer has it open, or died without closing it): while its
  files keep changing (on the daemon's own clock, or by their age when first seen) its
  writer is taken as live and the journal is read in place only where this process could
  write its directory (the same host: a writer elsewhere must seal segments); on a
  read-only mount it is waited on. Once nothing changed for ``stale_after_s`` its writer is
  gone: the journal is read through a private byte copy in the state directory
  (:mod:`~comet_journal.uploader.journal.private_copy`), never opened in place. The upload
  progress follows whichever file is read (the newer progress is carried over), so a
  writer resuming after being judged gone loses and duplicates nothing.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time

from comet_journal.schema.errors import JournalError
from comet_journal.uploader.journal.liveness import (ENDED, LIVE, STALE, Liveness,
                                                     journal_liveness, last_change)
from comet_journal.uploader.journal.private_copy import (PrivateCopy, carry_progress,
                                                         copy_path, file_signature, has_wal)
from comet_journal.uploader.watch.journal_files import journal_end
from comet_journal.uploader.watch.segmented import SegmentedRuns

WAITING_DETAIL = ("its writer may still be live and its directory is read-only here: read "
                  "through a private copy once nothing changed for --stale-after")


class RunSources:
    def __init__(self, state_dir: str | None, stale_after_s: float):
        self.state_dir = state_dir
        self.stale_after_s = stale_after_s
        self.sealed = SegmentedRuns(state_dir, stale_after_s)
        self._changed: dict[str, tuple[str, float]] = {}  # signature, when (our clock)
        self._read_last: dict[str, str] = {}  # journal -> the file last read for it
        self._lock = threading.Lock()

    def idle_s(self, path: str) -> float:
        """Seconds the journal's files have not changed, on our clock (by their age the
        first time: a writer dead for long is judged at once)."""
        signature, now = str(file_signature(path)), time.monotonic()
        seen = self._changed.get(path)
        if seen is None:
            seen = (signature, now - max(0.0, time.time() - last_change(path)))
        elif seen[0] != signature:
            seen = (signature, now)
        self._changed[path] = seen
        return now - seen[1]

    def upload_path(self, path: str) -> str | None:
        """The file to read for ``path`` now; None: wait (see :data:`WAITING_DETAIL`)."""
        if SegmentedRuns.applies(path):
            return self.sealed.refresh(path).path
        with self._lock:
            chosen = self._choose(path)
            if chosen is not None:
                previous = self._read_last.get(path)
                if previous is not None and previous != chosen:
                    carry_progress(previous, chosen, copy_path(path, self.state_dir),
                                   self.state_dir)
                self._read_last[path] = chosen
            return chosen

    def _choose(self, path: str) -> str | None:
        copy = PrivateCopy(path, copy_path(path, self.state_dir))
        if not has_wal(path):
            return path  # closed cleanly: read-only, immutable, no -shm
        if self.idle_s(path) >= self.stale_after_s:
            return copy.path if copy.refresh() else None
        if os.access(os.path.dirname(os.path.abspath(path)), os.W_OK):
            return path  # a live writer on this host (WAL is safe here)
        return None

    def end(self, path: str) -> int | None:
        """The run's last seq in the file read for it (None: nothing readable now)."""
        if SegmentedRuns.applies(path):
            return self.sealed.end(path)
        source = self.upload_path(path)
        return None if source is None else journal_end(source)

    def readable_end(self, path: str) -> int | None:
        """:meth:`end`, or None when nothing is readable now (the file is being replaced,
        torn, or gone for a moment: the next scan looks again)."""
        try:
            return self.end(path)
        except (OSError, sqlite3.Error, JournalError):
            return None

    def liveness(self, path: str) -> Liveness:
        if SegmentedRuns.applies(path):
            return self.sealed.liveness(path)
        source = self.upload_path(path)
        if source is None:
            return Liveness(LIVE, self.idle_s(path), 0, 0, ())
        if source == path:
            return journal_liveness(path, self.stale_after_s)
        copy = journal_liveness(source, self.stale_after_s)  # a dead writer's copy
        state = ENDED if copy.state == ENDED else STALE
        return Liveness(state, self.idle_s(path), copy.experiments, copy.ended_experiments, ())
