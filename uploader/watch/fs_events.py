"""File events for the watch daemon: watchdog (native or polling), debounced per journal.

A journal that grows produces a stream of events (the ``-wal`` file changes on every commit);
the daemon wants one "this journal changed" per quiet period, not thousands. Events are folded
into a set of journal paths and handed out after ``debounce_s`` of quiet, or at the latest
after ``max_delay_s`` so a journal that never stops growing is still uploaded promptly.

Mode: ``poll_interval=None`` picks native events (inotify) where they can work and polling on
network file systems (see :func:`comet_journal.uploader.journal.discovery.needs_polling`); a number forces polling
every that many seconds; 0 forces native events. Polling here runs no observer of its own:
the daemon's periodic scan, filtered by name, is the one walk of the tree (a polling observer
plus a rescan would double the metadata load on a network filesystem).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Final

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from comet_journal.uploader.journal.discovery import DEFAULT_PATTERN, journal_of, needs_polling

logger = logging.getLogger(__name__)

DEFAULT_DEBOUNCE_S: Final = 0.25
DEFAULT_MAX_DELAY_S: Final = 1.0
AUTO_POLL_INTERVAL_S: Final = 2.0


class _Handler(FileSystemEventHandler):
    def __init__(self, events: "JournalEvents"):
        self._events = events

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory:
            return
        for path in (event.src_path, getattr(event, "dest_path", "") or ""):
            if path:
                journal = journal_of(os.fsdecode(path), self._events.pattern)
                if journal:
                    self._events.notify(journal)


class JournalEvents:
    """Debounced notifications of journals that appeared or changed under ``roots``."""

    def __init__(self, roots: list[str], pattern: str = DEFAULT_PATTERN,
                 poll_interval: float | None = None, debounce_s: float = DEFAULT_DEBOUNCE_S,
                 max_delay_s: float = DEFAULT_MAX_DELAY_S):
        self.roots = [os.path.abspath(r) for r in roots]
        self.pattern = pattern
        self.debounce_s = debounce_s
        self.max_delay_s = max_delay_s
        if poll_interval is None:
            polling = any(needs_polling(r) for r in self.roots)
            poll_interval = AUTO_POLL_INTERVAL_S if polling else 0
        self.poll_interval = poll_interval
        self.mode = "poll" if poll_interval else "native"
        self._pending: set[str] = set()
        self._first_event = 0.0
        self._last_event = 0.0
        self._cond = threading.Condition()
        self._observer = None if poll_interval else Observer()
        if self._observer is not None:
            self._observer.name = "comet-upload.fs-events"
            handler = _Handler(self)
            for root in self.roots:
                self._observer.schedule(handler, root, recursive=True)

    @property
    def observing(self) -> bool:
        """Native events come from an observer; polling relies on the daemon's scan."""
        return self._observer is not None

    def start(self) -> "JournalEvents":
        if self._observer is not None:
            self._observer.daemon = True
            self._observer.start()
        return self

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(5)
        with self._cond:
            self._cond.notify_all()

    def notify(self, journal: str) -> None:
        """Record that ``journal`` changed (also used by periodic rescans)."""
        with self._cond:
            now = time.monotonic()
            if not self._pending:
                self._first_event = now
            self._last_event = now
            self._pending.add(journal)
            self._cond.notify_all()

    def wait(self, timeout: float) -> set[str]:
        """Journals changed since the last call, once they settle; empty on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                now = time.monotonic()
                if self._pending and (now - self._last_event >= self.debounce_s
                                      or now - self._first_event >= self.max_delay_s):
                    out, self._pending = self._pending, set()
                    return out
                if now >= deadline:
                    return set()
                if self._pending:
                    wake = min(self._last_event + self.debounce_s,
                               self._first_event + self.max_delay_s, deadline)
                else:
                    wake = deadline
                self._cond.wait(max(0.0, wake - now))
