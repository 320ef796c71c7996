"""The replay engine: a journal's pending calls to one server, in order, exactly once.

Threads: one *dispatcher* (the caller's thread) owns the journal's progress and all ordering
state; ``concurrency`` *workers* send requests (each with its own HTTP session and journal read
connection). Work flows dispatcher -> workers through a queue, results come back through
another; nothing else is shared except the :class:`~comet_journal.uploader.retry.ServerGate`.

The dispatcher admits calls from the :class:`~comet_journal.uploader.calls.JournalReader` into a bounded
window (``window`` calls read but not settled) and sends each as soon as the ordering rules of
:mod:`comet_journal.uploader.calls` allow:

* an experiment's calls wait for its creation, whose server key is committed to the journal
  before they are released; barriers (stop/archive/delete/restore) wait for every earlier call
  of their experiment and hold back every later one; project calls do the same globally;
* an ordered stream has one call in flight, and its next call goes only after the previous
  one's ack is **committed** (so a crash leaves at most one call per ordered stream of unknown
  outcome, which a read-back can then decide);
* positioned calls go as soon as a worker is free; their acks are committed in batches.

Exactly once. Before a call is handed to a worker, ``sent_through`` covers it (durably), so
after a crash the calls of unknown outcome are known. A call whose outcome is unknown, from a
previous run or because the connection failed after the request was sent (timeout, reset,
5xx), is first looked up through the read API (:mod:`comet_journal.uploader.readback`); only if the server
does not have it is it sent again. Experiments are created by client key where the server
offers it (``logger/add/run``: idempotent by key), else by ``write/experiment/create`` after
looking for an experiment an interrupted create may have made. Every request carries a stable
``Idempotency-Key`` (``<journal id>-<seq>``) for servers that deduplicate.

Batch mode's metric points travel as :class:`~comet_journal.uploader.bulk.MetricGroup` units (up to
``batch_size`` rows, one request, one settlement): see :mod:`comet_journal.uploader.bulk`. The watermark is
the seq below the oldest unsettled unit (a heap of units' first seqs), never above what the
reader has handed over.

Stopping early: when ``Options.stop`` is set (from any thread) or ``Options.time_slice_s`` has
passed, nothing new is admitted or handed to a worker; jobs not yet started are given back;
requests on the wire finish (a time slice waits for them; a stop waits ``STOP_GRACE_S`` at most,
then abandons them: they stay below ``sent_through``, so a later run reads them back). Acks
are committed, ``sent_through`` is brought back down to what may really have been sent, and
:class:`Summary` says ``more_pending``.
"""

from __future__ import annotations

import heapq
import logging
import queue
import sqlite3
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from comet_journal.schema.journal import sqlite_connect
from comet_journal.uploader.calls import BARRIER, CREATE, GLOBAL, Call, JournalReader, journal_end
from comet_journal.uploader.batches import BATCH_ENDPOINT
from comet_journal.uploader.bulk import BATCH_NAME, BulkReader, MetricGroup
from comet_journal.uploader.client import Client
from comet_journal.uploader.config import UploadConfig
from comet_journal.uploader.errors import AuthError, Stopped, UploadError, redact
from comet_journal.uploader.progress import ExperimentTarget, Progress
from comet_journal.uploader.requests_builder import Overrides, RequestBuilder
from comet_journal.uploader.retry import RetryPolicy, ServerGate
from comet_journal.uploader.sender import Sender
from comet_journal.uploader.settle import GROUP_ACK_DEFER_S, Settlement, _Suppress as _suppress

logger = logging.getLogger(__name__)

DEFAULT_CONCURRENCY = 8
SENT_STEP = 256  # raise sent_through this far ahead: one commit per this many calls at most
ACK_BATCH = 512
ACK_INTERVAL_S = 0.1
STOP_GRACE_S = 2.0  # after a stop, how long requests on the wire may take before abandoning
WORKER_JOIN_S = 5.0
_NOT_STARTED = Stopped(started=False)


