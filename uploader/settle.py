"""Settling the replay's results: acks and rejections, the watermark, durable progress.

A mixin of :class:`comet_journal.uploader.replay.Replayer` (one state machine, two files): the replay's
dispatcher reads, orders and hands out work (:mod:`comet_journal.uploader.replay`); this part takes the
workers' outcomes, records them in memory, and commits them to the journal in batches, one
transaction each, together with the new watermark:

* every unit settled (a call, or a :class:`~comet_journal.uploader.bulk.MetricGroup`'s rows) is kept until
  its commit; only then is it *released* (``_released``: what waited for it may go);
* the watermark is the seq just below the oldest unsettled main-line unit (a heap of units'
  first seqs) and never above what the reader has handed over (``floor``); acks it covers
  need no ``upload_state`` row;
* a group's acks wait up to ``GROUP_ACK_DEFER_S`` for the watermark to cover them before
  they are written as rows (safe: until then they are below ``sent_through``, so a crash only
  means reading them back; the final commit writes whatever is left).
"""

from __future__ import annotations

import heapq
import time

from comet_journal.uploader.bulk import MetricGroup
from comet_journal.uploader.calls import BARRIER, CREATE, GLOBAL, ORDERED, Call
from comet_journal.uploader.errors import Stopped
from comet_journal.uploader.sender import Outcome

GROUP_ACK_DEFER_S = 0.5


class _Suppress:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return exc[0] is not None and issubclass(exc[0], Exception)


