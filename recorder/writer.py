"""The journal writer: a bounded in-memory queue drained by one background thread.

The hot path (``Experiment.log_metric``) only appends a tuple to a ``collections.deque``
(thread-safe, no lock). The writer thread wakes every ``flush_interval`` seconds, encodes what
is queued to compact JSON and inserts it with one ``executemany`` per transaction. So:

* what a call has returned for is durable within about ``flush_interval`` plus the time to
  write the backlog (bounded by ``max_queue``): the default keeps that under 1 s;
* the queue is bounded: past ``max_queue`` the caller waits for the writer (never drops),
  unless the writer is failing, in which case calls are counted as lost instead of hanging
  the training loop;
* every failure (disk full, journal deleted, locked database) is reported once on stderr
  and through ``logging``, counted, and summarised by ``close()``;
* one bad call never poisons a batch: when a batch fails on a value (not on the disk), it is
  written again row by row; a string with a lone surrogate (a file name from ``os.listdir``
  under ``LC_ALL=C``) is stored with the surrogate escaped as the text ``\\udce9``, any
  other failing row is reported and counted, and the rest is written;
* ``flush()`` without a timeout (what ``durability="call"`` uses) waits for the write, but
  at most ``FAILING_FLUSH_WAIT_S`` once the writer is failing: the loop goes on.

Fork safety: a child process never uses the parent's SQLite connection or thread. An
``os.register_at_fork`` hook gives every writer in the child an empty queue, fresh locks and a
fresh thread; the inherited connection is parked, never used or closed (closing it could
checkpoint or delete the parent's WAL). SQLite's own advice: do not carry a connection across
``fork()``. A forked child writes what it queued before it leaves, also through
``multiprocessing``'s ``os._exit`` and a ``SIGTERM`` (see :mod:`.child_exit`).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
import weakref
from collections import deque
from typing import Final

from comet_journal.recorder import child_exit, row_insert
from comet_journal.recorder.encoding import ENCODERS, encode_payload
from comet_journal.recorder.reporting import report_problem
from comet_journal.schema import blobs as blob_store
from comet_journal.schema.journal import create_for_recording, sqlite_connect

logger = logging.getLogger(__name__)

DEFAULT_FLUSH_INTERVAL_S: Final = 0.2
DEFAULT_MAX_QUEUE: Final = 50_000
BIG_BATCH: Final = 5_000  # drain again at once, without waiting, when this much is queued
RETRY_PAUSE_S: Final = 0.5
FAILING_FLUSH_WAIT_S: Final = 1.0  # the most an untimed flush waits on a failing writer

class Flush:
    """A marker in the queue: set once everything queued before it is committed."""

    __slots__ = ("done", "ok")

    def __init__(self):
        self.done = threading.Event()
        self.ok = True


class WriterStats:
    __slots__ = ("journaled", "lost", "errors", "last_error")

    def __init__(self):
        self.journaled = 0
        self.lost = 0
        self.errors = 0
        self.last_error = ""

    def as_dict(self) -> dict:
        return {"journaled": self.journaled, "lost": self.lost, "errors": self.errors,
                "last_error": self.last_error}


_INHERITED_CONNECTIONS: list = []  # parked in forked children, never closed there
_WRITERS: "weakref.WeakSet[JournalWriter]" = weakref.WeakSet()


class JournalWriter:
    """Appends calls to one journal file from one process (shared by its experiments)."""

    def __init__(self, path: str, *, flush_interval: float = DEFAULT_FLUSH_INTERVAL_S,
                 max_queue: int = DEFAULT_MAX_QUEUE, synchronous: str = "NORMAL",
                 max_journal_bytes: int | None = None):
        self.path = os.path.abspath(path)
        create_for_recording(self.path)  # create and migrate, then raw access
        self.flush_interval = flush_interval
        self.max_queue = max_queue
        self.synchronous = synchronous
        self.max_journal_bytes = max_journal_bytes
        self.stats = WriterStats()
        self._reported: set[str] = set()
        self._init_process_state()
        _WRITERS.add(self)

    # --- process-local state (rebuilt after fork) --------------------------------------

    def _init_process_state(self) -> None:
        # The same deque object survives a fork (experiments hold it for their hot path);
        # the child empties it, since the parent writes what was queued before the fork.
        if hasattr(self, "queue"):
            self.queue.clear()
        else:
            self.queue: deque = deque()
        self._wake = threading.Event()
        self._room = threading.Condition(threading.Lock())
        self._conn_lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._inode: tuple[int, int] | None = None
        self._healthy = True
        self._closing = False
        self._closed = False
        self._pid = os.getpid()
        self._thread = threading.Thread(target=self._run, name="recorder.journal-writer",
                                        daemon=True)
        self._thread.start()

    def _after_fork_in_child(self) -> None:
        if self._conn is not None:
            _INHERITED_CONNECTIONS.append(self._conn)
        closed = self._closed
        self._init_process_state()
        if closed:
            self.close()

    # --- called by the experiment ---------------------------------------------------------

    def wait_for_room(self) -> None:
        """Called by a caller that found the queue over ``max_queue``: slow it down.

        While the writer works, the caller waits (nothing is dropped). When the writer is
        failing, waiting could hang the training loop forever, so the newest call is counted
        as lost instead.
        """
        queue = self.queue
        while len(queue) > self.max_queue:
            if not self._healthy or self._closed:
                try:
                    queue.pop()
                except IndexError:
                    return
                self.stats.lost += 1
                self._report("queue-overflow", "the journal writer is failing and its queue "
                             f"is full; calls are being lost ({self.stats.last_error})")
                return
            self._wake.set()
            with self._room:
                self._room.wait(0.05)

    def connection(self) -> sqlite3.Connection:
        """A connection of this process for synchronous work (blobs, experiment rows)."""
        conn = sqlite_connect(self.path)
        conn.execute(f"PRAGMA synchronous={self.synchronous}")
        return conn

    def put_blob_stream(self, stream) -> tuple[str, int]:
        conn = self.connection()
        try:
            self._apply_size_cap(conn)
            return blob_store.put_stream(conn, stream)
        finally:
            conn.close()

    def flush(self, timeout: float | None = None) -> bool:
        """Make everything queued so far durable; True if it was written in time.

        ``timeout=None`` waits for the write, but not while the writer is failing: then it
        returns False at once, or within ``FAILING_FLUSH_WAIT_S`` when the failure starts
        during the wait (a full disk must not stop a ``durability="call"`` loop).
        """
        if self._closed or not self._thread.is_alive():
            return not self.queue
        marker = Flush()
        self.queue.append(marker)
        self._wake.set()
        if timeout is None:
            if not self._healthy:
                return False
            failing_since = None
            while not marker.done.wait(0.05):
                if self._healthy:
                    failing_since = None
                elif failing_since is None:
                    failing_since = time.monotonic()
                elif time.monotonic() - failing_since > FAILING_FLUSH_WAIT_S:
                    return False
        elif not marker.done.wait(timeout):
            return False
        return marker.ok

    def close(self, timeout: float = 30.0) -> dict:
        """Flush, stop the thread, close the connection; return the counters."""
        if self._closed:
            return self.stats.as_dict()
        if self._thread.is_alive():
            # Closing first: a failing batch then gets one last attempt instead of retries,
            # so end() is bounded even when the disk stays full.
            self._closing = True
            self.flush(timeout)
            self._wake.set()
            self._thread.join(timeout)
        self._closed = True
        pending = sum(1 for item in self.queue if not isinstance(item, Flush))
        if pending:
            self.stats.lost += pending
            self.queue.clear()
            self._report("close-timeout", f"{pending} calls were still queued when the writer "
                                          "stopped and could not be journaled")
        return self.stats.as_dict()

    # --- the writer thread ------------------------------------------------------------------

    def _run(self) -> None:
        child_exit.leave_termination_to_main_thread()
        queue = self.queue
        while True:
            if len(queue) < BIG_BATCH:
                self._wake.wait(self.flush_interval)
                self._wake.clear()
            if queue:
                self._drain(queue)
            elif self._closing:
                break
        with self._conn_lock:
            if self._conn is not None and self._pid == os.getpid():
                try:
                    self._conn.close()
                except sqlite3.Error:
                    pass
                self._conn = None

    def _drain(self, queue: deque) -> None:
        n = len(queue)
        popleft = queue.popleft
        batch = [popleft() for _ in range(n)]
        markers = [item for item in batch if item.__class__ is Flush]
        if markers:
            batch = [item for item in batch if item.__class__ is not Flush]
        ok = self._write_with_retries(batch) if batch else True
        for marker in markers:
            marker.ok = ok
            marker.done.set()
        with self._room:
            self._room.notify_all()

    def _write_with_retries(self, batch: list) -> bool:
        """Write a batch; on failure keep retrying while the process lives and we are open."""
        rows = self._encode(batch)
        complete = len(rows) == len(batch)
        while True:
            try:
                written = self._insert(rows)
            except Exception as exc:  # never let the thread die: report, count, retry
                if row_insert.disk_full(exc) and len(rows) > 1:
                    consumed, written = row_insert.write_what_fits(self._insert, rows)
                    self.stats.journaled += written
                    complete = complete and written == consumed
                    rows = rows[consumed:]
                    if not rows:
                        return complete
                self._healthy = False
                self.stats.errors += 1
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                permanent = isinstance(exc, _JournalGone)
                self._report(type(exc).__name__, f"cannot write to the journal: {exc}"
                             + ("" if permanent else "; retrying"))
                if permanent or self._closing:
                    self.stats.lost += len(rows)
                    return False
                time.sleep(RETRY_PAUSE_S)
                continue
            self.stats.journaled += written
            if not self._healthy:
                self._healthy = True
                logger.warning("comet-journal: writing to %s works again", self.path)
                self._reported.clear()
            return complete and written == len(rows)

    def _encode(self, batch: list) -> list[tuple]:
        encoders = ENCODERS
        rows = []
        append = rows.append
        for endpoint, exp_id, t, payload in batch:
            try:
                text = (encoders[endpoint](payload) if payload.__class__ is tuple
                        else encode_payload(payload))
                append((endpoint, exp_id, int(t * 1000), text))
            except Exception as exc:  # one bad call, not the batch
                self._lose_row(endpoint, exc)
        return rows

    def _insert(self, rows: list[tuple]) -> int:
        with self._conn_lock:
            return row_insert.insert_rows(self._connection(), rows, self._lose_row,
                                          self._report)

    def _lose_row(self, endpoint: str, exc: Exception) -> None:
        self.stats.lost += 1
        self.stats.errors += 1
        self.stats.last_error = f"{type(exc).__name__}: {exc}"
        self._report(f"bad-row-{type(exc).__name__}", f"one {endpoint} call could not be "
                     f"journaled and was dropped ({type(exc).__name__}: {exc}); the others "
                     "are written")

    def _connection(self) -> sqlite3.Connection:
        self._check_file()
        if self._conn is None:
            conn = self.connection()
            self._apply_size_cap(conn)
            self._conn = conn
        return self._conn

    def _apply_size_cap(self, conn: sqlite3.Connection) -> None:
        if self.max_journal_bytes:
            page_size = conn.execute("PRAGMA page_size").fetchone()[0]
            conn.execute(f"PRAGMA max_page_count={max(1, self.max_journal_bytes // page_size)}")

    def _check_file(self) -> None:
        """Notice a journal deleted or replaced under us (SQLite would write into a ghost)."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise _JournalGone(f"{self.path} was deleted while recording") from None
        inode = (st.st_dev, st.st_ino)
        if self._inode is None:
            self._inode = inode
        elif inode != self._inode:
            raise _JournalGone(f"{self.path} was replaced by another file while recording")

    def _report(self, kind: str, message: str) -> None:
        if kind in self._reported:
            return
        self._reported.add(kind)
        report_problem(message)


class _JournalGone(RuntimeError):
    pass


def _after_fork_in_child() -> None:
    for writer in list(_WRITERS):
        writer._after_fork_in_child()
    child_exit.arm(close_writers_before_exit)


def close_writers_before_exit(reason: str,
                              timeout: float = child_exit.EXIT_FLUSH_TIMEOUT_S) -> None:
    """Write what this (forked) process queued, before it leaves; report what could not be."""
    pid = os.getpid()
    for writer in list(_WRITERS):
        if writer._pid != pid or writer._closed:
            continue
        stats = writer.close(timeout)
        if stats["lost"]:
            report_problem(f"forked process {pid} is leaving ({reason}) with {stats['lost']} "
                           f"calls not journaled into {writer.path} "
                           f"({stats['last_error'] or 'the writer did not finish in time'})")


os.register_at_fork(after_in_child=_after_fork_in_child)
