"""The sync daemon: upload every journal under some directories, as they appear and grow.

``WatchDaemon.run()`` is the loop behind ``comet-upload watch DIR...``:

* **Discovery**: an initial scan, then debounced file events (:mod:`comet_journal.uploader.watch.fs_events`:
  inotify, or polling on network file systems), plus a periodic rescan as a safety net for
  missed events. Journals are recognised by their header, not their name.
* **Fairness**: a bounded pool of uploads (``parallel``); each upload runs for at most
  ``time_slice_s`` and goes to the back of the queue if more is pending, so one huge journal
  cannot starve the others. One :class:`~comet_journal.uploader.retry.ServerGate` is shared by every upload
  to the server, so a 429 pauses all of them.
* **Live runs**: a journal still being written is uploaded up to its current end on every
  change; while its run is live the daemon keeps its experiments marked alive on the server
  (``set-status``, at the interval the server asks for). When the journal records its end
  and everything is on the server, the journal is marked fully uploaded (and kept, moved or
  deleted as asked). A journal whose writer died without ending it is reported as stale.
* **Fault isolation**: an unreadable, corrupt or rejected journal is reported and skipped
  (retried when it changes); nothing a journal does can crash the daemon.
* **Company**: every upload holds the journal's upload lock (:mod:`comet_journal.uploader.journal.lock`); a journal
  busy with another daemon or a manual ``comet-upload`` is skipped and tried again later.
* **Stopping**: :meth:`WatchDaemon.stop` lets in-flight requests finish (progress is
  durable either way) and returns within a few seconds.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sqlite3
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable

from comet_journal.schema.errors import (JournalError, JournalLockedError, JournalNotFoundError,
                                         NotAJournalError)
from comet_journal.uploader.config import UploadConfig
from comet_journal.uploader.journal.discovery import classify, iter_matching
from comet_journal.uploader.errors import AuthError, LockedError, UploadError, redact
from comet_journal.uploader.watch.entries import (BUSY, BUSY_RETRY_S, DEFAULT_PARALLEL,
                                                  DEFAULT_RESCAN_S, DEFAULT_TIME_SLICE_S,
                                                  ERROR_RETRY_S, FAILED, LIVE_STATE, QUEUED,
                                                  STALE_STATE, UPLOADED, UPLOADING, WAITING,
                                                  JournalEntry, WatchOptions)
from comet_journal.uploader.watch.events import EventLog
from comet_journal.uploader.watch.fs_events import JournalEvents
from comet_journal.uploader.watch.journal_files import after_upload, journal_signature
from comet_journal.uploader.watch.keepalive import KeepAlive
from comet_journal.uploader.watch.lease import Leases
from comet_journal.uploader.watch.sources import WAITING_DETAIL, RunSources
from comet_journal.uploader.journal.liveness import ENDED, LIVE, STALE
from comet_journal.uploader.replay.summary import Summary
from comet_journal.uploader.wire.capabilities import SDK_ROUTES_HINT
from comet_journal.uploader.wire.retry import ServerGate
from comet_journal.uploader.importer.archive_watch import ArchiveImports
from comet_journal.uploader.upload import upload_journal

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_PARALLEL", "DEFAULT_RESCAN_S", "DEFAULT_TIME_SLICE_S", "WatchDaemon",
           "WatchOptions", "JournalEntry"]

class WatchDaemon:
    """Uploads every journal under ``roots`` to one server until :meth:`stop`."""

    def __init__(self, roots: list[str], config: UploadConfig,
                 options: WatchOptions | None = None, log: EventLog | None = None,
                 upload: Callable[..., Summary] = upload_journal):
        self.roots = [os.path.abspath(r) for r in roots]
        for root in self.roots:
            if not os.path.isdir(root):
                raise UploadError(f"{root}: not a directory", "give the directories the "
                                  "recorder writes journals into")
        self.config = config
        self.options = options or WatchOptions()
        self.log = log or EventLog()
        self._upload = upload
        self._stop = threading.Event()
        self.gate = ServerGate(self.options.replay.policy.with_stop_event(self._stop), config.url)
        self.entries: dict[str, JournalEntry] = {}
        self._running: dict[str, Future] = {}
        self._upload_stops: set[threading.Event] = set()
        self._ignored: set[str] = set()  # files matching the pattern that are no journals
        self._lock = threading.RLock()  # stop() runs in a signal handler, maybe while held
        self._fatal: str | None = None
        self.events = JournalEvents(self.roots, self.options.pattern,
                                    self.options.poll_interval)
        self._keepalive = KeepAlive(config, self.options.replay.policy, self._stop,
                                    self._live_server_keys) if self.options.keepalive else None
        self._archives = ArchiveImports(self.options.state_dir, self.log)
        self._sources = RunSources(config.state_dir, self.options.stale_after_s)
        self._leases = Leases(self.options.lease_dir, self.options.lease_ttl_s) \
            if self.options.lease_dir else None

    # --- control ----------------------------------------------------------------------------

    def stop(self) -> None:
        """Graceful stop: no new uploads; in-flight ones finish their requests and return."""
        self._stop.set()
        with self._lock:
            for event in self._upload_stops:
                event.set()
        self.events.notify("")  # wake the loop

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self) -> int:
        """Serve until :meth:`stop`; returns 0, or 1 after a fatal error (a refused key)."""
        self.log("start", f"watching {', '.join(self.roots)} ({self.events.mode} events"
                 + (f", every {self.events.poll_interval:g}s" if self.events.mode == "poll"
                    else "") + f") -> {self.config.url}",
                 roots=self.roots, mode=self.events.mode, server=self.config.url)
        self.events.start()
        if self._keepalive:
            self._keepalive.start()
        pool = ThreadPoolExecutor(max_workers=max(1, self.options.parallel),
                                  thread_name_prefix="comet-upload.watch")
        try:
            self._scan()
            last_scan = time.monotonic()
            scan_every = self.options.rescan_interval_s
            if self.events.mode == "poll":  # the one periodic scan (no polling observer)
                scan_every = min(scan_every, self.events.poll_interval)
            while not self._stop.is_set():
                for path in self.events.wait(timeout=min(0.5, scan_every)):
                    if path:
                        self._changed(path)
                if time.monotonic() - last_scan >= scan_every:
                    self._scan()
                    last_scan = time.monotonic()
                self._schedule(pool)
        finally:
            self._stop.set()
            self.events.stop()
            pool.shutdown(wait=True, cancel_futures=True)
            if self._keepalive:
                self._keepalive.join()
            if self._leases is not None:
                self._leases.release_all()
            self.log("stop", "stopped; progress is kept in the state directory")
        return 1 if self._fatal else 0

    # --- discovery ----------------------------------------------------------------------------

    def _scan(self) -> None:
        try:
            paths = list(iter_matching(self.roots, self.options.pattern))
        except OSError as exc:
            self.log("error", f"cannot scan: {exc}", level="error")
            return
        for path in paths:
            self._changed(path, from_scan=True)
        for journal in self._archives.journals(self.roots):  # OfflineExperiment *.zip
            self._changed(journal, from_scan=True)

    def _changed(self, path: str, from_scan: bool = False) -> None:
        """A journal appeared or may have changed: queue it if it holds new calls.

        Growth is judged by the journal's last ``seq``, not by file times: readers (our own
        included) touch the WAL and shared-memory files, and our uploads write progress into
        the journal, none of which is new work.
        """
        with self._lock:
            entry = self.entries.get(path)
            if entry is None:
                if not os.path.exists(path):
                    return
                try:  # a sealed run is read from its verified segments only: the live
                    # file's header (torn or ESTALE across hosts) is not even looked at
                    broken = None if self._sources.sealed.applies(path) else classify(path)
                except NotAJournalError as exc:
                    if path not in self._ignored:  # another program's file: say so once
                        self._ignored.add(path)
                        self.log("ignored", f"{exc}; not uploaded", journal=path)
                    return
                entry = self.entries[path] = JournalEntry(
                    path, signature=journal_signature(path))
                self.log("found", f"journal {path}", journal=path)
                if broken is not None:
                    self._set(entry, FAILED, str(broken), level="error", locked=True)
                return
            if entry.state in (UPLOADING, QUEUED):
                return
            if entry.state == FAILED:  # retried only when the file itself changed
                if journal_signature(path) != entry.signature:
                    entry.state, entry.next_try = QUEUED, 0.0
                return
            if from_scan and entry.state != LIVE_STATE:  # a scan costs a stat when unchanged
                signature = journal_signature(path)
                if signature == entry.scanned:
                    return
                entry.scanned = signature
        end = self._sources.readable_end(path)
        with self._lock:
            if end is not None and end > entry.seen_end and entry.state not in (UPLOADING,
                                                                                 QUEUED):
                entry.state, entry.next_try = QUEUED, 0.0
            elif from_scan and entry.state == LIVE_STATE:
                self._recheck_liveness(entry)

    def _recheck_liveness(self, entry: JournalEntry) -> None:
        try:
            liveness = self._sources.liveness(entry.path)
        except sqlite3.Error:
            return
        if liveness.state == ENDED:  # ended with no growth since its last turn (the caller
            entry.state, entry.next_try = QUEUED, 0.0  # holds the lock): a final turn
        elif liveness.state == STALE:
            self._set(entry, STALE_STATE, f"no growth for {liveness.idle_s:.0f}s and no live "
                      "writer: its run died without ending (not marked finished)",
                      level="warning", locked=True)

    # --- scheduling -----------------------------------------------------------------------------

    def _schedule(self, pool: ThreadPoolExecutor) -> None:
        now = time.monotonic()
        with self._lock:
            for path, future in list(self._running.items()):
                if future.done():
                    del self._running[path]
            # Fairness: the journal whose last turn started longest ago goes first, so a
            # journal that keeps growing cannot keep its place in the pool.
            ready = [e for e in self.entries.values()
                     if e.state == QUEUED and e.next_try <= now and e.path not in self._running]
            ready.sort(key=lambda e: e.last_started)
            for entry in ready:
                if len(self._running) >= max(1, self.options.parallel) or self._stop.is_set():
                    break
                if self._leases is not None and not self._leases.acquire(entry.path):
                    if self._leases.finished(entry.path):
                        self._set(entry, UPLOADED, "uploaded by another daemon", locked=True)
                    else:
                        self._set(entry, BUSY, "another daemon holds its lease",
                                  retry_in=BUSY_RETRY_S, locked=True)
                    continue
                entry.state = UPLOADING
                entry.last_started = now
                entry.signature = journal_signature(entry.path)
                end = self._sources.readable_end(entry.path)
                entry.seen_end = end if end is not None else entry.seen_end
                self._running[entry.path] = pool.submit(self._upload_one, entry)

    def _upload_one(self, entry: JournalEntry) -> None:
        """One time slice of one journal. Never raises: every outcome becomes a state."""
        try:
            self._upload_slice(entry)
        except Exception as exc:  # a bug of ours: said, never lost in the pool's future
            logger.debug("turn of %s failed", entry.path, exc_info=True)
            self._set(entry, FAILED, f"{type(exc).__name__}: {redact(str(exc))}", level="error",
                      retry_in=ERROR_RETRY_S)
        finally:
            with self._lock:
                if entry.state == UPLOADING:  # an outcome that set no state: look again
                    entry.state, entry.next_try = QUEUED, time.monotonic() + ERROR_RETRY_S

    def _upload_slice(self, entry: JournalEntry) -> None:
        # Each upload gets its own stop event (the replayer sets it when it finishes);
        # stop() sets every one of them.
        upload_stop = threading.Event()
        with self._lock:
            self._upload_stops.add(upload_stop)
            if self._stop.is_set():
                upload_stop.set()
        wanted = {"gate": self.gate, "stop": upload_stop,
                  "time_slice_s": self.options.time_slice_s}
        have = {f.name for f in dataclasses.fields(self.options.replay)}
        replay = dataclasses.replace(self.options.replay,
                                     **{k: v for k, v in wanted.items() if k in have})
        try:
            try:
                source = self._sources.upload_path(entry.path)
                if source is None:
                    self._set(entry, LIVE_STATE, WAITING_DETAIL)
                    return
                summary = self._upload(source, self.config, replay)
            finally:
                with self._lock:
                    self._upload_stops.discard(upload_stop)
        except LockedError as exc:
            self._set(entry, BUSY, redact(exc.message), retry_in=BUSY_RETRY_S)
            return
        except JournalLockedError as exc:  # another program holds the file: not damage
            self._set(entry, BUSY, str(exc), retry_in=BUSY_RETRY_S)
            return
        except JournalNotFoundError as exc:  # not there *yet* (nothing sealed readable): wait
            self._set(entry, WAITING, str(exc), retry_in=BUSY_RETRY_S)
            return
        except JournalError as exc:
            self._set(entry, FAILED, str(exc), level="error")
            return
        except AuthError as exc:
            self._fatal = exc.message
            self._set(entry, FAILED, redact(exc.message), level="error")
            self.log("fatal", f"the server refused the API key: {redact(exc.message)}; "
                     "stopping", level="error")
            self.stop()
            return
        except UploadError as exc:
            self._set(entry, QUEUED, redact(exc.message), retry_in=ERROR_RETRY_S,
                      level="warning")
            return
        except Exception as exc:  # a bug or an odd journal must never take the daemon down
            logger.debug("upload of %s failed", entry.path, exc_info=True)
            self._set(entry, FAILED, f"{type(exc).__name__}: {redact(str(exc))}",
                      level="error")
            return
        self._after_slice(entry, summary)

    def _after_slice(self, entry: JournalEntry, summary: Summary) -> None:
        entry.server_keys = tuple(e.server_key for e in summary.experiments if e.server_key)
        entry.uploaded_calls += summary.uploaded
        if summary.uploaded:
            self.log("sent", f"{entry.path}: {summary.uploaded} calls uploaded",
                     journal=entry.path, level="debug",
                     calls=summary.uploaded, total_uploaded=entry.uploaded_calls)
        if summary.rejected:
            first = summary.rejected[0]
            self._set(entry, FAILED, f"{len(summary.rejected)} calls rejected by the server "
                      f"(first: call {first.get('seq')}: {first.get('message')}); send them "
                      "again with comet-upload --retry-rejected", level="error")
            return
        if getattr(summary, "more_pending", False) and not self._stop.is_set():
            self._set(entry, QUEUED, "more pending")  # to the back of the queue
            entry.next_try = time.monotonic()
            return
        try:
            liveness = self._sources.liveness(entry.path)
        except sqlite3.Error as exc:
            self._set(entry, FAILED, f"cannot read: {exc}", level="error")
            return
        entry.live = liveness.state == LIVE  # keep-alives go to live runs, queued or not
        end = self._sources.readable_end(entry.path)
        if end is not None and end > entry.seen_end:
            self._set(entry, QUEUED, "grew while uploading")
        elif liveness.state == ENDED and summary.not_sendable:
            # not finished (nor deleted or moved after upload): calls are kept pending in it
            held = sum(summary.not_sendable.values())
            self._set(entry, UPLOADED, f"run ended; {held} calls this server cannot take; "
                      f"{SDK_ROUTES_HINT}", level="warning")
        elif liveness.state == ENDED:
            self._finished(entry)
        elif liveness.state == LIVE:
            self._set(entry, LIVE_STATE, f"live, idle {liveness.idle_s:.0f}s")
        elif liveness.state == STALE:
            self._set(entry, STALE_STATE, f"no growth for {liveness.idle_s:.0f}s and no live "
                      "writer: its run died without ending (not marked finished)",
                      level="warning")

    def _finished(self, entry: JournalEntry) -> None:
        from comet_journal.uploader.journal.progress import Progress
        progress = Progress(self._sources.upload_path(entry.path), self.config.identity, self.config.url,
                            self.config.workspace, self.config.project, self.config.state_dir)
        try:
            progress.mark_completed()
        finally:
            progress.close()
        self._set(entry, UPLOADED, "run ended and everything is on the server")
        if self._leases is not None:
            self._leases.finish(entry.path)
        action = self.options.after_upload
        try:
            done = after_upload(entry.path, action, self.config.state_dir)
        except OSError as exc:
            self.log("error", f"{entry.path}: after-upload {action} failed: {exc}",
                     journal=entry.path, level="error")
            return
        if done is not None:
            self.log(done[0], done[1], journal=entry.path, **done[2])
            with self._lock:
                self.entries.pop(entry.path, None)

    def _set(self, entry: JournalEntry, state: str, detail: str, retry_in: float | None = None,
             level: str = "info", locked: bool = False) -> None:
        if not locked:
            with self._lock:
                return self._set(entry, state, detail, retry_in, level, locked=True)
        entry.state = state
        entry.detail = detail
        if retry_in is not None:
            entry.state = QUEUED
            entry.next_try = time.monotonic() + retry_in
        shown = state if retry_in is None else f"{state}, retry in {retry_in:g}s"
        key = f"{shown}:{detail}" if state in (FAILED, STALE_STATE, BUSY) else shown
        if key != entry.reported and detail != "more pending":
            entry.reported = key
            retry = "" if retry_in is None else f" (retry in {retry_in:g}s)"
            shown_detail = detail if detail.startswith(entry.path) else f"{entry.path}: {detail}"
            self.log(state, f"{shown_detail}{retry}", journal=entry.path,
                     state=state, detail=detail, level=level)

    def _live_server_keys(self) -> set[str]:
        return {k for e in self.snapshot() if e.live and e.state not in (UPLOADED, STALE_STATE, FAILED)
                for k in e.server_keys}

    def snapshot(self) -> list[JournalEntry]:
        with self._lock:
            return [dataclasses.replace(e) for e in self.entries.values()]