class Settlement:
    """Results to durable progress (mixed into :class:`~comet_journal.uploader.replay.Replayer`)."""

    def _on_result(self, item: tuple) -> None:
        call, outcome = item
        top = self.out_jobs.pop(id(call), 0)
        if isinstance(outcome, Stopped):  # left unsettled: pending for the next run
            if outcome.started:
                self.abandoned_top = max(self.abandoned_top, top)
            return
        if isinstance(outcome, BaseException):
            raise outcome
        outcome: Outcome
        self.summary.retried += outcome.retries
        self.summary.throttled += outcome.throttled
        self.summary.bytes_sent += outcome.bytes_sent
        if outcome.batch:
            self.summary.batches += 1
        if call.__class__ is MetricGroup:
            self._settle_group(call, outcome)
            return
        if outcome.server_key:
            gate = self.gates[call.experiment_id]
            self.progress.experiment_created(gate.target, outcome.server_key, outcome.link,
                                             outcome.method)
            self.claimed.add(outcome.server_key)
        if outcome.project_id:
            ws, name, pid = outcome.project_id
            self.progress.set_project_id(ws, name, pid)
        for sub, sub_outcome in (outcome.parts if outcome.parts is not None
                                 else [(call, outcome)]):
            if sub_outcome.ok:
                self._settle(sub, ack=True, found=sub_outcome.found, attempts=outcome.attempts)
            else:
                self._settle(sub, ack=False, status=sub_outcome.status,
                             message=sub_outcome.message, attempts=outcome.attempts)

    def _settle_local_reject(self, call, message: str) -> None:
        if call.__class__ is MetricGroup:
            self._settle_group(call, None, message=message, admitted=False)
        else:
            self._settle(call, ack=False, status=0, message=message, admitted=False)

    def _settle(self, call: Call, ack: bool, found: bool = False, status: int = 0,
                message: str = "", attempts: int = 0, admitted: bool = True) -> None:
        if ack:
            self.acks.append((call.seq, attempts))
            if found:
                self.summary.found_by_readback += 1
            else:
                self.summary.uploaded += 1
            self.settled_rows += 1
        else:
            self._reject(call.seq, call.endpoint, attempts, status, message)
            if call.kind == CREATE:
                gate = self.gates[call.experiment_id]
                gate.create_rejected = f"the experiment's creation (call {call.seq}) was " \
                                       f"rejected: {message}"
        call.stream = call.stream if admitted else None
        self._settled(call, admitted)

    def _settle_group(self, group: MetricGroup, outcome: Outcome | None, status: int = 0,
                      message: str = "", admitted: bool = True) -> None:
        """Every row of a group: acked at once (``parts`` None), one by one, or rejected."""
        attempts = outcome.attempts if outcome is not None else 0
        summary = self.summary
        if outcome is not None and outcome.parts is None and outcome.ok:
            self.group_acks.append((group, None, attempts, time.monotonic()))
            summary.uploaded += len(group.seqs)
            self.settled_rows += len(group.seqs)
        elif outcome is not None and outcome.parts is not None:
            acked = []
            for sub, sub_outcome in outcome.parts:
                if sub_outcome.ok:
                    acked.append(sub.seq)
                    if sub_outcome.found:
                        summary.found_by_readback += 1
                    else:
                        summary.uploaded += 1
                else:
                    self._reject(sub.seq, group.endpoint, attempts, sub_outcome.status,
                                 sub_outcome.message)
            self.group_acks.append((group, acked, attempts, time.monotonic()))
            self.settled_rows += len(acked)
        else:
            if outcome is not None:
                status, message = outcome.status, outcome.message
            for seq in group.seqs:
                self._reject(seq, group.endpoint, attempts, status, message)
        self._settled(group, admitted)

    def _reject(self, seq: int, endpoint: str, attempts: int, status: int, message: str) -> None:
        self.rejects.append((seq, attempts, status, message))
        self.summary.rejected.append({"seq": seq, "endpoint": endpoint, "status": status,
                                      "message": message})
        self.settled_rows += 1

    def _settled(self, unit, admitted: bool) -> None:
        unit._admitted = admitted
        self.committed_pending.append(unit)
        if unit.kind in (ORDERED, CREATE, BARRIER, GLOBAL):
            self.urgent = True
        elif admitted:
            stream = self.streams.get(unit.stream)
            if stream is not None and stream.waiting:
                self.urgent = True

    def _watermark(self) -> int:
        """Every main-line call at or below the returned seq is settled (committed or about
        to be, in the same transaction)."""
        settled, heap = self.settled_seqs, self.mainline
        for unit in self.committed_pending:
            if not unit.retry:
                settled.add(unit.seq)
        while heap and heap[0] in settled:
            settled.discard(heapq.heappop(heap))
        if self.reader_done:
            mark = heap[0] - 1 if heap else self.end_seq
        else:
            mark = self.journal.floor()
            if heap:
                mark = min(mark, heap[0] - 1)
        return max(mark, self.progress.acked_through)

    def _commit(self, final: bool = False) -> None:
        if not (self.committed_pending or self.group_acks or final):
            return
        mark = self._watermark()
        watermark = mark if mark > self.progress.acked_through else None
        # acks the new watermark covers need no row at all
        retried = self.retried_seqs
        acks = [a for a in self.acks if a[0] > mark or a[0] in retried]
        deferred = []
        written_before = time.monotonic() - GROUP_ACK_DEFER_S
        for entry in self.group_acks:
            group, seqs, attempts, since = entry
            if group.seqs[-1] <= mark:
                continue
            if since > written_before and not final:
                deferred.append(entry)
                continue
            acks.extend((s, attempts) for s in (group.seqs if seqs is None else seqs)
                        if s > mark)
        if not (self.committed_pending or acks or self.rejects or watermark is not None):
            self.group_acks = deferred
            return
        self.progress.record(acks, self.rejects, watermark)
        self.acks, self.group_acks, self.rejects = [], deferred, []
        self.settled_rows = 0
        self.last_commit = time.monotonic()
        self.urgent = False
        done, self.committed_pending = self.committed_pending, []
        for unit in done:
            self._released(unit)

    def _flush_quietly(self) -> None:
        with _Suppress():
            acks = list(self.acks)
            for group, seqs, attempts, _since in self.group_acks:
                acks.extend((s, attempts) for s in (group.seqs if seqs is None else seqs))
            self.progress.record(acks, self.rejects, None)
            self.acks, self.group_acks, self.rejects = [], [], []