@dataclass
class Options:
    """How to replay. ``batch``: use the SDK's batch endpoints where the server has them.

    ``gate``: a :class:`ServerGate` shared with other uploads to the same server (one 429
    pause, back-off and deadline for all of them); by default the replay makes its own.
    ``time_slice_s``: stop admitting calls after this long and return once what is in flight
    has settled (``Summary.more_pending`` says whether calls are left). ``stop``: an event any
    thread may set for the same graceful end (requests on the wire get ``STOP_GRACE_S``).
    """

    concurrency: int = DEFAULT_CONCURRENCY
    window: int = 0  # 0: derived from concurrency
    batch: bool = False
    batch_size: int = 1000
    retry_rejected: bool = False
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    on_progress: Callable[["Summary"], None] | None = None
    stop: threading.Event | None = None
    gate: ServerGate | None = None
    time_slice_s: float | None = None


@dataclass
class ExperimentResult:
    key: str  # the journal's key
    name: str | None
    server_key: str | None
    link: str | None
    created_by: str | None


@dataclass
class Summary:
    """What one upload of one journal did (``as_dict`` is the ``--json`` form)."""

    journal: str
    server: str
    total: int = 0  # calls in the journal
    pending: int = 0  # calls to upload when this run started
    uploaded: int = 0
    skipped: int = 0  # already on the server (earlier runs or found by read-back)
    found_by_readback: int = 0
    rejected: list[dict] = field(default_factory=list)
    retried: int = 0  # retry attempts (transient failures)
    bytes_sent: int = 0
    throttled: int = 0
    elapsed_s: float = 0.0
    experiments: list[ExperimentResult] = field(default_factory=list)
    batches: int = 0
    error: str | None = None
    more_pending: bool = False  # stopped early (time slice, stop): calls are left to upload

    @property
    def done(self) -> int:
        return self.uploaded + self.found_by_readback + len(self.rejected)

    def as_dict(self) -> dict:
        return {
            "journal": self.journal, "server": self.server, "calls_total": self.total,
            "calls_pending_at_start": self.pending, "uploaded": self.uploaded,
            "skipped_already_uploaded": self.skipped + self.found_by_readback,
            "found_by_readback": self.found_by_readback,
            "rejected": len(self.rejected), "rejected_calls": self.rejected,
            "retried": self.retried, "throttled": self.throttled,
            "bytes_sent": self.bytes_sent, "batches": self.batches,
            "elapsed_s": round(self.elapsed_s, 3),
            "calls_per_s": round(self.uploaded / self.elapsed_s, 1) if self.elapsed_s else None,
            "experiments": [e.__dict__ for e in self.experiments], "error": self.error,
            "more_pending": self.more_pending,
        }


@dataclass
class _Gate:
    """Ordering state of one experiment."""

    target: ExperimentTarget
    outstanding: int = 0  # admitted, not settled, not barriers
    barrier: Call | None = None
    barrier_sent: bool = False
    blocked: deque = field(default_factory=deque)
    create_rejected: str | None = None


class _Stream:
    __slots__ = ("waiting", "inflight", "batch", "flying")

    def __init__(self, batch: bool = False, flying: list | None = None):
        self.waiting: deque = deque()
        self.inflight = 0
        self.batch = batch
        self.flying = flying  # a bulk stream's groups in flight (several at once)


