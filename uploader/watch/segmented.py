"""Runs sealed into segments (``run.db.segments/`` beside ``run.db``): the daemon reads them,
never the live journal, which may be written by another host.

For such a run the daemon keeps a private copy in its state directory
(:class:`~comet_journal.uploader.journal.mirror.Mirror`), brings it up to date from the
verified segments before looking at the run's end or uploading, and uploads the copy. Live,
ended or stale is judged from the writer's heartbeat counter on the daemon's own clock and
the sealed end (:func:`~comet_journal.uploader.journal.liveness.sealed_liveness`).
"""

from __future__ import annotations

import os
import threading

from comet_journal.schema.segments import ended_writers, segments_dir
from comet_journal.uploader.journal.liveness import HeartbeatClock, Liveness, sealed_liveness
from comet_journal.uploader.journal.mirror import Mirror, mirror_path


class SegmentedRuns:
    def __init__(self, state_dir: str | None, stale_after_s: float):
        self.state_dir = state_dir
        self.stale_after_s = stale_after_s
        self.clock = HeartbeatClock()
        self._lock = threading.Lock()  # one update of a copy at a time (scan and uploads)

    @staticmethod
    def applies(journal_path: str) -> bool:
        """Does this run seal segments (then its live file is never opened)?"""
        return os.path.isdir(segments_dir(journal_path))

    def mirror(self, journal_path: str) -> Mirror:
        directory = segments_dir(journal_path)
        return Mirror(directory, mirror_path(directory, self.state_dir))

    def refresh(self, journal_path: str) -> Mirror:
        """The run's private copy, with every verified segment applied."""
        mirror = self.mirror(journal_path)
        with self._lock:
            mirror.update()
        return mirror

    def end(self, journal_path: str) -> int:
        return self.refresh(journal_path).end()

    def liveness(self, journal_path: str) -> Liveness:
        mirror = self.refresh(journal_path)
        idle = self.clock.idle_s(journal_path, mirror.heartbeat())
        copy = mirror.path if os.path.exists(mirror.path) else None
        return sealed_liveness(copy, mirror.ended() and mirror.waiting is None, idle,
                               self.stale_after_s, ended_writers(mirror.segments_directory))
