"""The replay: a journal's pending calls to one server, in order, exactly once.

:class:`Replayer` wires the parts: the journal's progress on this server
(:class:`~comet_journal.uploader.journal.progress.Progress`), a reader of pending calls
(grouping metric points in batch mode), the pure :class:`~.scheduler.Scheduler`, the
:class:`~.ledger.Ledger`, a :class:`~.pool.WorkerPool` running the destination's channel
(:mod:`comet_journal.uploader.send.destination`; Comet over HTTP by default), and the
:class:`~.dispatch.Dispatch` loop that drives them.

Threads: the caller's thread dispatches and owns all progress and ordering state;
``concurrency`` workers send jobs. Nothing else is shared except the server gate.
"""

from __future__ import annotations

import sqlite3
import threading
import time

from comet_journal.uploader.config import UploadConfig
from comet_journal.uploader.errors import Stopped, UploadError, redact
from comet_journal.uploader.journal.calls import JournalReader, journal_end
from comet_journal.uploader.journal.connections import JournalConnections
from comet_journal.uploader.journal.groups import BulkReader
from comet_journal.uploader.journal.progress import ExperimentTarget, Progress
from comet_journal.uploader.replay.dispatch import Dispatch
from comet_journal.uploader.replay.ledger import Ledger
from comet_journal.uploader.replay.pool import WorkerPool
from comet_journal.uploader.replay.scheduler import Scheduler
from comet_journal.uploader.replay.summary import ExperimentResult, Options, Summary
from comet_journal.uploader.send.batches import BATCH_ENDPOINT, GROUP_ROUTE
from comet_journal.uploader.send.context import SendContext
from comet_journal.uploader.send.destination import Channel, CometServer, Destination
from comet_journal.uploader.wire.requests import Overrides
from comet_journal.uploader.wire.retry import ServerGate

WORKER_JOIN_S = 5.0
_NOT_STARTED = Stopped(started=False)