class Replayer(Settlement):
    """Uploads one journal to one server. ``run()`` returns a :class:`Summary`.

    The caller holds the :class:`~comet_journal.uploader.lock.UploadLock`.
    """

    def __init__(self, path: str, config: UploadConfig, options: Options | None = None,
                 client: Client | None = None):
        self.path = path
        self.config = config
        self.options = options or Options()
        # Our own event: set when this replay ends or stops (workers, sleeps); the caller's
        # Options.stop is only ever read, as it may be shared by many replays.
        self.stop = threading.Event()
        policy = self.options.policy.with_stop_event(self.stop) \
            if self.options.policy.sleep is time.sleep else self.options.policy
        self.policy = policy
        self.gate = self.options.gate or ServerGate(policy, config.url)
        self.concurrency = max(1, self.options.concurrency)
        self.client = client or Client(config, policy, pool_size=self.concurrency)
        self.progress = Progress(path, config.identity, config.url, config.workspace,
                                 config.project)
        self.journal_id = _journal_id(self.progress.conn)
        self.summary = Summary(journal=path, server=config.url)
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        overrides = Overrides(config.workspace, config.project, config.default_workspace)
        self.builder = RequestBuilder(overrides, self.read_conn)
        self.sender = Sender(self)
        self.batch_lanes = max(1, self.concurrency // 2)  # batches in flight per experiment
        window = self.options.window or max(256, self.concurrency * 64)
        if self.options.batch:  # a group in flight, one waiting and one filling, per lane
            window = max(window, self.options.batch_size * max(8, 3 * self.batch_lanes))
        self.window = window
        self.stopping = False
        self.abandon_at: float | None = None

    # --- shared helpers -------------------------------------------------------------------

    def read_conn(self) -> sqlite3.Connection:
        """This thread's read connection to the journal (blobs, read-back context)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite_connect(self.path)
            self._local.conn = conn
            with self._conns_lock:
                self._conns.append(conn)
        return conn

    def progress_claimed_keys(self) -> set[str]:
        return set(self.claimed)

    def progress_project_id(self, workspace: str, project: str) -> str | None:
        return self.sender.project_ids.get((workspace, project))

    def idempotency_key(self, seq: int | str) -> str:
        return f"{self.journal_id}-{seq}"

    def note_sending(self) -> None:
        """A worker is about to put its job's request on the wire (see ``_worker``)."""
        self._local.sending = True

    # --- the run ----------------------------------------------------------------------------

    def run(self) -> Summary:
        started = time.monotonic()
        self.started_ms = int(time.time() * 1000)
        self.slice_end = started + self.options.time_slice_s \
            if self.options.time_slice_s is not None else None
        workers: list[threading.Thread] = []
        try:
            self.sender.probe()
            self._prepare()
            self._work: queue.Queue = queue.Queue()
            self._results: queue.Queue = queue.Queue()
            for i in range(self.concurrency):
                t = threading.Thread(target=self._worker, name=f"uploader.worker-{i}",
                                     daemon=True)
                t.start()
                workers.append(t)
            self._dispatch_loop()
        except UploadError as exc:
            self.summary.error = redact(str(exc))
            self._flush_quietly()
            with _suppress():
                self.progress.set_last_error(self.summary.error)
            raise
        except BaseException:  # Ctrl-C, a bug: what is settled stays settled
            if hasattr(self, "group_acks"):
                self._flush_quietly()
            raise
        finally:
            self.stop.set()
            for _ in workers:
                self._work.put(None)
            # abandoned requests (a stop's grace is over) are not waited for again
            limit = time.monotonic() + (0.2 if self.abandon_at is not None
                                        and time.monotonic() >= self.abandon_at
                                        else WORKER_JOIN_S)
            for t in workers:
                t.join(timeout=max(0.0, limit - time.monotonic()))
            busy = any(t.is_alive() for t in workers)
            self.summary.elapsed_s = time.monotonic() - started
            self._finish_summary()
            self.client.close()
            if not busy:  # a worker still in a request keeps its journal connection
                for conn in self._conns:
                    with _suppress():
                        conn.close()
            self.progress.close()
        return self.summary

    def _prepare(self) -> None:
        conn = self.read_conn()
        progress = self.progress
        if self.options.retry_rejected:
            progress.retry_rejected()
        self.summary.total = conn.execute("SELECT count(*) FROM calls").fetchone()[0]
        self.end_seq = journal_end(conn)
        self.sent_at_start = progress.sent_through
        args = (conn, progress.target_id, progress.acked_through, progress.sent_through,
                self.end_seq)
        if self.options.batch and self.sender.batch_ok.get(BATCH_NAME):
            self.journal = BulkReader(*args, batch_size=self.options.batch_size,
                                      enabled=lambda: self.sender.batch_ok.get(BATCH_NAME, False))
        else:
            self.journal = JournalReader(*args)
        self.reader = iter(self.journal)
        self.summary.pending = self._count_pending(conn)
        self.summary.skipped = self.summary.total - self.summary.pending
        known = progress.experiments()
        self.claimed = progress.claimed_keys()
        for row in progress.conn.execute("SELECT workspace, project, project_id FROM "
                                         "upload_projects WHERE target_id=?",
                                         (progress.target_id,)):
            self.sender.project_ids[(row[0], row[1])] = row[2]
        self.gates: dict[int, _Gate] = {}
        self.exp_rows = {r[0]: r for r in conn.execute(
            "SELECT id, key, workspace, project, name FROM experiments")}
        for exp_id in self.exp_rows:
            self.gates[exp_id] = _Gate(known.get(exp_id) or ExperimentTarget(exp_id))
        self.streams: dict[Any, _Stream] = {}
        self.global_barrier: Call | None = None
        self.global_sent = False
        self.global_blocked: deque = deque()
        self.outstanding = 0  # admitted and not settled (barriers included)
        self.in_window = 0  # calls admitted or blocked, not settled (a group counts its rows)
        self.mainline: list[int] = []  # heap: first seqs of main-line units not yet passed
        self.settled_seqs: set[int] = set()  # first seqs of settled units still in the heap
        self.retried_seqs: set[int] = set()
        self.acks: list[tuple[int, int]] = []
        # (group, acked seqs or None for all, attempts, settled at)
        self.group_acks: list[tuple[MetricGroup, list[int] | None, int, float]] = []
        self.rejects: list[tuple[int, int, int, str]] = []
        self.settled_rows = 0  # acks and rejections awaiting commit
        self.committed_pending: list = []  # settled in memory, awaiting commit
        self.urgent = False
        self.last_commit = time.monotonic()
        self.reader_done = False
        self.out_jobs: dict[int, int] = {}  # id(job) -> its highest main-line seq
        self.abandoned_top = 0  # highest seq of a job stopped after it may have been sent

    def _count_pending(self, conn: sqlite3.Connection) -> int:
        t = self.progress.target_id
        above = conn.execute("SELECT count(*) FROM calls WHERE seq > ? AND seq <= ?",
                             (self.progress.acked_through, self.end_seq)).fetchone()[0]
        settled_above = conn.execute(
            "SELECT count(*) FROM upload_state WHERE target_id=? AND seq > ? AND seq <= ?",
            (t, self.progress.acked_through, self.end_seq)).fetchone()[0]
        retries = conn.execute("SELECT count(*) FROM upload_state WHERE target_id=? AND "
                               "state IN ('retry','unknown') AND seq <= ?",
                               (t, self.progress.acked_through)).fetchone()[0]
        return above - settled_above + retries

    # --- dispatcher -------------------------------------------------------------------------

    def _dispatch_loop(self) -> None:
        results = self._results
        report_every = 0.2
        last_report = 0.0
        while True:
            self._check_stop()
            if not self.stopping:
                self._fill_window()
                if self.reader_done and self.in_window == 0 and not self.committed_pending:
                    break
            elif not self.out_jobs or time.monotonic() >= self.abandon_at:
                break
            try:
                item = results.get(timeout=ACK_INTERVAL_S)
            except queue.Empty:
                item = None
            while item is not None:
                self._on_result(item)
                try:
                    item = results.get_nowait()
                except queue.Empty:
                    item = None
            now = time.monotonic()
            if self.committed_pending and (self.urgent or self.settled_rows >= ACK_BATCH
                                           or now - self.last_commit >= ACK_INTERVAL_S
                                           or self.reader_done or self.stopping) \
                    or self.group_acks and now - self.group_acks[0][3] >= GROUP_ACK_DEFER_S:
                self._commit()
            if self.options.on_progress and now - last_report >= report_every:
                last_report = now
                self.options.on_progress(self.summary)
        self._commit(final=True)
        if self.stopping:
            self._stopped_early()
        if self.options.on_progress:
            self.options.on_progress(self.summary)

    def _check_stop(self) -> None:
        """Begin a graceful end when asked to stop or when the time slice is over."""
        external = self.options.stop
        asked = external is not None and external.is_set()
        if self.stopping:
            if asked and self.abandon_at == float("inf"):  # a stop during a slice's end
                self.abandon_at = time.monotonic() + STOP_GRACE_S
            return
        if not asked and (self.slice_end is None or time.monotonic() < self.slice_end):
            return
        self.stopping = True
        self.stop.set()  # workers give back jobs not started, retries and sleeps end
        # a time slice lets requests on the wire finish (each is bounded by its timeout)
        self.abandon_at = time.monotonic() + (STOP_GRACE_S if asked else float("inf"))

    def _stopped_early(self) -> None:
        """Progress after a graceful stop: ``sent_through`` back down to what may have been
        sent (so the next run reads back only those), and whether calls are left."""
        may_be_sent = max([self.sent_at_start, self.abandoned_top, *self.out_jobs.values()])
        self.progress.lower_sent_through(may_be_sent)
        self.summary.more_pending = not (self.reader_done and self.in_window == 0)

    def _fill_window(self) -> None:
        journal = self.journal
        while not self.reader_done and self.in_window + journal.buffered < self.window:
            item = next(self.reader, None)
            if item is None:
                self.reader_done = True
                break
            self._take_in(item)
        if journal.buffered and not self.reader_done:
            # the window is full: flush the groups whose lane has nothing else to send
            for group in journal.take(self._lane_busy):
                self._take_in(group)

    def _take_in(self, item) -> None:
        if item.__class__ is MetricGroup:
            self.in_window += len(item.seqs)
            heapq.heappush(self.mainline, item.seq)
        else:
            self.in_window += 1
            if item.retry:
                self.retried_seqs.add(item.seq)
            else:
                heapq.heappush(self.mainline, item.seq)
        self._admit(item)

    def _lane_busy(self, experiment_id: int) -> bool:
        stream = self.streams.get((experiment_id, "bulk"))
        return stream is not None and bool(stream.inflight >= self.batch_lanes
                                           or stream.waiting)

    def _admit(self, call, before_global: bool = False) -> None:
        """Admit a call or group read from the journal (or released from a barrier's hold).

        :param before_global: the call precedes the pending global barrier in the journal
            (it was held by its experiment's barrier), so that barrier must not hold it.
        """
        if self.global_barrier is not None and not before_global:
            self.global_blocked.append(call)
            return
        if call.kind == GLOBAL:
            self.global_barrier = call
            self.global_sent = False
            self._maybe_send_global()
            return
        gate = self.gates.get(call.experiment_id)
        if gate is None:
            self._settle_local_reject(call, f"experiment id {call.experiment_id} is not in the "
                                            "journal's experiments table")
            return
        if gate.barrier is not None:
            gate.blocked.append(call)
            return
        if call.kind == CREATE:
            gate.barrier, gate.barrier_sent = call, False
            self.outstanding += 1
            if gate.target.server_key:
                # created by an earlier run whose ack was not committed: nothing to send
                gate.barrier_sent = True
                self._settle(call, ack=True, found=True)
                return
            self._maybe_send_barrier(gate)
            return
        if gate.create_rejected or not gate.target.server_key:
            reason = gate.create_rejected or "the experiment was never created (its create " \
                                             "call is not in the journal)"
            self._settle_local_reject(call, f"not sent: {reason}")
            return
        if call.kind == BARRIER:
            gate.barrier, gate.barrier_sent = call, False
            self.outstanding += 1
            self._maybe_send_barrier(gate)
            return
        gate.outstanding += 1
        self.outstanding += 1
        batch_key = None
        if call.__class__ is not MetricGroup:
            batch_key = self._batch_key(call)
            if batch_key is not None:
                call.stream = batch_key
        stream = self.streams.get(call.stream)
        if stream is None:
            stream = self.streams[call.stream] = _Stream(
                batch_key is not None, [] if call.__class__ is MetricGroup else None)
        stream.waiting.append(call)
        self._pump(stream)

    def _batch_key(self, call: Call):
        if call.endpoint == "log_output":
            # One ordered output stream per experiment, several lines per request (the
            # documented endpoint takes a list too): the server shows output in the order it
            # arrives, and a read-back can tell by length which lines it has.
            return (call.experiment_id, "output")
        if not self.options.batch or call.endpoint not in BATCH_ENDPOINT \
                or not self.sender.batch_ok.get(BATCH_ENDPOINT[call.endpoint]):
            return None
        if call.endpoint == "log_parameter":
            return (call.experiment_id, "batch", call.endpoint)
        lane = hash((call.ts_ms, call.text)) % self.batch_lanes
        return (call.experiment_id, "batch", call.endpoint, lane)

    def _pump(self, stream: _Stream) -> None:
        waiting = stream.waiting
        if stream.flying is not None:  # groups: several in flight, in order, none sharing
            flying = stream.flying     # a point with another in flight (see uploader.bulk)
            while waiting and len(flying) < self.batch_lanes and not self.stopping and \
                    not any(waiting[0].overlaps(g) for g in flying):
                group = waiting.popleft()
                flying.append(group)
                stream.inflight += 1
                self._send(group)
            return
        if not waiting or stream.inflight or self.stopping:
            return
        if stream.batch:
            limit = self.options.batch_size
            job = [waiting.popleft()]
            if job[0].endpoint == "log_output":  # one request carries one context
                context = job[0].payload.get("context")
                while waiting and len(job) < limit and \
                        waiting[0].payload.get("context") == context:
                    job.append(waiting.popleft())
            else:
                while waiting and len(job) < limit:
                    job.append(waiting.popleft())
            stream.inflight = len(job)
            self._send(job)
        else:
            stream.inflight = 1
            self._send(waiting.popleft())

    def _maybe_send_barrier(self, gate: _Gate) -> None:
        if gate.barrier is not None and not gate.barrier_sent and gate.outstanding == 0 \
                and not self.stopping:
            gate.barrier_sent = True
            call = gate.barrier
            if call.kind == CREATE:
                method = self.sender.create_method(gate)
                self.progress.create_started(gate.target, method)
            self._send(call)

    def _maybe_send_global(self) -> None:
        if self.global_barrier is not None and not self.global_sent and self.outstanding == 0 \
                and not self.stopping:
            self.global_sent = True
            self.outstanding += 1
            self._send(self.global_barrier)

    def _send(self, job) -> None:
        if job.__class__ is MetricGroup:
            top, first = job.seqs[-1], job
        else:
            calls = job if isinstance(job, list) else [job]
            first = calls[0]
            top = max((c.seq for c in calls if not c.retry), default=0)
            retried = [c.seq for c in calls if c.retry and not c.maybe_sent]
            if retried:
                self.progress.mark_unknown(retried)
        if top > self.progress.sent_through:
            self.progress.raise_sent_through(min(self.end_seq, top + SENT_STEP))
        self.out_jobs[id(job)] = top
        gate = self.gates.get(first.experiment_id)
        self._work.put((job, gate.target if gate else None))

    def _released(self, call) -> None:
        """A settled unit's state is durable: let what waited for it go."""
        self.in_window -= len(call.seqs) if call.__class__ is MetricGroup else 1
        if not getattr(call, "_admitted", True):
            return
        if call is self.global_barrier:
            self.outstanding -= 1
            self.global_barrier = None
            blocked, self.global_blocked = list(self.global_blocked), deque()
            for c in blocked:
                self._admit(c)
            return
        gate = self.gates.get(call.experiment_id)
        if gate is not None and call is gate.barrier:
            self.outstanding -= 1
            gate.barrier = None
            blocked, gate.blocked = list(gate.blocked), deque()
            for c in blocked:
                self._admit(c, before_global=True)
            self._maybe_send_global()
            return
        self.outstanding -= 1
        if gate is not None:
            gate.outstanding -= 1
            self._maybe_send_barrier(gate)
        stream = self.streams.get(call.stream)
        if stream is not None:
            stream.inflight -= 1
            if stream.flying is not None:
                stream.flying.remove(call)
            if stream.waiting:
                self._pump(stream)
            elif stream.inflight == 0:
                del self.streams[call.stream]
        self._maybe_send_global()

    # --- workers ----------------------------------------------------------------------------

    def _worker(self) -> None:
        while True:
            job = self._work.get()
            if job is None:
                return
            call, target = job
            if self.stop.is_set():  # stopping: give the job back, it never left
                self._results.put((call, _NOT_STARTED))
                continue
            self._local.sending = False
            try:
                outcome = self.sender.send_call(call, target)
            except Stopped:  # before any write request of this job: it never left either
                self._results.put((call, Stopped(started=self._local.sending)))
                continue
            except BaseException as exc:  # AuthError, ServerUnreachable, bugs: stop the run
                self._results.put((call, exc))  # before stop: the cause arrives first
                self.stop.set()
                return
            self._results.put((call, outcome))

    def _finish_summary(self) -> None:
        for exp_id, row in getattr(self, "exp_rows", {}).items():
            target = self.gates[exp_id].target
            self.summary.experiments.append(ExperimentResult(
                key=row[1], name=row[4], server_key=target.server_key, link=target.link,
                created_by=target.method))


def _journal_id(conn: sqlite3.Connection) -> str:
    row = conn.execute("SELECT value FROM meta WHERE key='journal_id'").fetchone()
    return row[0] if row else "journal"


__all__ = ["Options", "Replayer", "Summary", "AuthError"]
