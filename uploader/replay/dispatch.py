"""One replay run's dispatcher: the owner of all its mutable state, in the caller's thread.

It reads units from the journal into a bounded window, lets the
:class:`~.scheduler.Scheduler` decide what may go, hands jobs to the worker pool, gives the
workers' outcomes to the :class:`~.ledger.Ledger`, commits, and releases what the commits
made durable. Nothing else is shared with the workers but the jobs and their outcomes.

Exactly once: before a job is handed out, ``sent_through`` covers it (durably), so after a
crash the calls of unknown outcome are known (and read back before any resend). At most
``concurrency`` jobs are out whose outcome is not yet recorded: a worker gets its next job
only once its last outcome is committed, so a SIGKILL leaves in doubt only the jobs in flight
(what matters on a server that neither offers reads nor deduplicates).

Parking: a job whose request failed after leaving (a metric point, a sample: applied or
not?) comes back ``in_doubt``; it is parked (its worker is free, its lane too) and sent again
later with every other parked job, when nothing else is out nor can be read (the end of the
journal, or a window full of calls waiting: for a barrier, or identical points) or when
``PARK_ROWS`` are parked: the first of them reads each series once for all
(:mod:`comet_journal.uploader.send.series`).

Stopping early: when ``stop`` is set (from any thread) or the time slice has passed, nothing
new is admitted or handed out; jobs not yet started are given back; requests on the wire
finish (a time slice waits for them; a stop waits ``STOP_GRACE_S`` at most, then abandons
them: they stay below ``sent_through``, so a later run reads them back). Acks are committed,
``sent_through`` is brought back down to what may really have been sent, and the summary says
``more_pending``.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Callable

from comet_journal.uploader.errors import Stopped
from comet_journal.uploader.journal.calls import JournalReader
from comet_journal.uploader.journal.groups import MetricGroup
from comet_journal.schema.ordering import CREATE
from comet_journal.uploader.journal.progress import ExperimentTarget, Progress
from comet_journal.uploader.replay.ledger import RESULT_WAIT_S, Ledger
from comet_journal.uploader.replay.pool import WorkerPool
from comet_journal.uploader.replay.scheduler import AlreadyDone, Refuse, Scheduler, Send
from comet_journal.uploader.replay.summary import STOP_GRACE_S, Options, Summary
from comet_journal.uploader.send.context import SendContext
from comet_journal.uploader.wire.exchange import Outcome

# Rows parked in doubt (sent, outcome unknown) before they are resolved even while other
# jobs are out: a bound on their memory and on how far the watermark lags behind.
PARK_ROWS = 100_000
# Parked units resolved per job at most (one journal query for their earlier identical
# calls): rows of metric groups; single calls (resent one by one when the server lacks them,
# so several jobs share those resends).
RESOLVE_ROWS = 2_000
RESOLVE_CALLS = 250
SENT_STEP = 256  # raise sent_through this far ahead: one commit per this many calls at most
REPORT_EVERY_S = 0.2


class Dispatch:
    """Runs one replay's dispatch loop (:meth:`run`) to the end of the journal, or a stop.

    :param targets: journal experiment id -> its progress on this server.
    :param create_method: how an experiment will be created (recorded before sending).
    :param stop_requested: whether the caller asked to stop (its event, or never).
    :param begin_stop: called once when stopping begins: workers give back jobs not started,
        retries and sleeps end.
    :param slice_end: the monotonic time when the time slice ends, or None.
    """

    def __init__(self, reader: JournalReader, scheduler: Scheduler, ledger: Ledger,
                 pool: WorkerPool, progress: Progress, summary: Summary, options: Options,
                 context: SendContext, targets: dict[int, ExperimentTarget],
                 create_method: Callable[[ExperimentTarget], str], window: int, end_seq: int,
                 stop_requested: Callable[[], bool], begin_stop: Callable[[], None],
                 slice_end: float | None, concurrency: int):
        self.reader = reader
        self.units = iter(reader)
        self.scheduler = scheduler
        self.ledger = ledger
        self.pool = pool
        self.progress = progress
        self.summary = summary
        self.options = options
        self.context = context
        self.targets = targets
        self.create_method = create_method
        self.window = window
        self.end_seq = end_seq
        self.stop_requested = stop_requested
        self.begin_stop = begin_stop
        self.slice_end = slice_end
        self.sent_at_start = progress.sent_through
        self.in_window = 0  # units admitted or blocked, not released (a group counts its rows)
        self.out_jobs: dict[int, int] = {}  # id(job item) -> its highest main-line seq
        self.concurrency = max(1, concurrency)
        self.ready: deque = deque()  # (job item, top seq) waiting for a free worker
        self.unrecorded = 0  # jobs handed out whose outcome is not committed yet
        self.answered = 0  # of those, the ones whose outcome arrived (committed next)
        self.abandoned_top = 0  # highest seq of a job stopped after it may have been sent
        self.parked: list = []  # (job item, top seq) of jobs of unknown outcome, parked
        self.parked_rows = 0
        self.parked_top = 0  # highest seq ever parked (it may have been applied)
        self.resolving: set[int] = set()  # ids of parked job items sent again, not back yet
        self.reader_done = False
        self.orphaned = False  # calls left pending: their create comes after this replay
        self.stopping = False
        self.abandon_at: float | None = None

    def run(self) -> None:
        last_report = 0.0
        on_progress = self.options.on_progress
        while True:
            self._check_stop()
            if not self.stopping:
                self._fill_window()
                if self.reader_done and self.in_window == 0 and not self.ledger.pending \
                        and not self.parked:
                    break
            elif not self.out_jobs or time.monotonic() >= self.abandon_at:
                break
            for item, result in self.pool.results(RESULT_WAIT_S):
                self._on_result(item, result)
            if self.ledger.due():
                self._commit()
            if self.parked and not self.stopping and (
                    self.parked_rows >= PARK_ROWS or self._stalled()):
                self._resolve_parked()
            now = time.monotonic()
            if on_progress and now - last_report >= REPORT_EVERY_S:
                last_report = now
                on_progress(self.summary)
        self._commit(final=True)
        if self.stopping:
            self._stopped_early()
        elif self.orphaned:
            self.summary.more_pending = True
        if on_progress:
            on_progress(self.summary)

    # --- reading and admitting --------------------------------------------------------------

    def _fill_window(self) -> None:
        reader, scheduler = self.reader, self.scheduler
        while not self.reader_done and \
                self.in_window - scheduler.waiting_rows + reader.buffered < self.window:
            unit = next(self.units, None)
            if unit is None:
                self.reader_done = self.ledger.reader_done = True
                self._orphans()
                break
            self._take_in(unit)
        if reader.buffered and not self.reader_done:
            # the window is full: flush the groups whose lane has nothing else to send
            for group in reader.take(self.scheduler.lane_busy):
                self._take_in(group)

    def _orphans(self) -> None:
        """Calls that waited for their experiment's create to the end of the journal: with no
        create anywhere in the journal, refused; with one journaled after this replay began
        (another rank, still writing), left pending for the next pass."""
        for exp, units in self.scheduler.take_orphans().items():
            if self.reader.has_create(exp):
                self.in_window -= sum(len(u.seqs) if u.__class__ is MetricGroup else 1
                                      for u in units)
                self.orphaned = True
                continue
            self._execute(self.scheduler.refuse_all(
                units, "not sent: the experiment was never created (its create call is not "
                       "in the journal)"))

    def _take_in(self, unit) -> None:
        self.in_window += len(unit.seqs) if unit.__class__ is MetricGroup else 1
        self.ledger.enter(unit)
        self._execute(self.scheduler.admit(unit))

    def _execute(self, actions: list) -> None:
        for action in actions:
            if action.__class__ is Send:
                self._send(action.job)
            elif action.__class__ is Refuse:
                self.ledger.refuse(action.unit, action.reason)
            elif action.__class__ is AlreadyDone:
                self.ledger.done(action.unit)

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
        target = self.targets.get(first.experiment_id)
        if first.kind == CREATE:
            self.progress.create_started(target, self.create_method(target))
        if top > self.progress.sent_through:
            self.progress.raise_sent_through(min(self.end_seq, top + SENT_STEP))
        self.ready.append(((job, target), top))
        self._hand_out()

    def _hand_out(self) -> None:
        while self.ready and self.unrecorded < self.concurrency and not self.stopping:
            item, top = self.ready.popleft()
            self.out_jobs[id(item)] = top
            self.unrecorded += 1
            self.pool.submit(item)

    # --- outcomes ---------------------------------------------------------------------------

    def _on_result(self, item: tuple, result) -> None:
        job, target = item
        top = self.out_jobs.pop(id(item), 0)
        if isinstance(result, Stopped):  # left unsettled: pending for the next run
            self.unrecorded -= 1
            if result.started:
                self.abandoned_top = max(self.abandoned_top, top)
            return
        if isinstance(result, BaseException):
            raise result
        outcome: Outcome = result
        summary = self.summary
        if self.resolving:
            self.resolving.discard(id(item))
            self.ledger.hold(bool(self.parked or self.resolving))
        if outcome.in_doubt:
            self._park(item, top, outcome)
            return
        self.answered += 1
        summary.retried += outcome.retries
        summary.throttled += outcome.throttled
        summary.bytes_sent += outcome.bytes_sent
        if outcome.batch:
            summary.batches += 1
        ledger = self.ledger
        if job.__class__ is MetricGroup:
            ledger.settle_group(job, outcome)
            return
        if outcome.project_id:
            self.progress.set_project_id(*outcome.project_id)
        if not isinstance(job, list) and job.kind == CREATE:
            self._created(job, target, outcome)
        for unit, verdict in (outcome.parts if outcome.parts is not None else [(job, outcome)]):
            if unit.__class__ is MetricGroup:  # a bundle of parked units, resolved
                ledger.settle_group(unit, verdict)
            else:
                ledger.settle_call(unit, verdict, outcome.attempts)

    def _park(self, item: tuple, top: int, outcome: Outcome) -> None:
        """A job of unknown outcome, parked: nothing to record (its calls stay unsettled, below
        ``sent_through``), its worker is free; resolved with the others later (see the
        module docstring): one read of each series for all of them."""
        job = item[0]
        self.unrecorded -= 1
        self.summary.retried += outcome.retries
        self.summary.throttled += outcome.throttled
        self.summary.bytes_sent += outcome.bytes_sent
        self.summary.batches += outcome.batch
        self.summary.parked += 1
        rows = _rows(job)
        self.parked.append((item, top))
        self.parked_rows += rows
        self.parked_top = max(self.parked_top, top)
        self.in_window -= rows  # bounded by PARK_ROWS instead: reading goes on
        self.ledger.hold(True)
        self._execute(self.scheduler.park(job))
        self._hand_out()

    def _stalled(self) -> bool:
        """Nothing is out and nothing more can be read (the end, or a full window): what
        waits may be waiting for a parked job."""
        return not self.out_jobs and (self.reader_done or self.in_window - self.scheduler
                                      .waiting_rows + self.reader.buffered >= self.window)

    def _resolve_parked(self) -> None:
        """Send every parked job again: its pass (one read per series) says what to resend.
        They go back in bundles of one experiment and endpoint, in journal order (one
        journal query for a bundle's earlier identical calls)."""
        parked, self.parked, self.parked_rows = self.parked, [], 0
        bundles: dict[tuple, list] = {}
        for item, top in parked:
            job = item[0]
            self.scheduler.unpark(job)
            self.in_window += _rows(job)
            if isinstance(job, list):
                self._resend(item, top)
            else:
                bundles.setdefault((job.experiment_id, job.endpoint, job.__class__),
                                   []).append((item, top))
        for bundle in bundles.values():
            bundle.sort(key=lambda entry: entry[0][0].seq)
            units, tops, rows = [], [], 0
            cap = RESOLVE_ROWS if bundle[0][0][0].__class__ is MetricGroup else RESOLVE_CALLS
            for (job, target), top in bundle:
                units.append(job)
                tops.append(top)
                rows += _rows(job)
                if rows >= cap:
                    self._resend((units, target), max(tops))
                    units, tops, rows = [], [], 0
            if units:
                self._resend((units, bundle[0][0][1]), max(tops))
        self._hand_out()

    def _resend(self, item: tuple, top: int) -> None:
        self.resolving.add(id(item))
        self.ready.append((item, top))

    def _created(self, call, target: ExperimentTarget, outcome: Outcome) -> None:
        if outcome.ok and outcome.server_key:
            self.progress.experiment_created(
                target, outcome.server_key, outcome.link, outcome.method,
                adopted=call.experiment_id in self.context.adopted)
            self.context.claimed.add(outcome.server_key)
            self.scheduler.created(call.experiment_id)
        elif not outcome.ok:
            self.scheduler.create_rejected(
                call.experiment_id, f"the experiment's creation (call {call.seq}) was "
                f"rejected: {outcome.message}")

    def _commit(self, final: bool = False) -> None:
        released = self.ledger.commit(final)
        self.unrecorded -= self.answered  # their outcomes are durable now
        self.answered = 0
        for unit in released:
            self.in_window -= len(unit.seqs) if unit.__class__ is MetricGroup else 1
            self._execute(self.scheduler.release(unit))
        self._hand_out()

    # --- stopping ---------------------------------------------------------------------------

    def _check_stop(self) -> None:
        """Begin a graceful end when asked to stop or when the time slice is over."""
        asked = self.stop_requested()
        if self.stopping:
            if asked and self.abandon_at == float("inf"):  # a stop during a slice's end
                self.abandon_at = time.monotonic() + STOP_GRACE_S
            return
        if not asked and (self.slice_end is None or time.monotonic() < self.slice_end):
            return
        self.stopping = True
        self.scheduler.stop()
        self.begin_stop()
        # a time slice lets requests on the wire finish (each is bounded by its timeout)
        self.abandon_at = time.monotonic() + (STOP_GRACE_S if asked else float("inf"))

    def _stopped_early(self) -> None:
        """Progress after a graceful stop: ``sent_through`` back down to what may have been
        sent (so the next run reads back only those), and whether calls are left."""
        may_be_sent = max([self.sent_at_start, self.abandoned_top, self.parked_top,
                           *self.out_jobs.values()])
        self.progress.lower_sent_through(may_be_sent)
        self.summary.more_pending = not (self.reader_done and self.in_window == 0
                                         and not self.parked)

    @property
    def abandoned(self) -> bool:
        """Were requests still on the wire abandoned (a stop's grace ran out)?"""
        return self.abandon_at is not None and time.monotonic() >= self.abandon_at


def _rows(job) -> int:
    if job.__class__ is MetricGroup:
        return len(job.seqs)
    return len(job) if isinstance(job, list) else 1