class Replayer:
    """Uploads one journal to one server. ``run()`` returns a :class:`Summary`.

    The caller holds the :class:`~comet_journal.uploader.journal.lock.UploadLock`.

    :param destination: where jobs go (default: the Comet server at ``config.url``).
    """

    def __init__(self, path: str, config: UploadConfig, options: Options | None = None,
                 destination: Destination | None = None):
        self.path = path
        self.config = config
        self.options = options or Options()
        # Our own event: set when this replay ends or stops (workers, sleeps); the caller's
        # Options.stop is only ever read, as it may be shared by many replays.
        self.stop = threading.Event()
        policy = self.options.policy
        if policy.sleep is time.sleep:
            policy = policy.with_stop_event(self.stop)
        self.concurrency = max(1, self.options.concurrency)
        self.destination = destination or CometServer(
            config, policy, self.options.gate or ServerGate(policy, config.url), self.stop,
            self.concurrency)
        self.progress = Progress(path, config.identity, config.url, config.workspace,
                                 config.project, config.state_dir)
        self.connections = JournalConnections(path, config.state_dir)
        self.experiment_rows = {r[0]: r for r in self.connections.connect().execute(
            "SELECT id, key, workspace, project, name FROM experiments")}
        self.summary = Summary(journal=path, server=config.url)
        self.lanes = max(1, self.concurrency // 2)  # batches in flight per experiment
        window = self.options.window or max(256, self.concurrency * 64)
        if self.options.batch:  # a group in flight, one waiting and one filling, per lane
            window = max(window, self.options.batch_size * max(8, 3 * self.lanes))
        self.window = window

    def run(self) -> Summary:
        started = time.monotonic()
        pool: WorkerPool | None = None
        dispatch: Dispatch | None = None
        targets: dict[int, ExperimentTarget] = {}
        try:
            context, targets = self._context(int(time.time() * 1000))
            channel = self.destination.connect(context)
            reader, end_seq = self._reader(channel)
            pool = WorkerPool(lambda item: self._run_job(channel, item), self.concurrency,
                              name="uploader.worker", on_error=self.stop.set)
            dispatch = Dispatch(
                reader, self._scheduler(channel, targets), Ledger(
                    self.progress, self.summary, reader.floor, end_seq), pool, self.progress,
                self.summary, self.options, context, targets, channel.create_method,
                self.window, end_seq, self._stop_requested, self.stop.set,
                started + self.options.time_slice_s
                if self.options.time_slice_s is not None else None, self.concurrency)
            dispatch.run()
        except UploadError as exc:
            self.summary.error = redact(str(exc))
            if dispatch is not None:
                dispatch.ledger.flush_quietly()
            try:
                self.progress.set_last_error(self.summary.error)
            except sqlite3.Error:
                pass
            raise
        except BaseException:  # Ctrl-C, a bug: what is settled stays settled
            if dispatch is not None:
                dispatch.ledger.flush_quietly()
            raise
        finally:
            self.stop.set()
            busy = False
            if pool is not None:
                # abandoned requests (a stop's grace is over) are not waited for again
                busy = pool.close(0.2 if dispatch is not None and dispatch.abandoned
                                  else WORKER_JOIN_S)
            self.summary.elapsed_s = time.monotonic() - started
            self._finish_summary(targets)
            self.destination.close()
            if not busy:  # a worker still in a request keeps its journal connection
                self.connections.close_all()
            self.progress.close()
        return self.summary

    # --- wiring -----------------------------------------------------------------------------

    def _context(self, started_ms: int) -> tuple[SendContext, dict[int, ExperimentTarget]]:
        progress = self.progress
        if self.options.retry_rejected:
            progress.retry_rejected()
        known = progress.experiments()
        targets = {exp: known.get(exp) or ExperimentTarget(exp) for exp in self.experiment_rows}
        context = SendContext(
            journal_path=self.path, journal_id=_journal_id(progress.conn),
            connect=self.connections.connect, target_id=progress.target_id,
            overrides=Overrides(self.config.workspace, self.config.project,
                                self.config.default_workspace),
            started_ms=started_ms, sent_at_start=progress.sent_through,
            batch=self.options.batch,
            experiment_keys={exp: row[1] for exp, row in self.experiment_rows.items()},
            claimed=progress.claimed_keys(), project_ids=progress.project_ids(),
            adopted=progress.adopted())
        return context, targets

    def _reader(self, channel: Channel) -> tuple[JournalReader, int]:
        progress, conn = self.progress, self.connections.connect()
        end_seq = journal_end(conn)
        args = (conn, progress.target_id, progress.acked_through, progress.sent_through,
                end_seq)
        capabilities = channel.capabilities
        if self.options.batch and capabilities.batch_ok(GROUP_ROUTE):
            reader = BulkReader(*args, batch_size=self.options.batch_size,
                                enabled=lambda: capabilities.batch_ok(GROUP_ROUTE))
        else:
            reader = JournalReader(*args)
        self.summary.total = conn.execute("SELECT count(*) FROM calls").fetchone()[0]
        self.summary.pending = progress.count_pending(end_seq)
        self.summary.skipped = self.summary.total - self.summary.pending
        return reader, end_seq

    def _scheduler(self, channel: Channel, targets: dict[int, ExperimentTarget]) -> Scheduler:
        capabilities = channel.capabilities

        def batch_route(endpoint: str) -> bool:
            route = BATCH_ENDPOINT.get(endpoint)
            return route is not None and capabilities.batch_ok(route)

        return Scheduler({exp: bool(t.server_key) for exp, t in targets.items()},
                         lanes=self.lanes, batch_size=self.options.batch_size,
                         batch_route=batch_route if self.options.batch else None)

    def _stop_requested(self) -> bool:
        external = self.options.stop
        return external is not None and external.is_set()

    def _run_job(self, channel: Channel, item: tuple):
        """In a worker thread: send one job (``item`` is the job and its experiment)."""
        job, target = item
        if self.stop.is_set():  # stopping: give the job back, it never left
            return _NOT_STARTED
        channel.begin_job()
        try:
            return channel.send(job, target)
        except Stopped:  # stopped during the job: it left if a write request went out
            return Stopped(started=channel.job_sent())

    def _finish_summary(self, targets: dict[int, ExperimentTarget]) -> None:
        for exp_id, row in self.experiment_rows.items():
            target = targets.get(exp_id) or ExperimentTarget(exp_id)
            self.summary.experiments.append(ExperimentResult(
                key=row[1], name=row[4], server_key=target.server_key, link=target.link,
                created_by=target.method))


def _journal_id(conn: sqlite3.Connection) -> str:
    row = conn.execute("SELECT value FROM meta WHERE key='journal_id'").fetchone()
    return row[0] if row else "journal"


__all__ = ["Options", "Replayer", "Summary"]
