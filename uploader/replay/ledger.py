"""The replay's ledger: outcomes to durable progress, in batches, with the watermark.

The dispatcher hands it every unit it reads (:meth:`Ledger.enter`) and every verdict
(:meth:`settle`, :meth:`refuse`, :meth:`done`); :meth:`commit` writes them to the progress
store in one transaction, together with the new watermark, and returns the units whose
outcome is now durable, for the scheduler to release:

* what is settled is committed at once (every turn of the dispatcher that settled
  something): a SIGKILL then leaves in doubt only the calls in flight, which matters on a
  server that neither offers reads nor deduplicates (every call in doubt is resent there);
* the watermark is the seq just below the oldest unsettled main-line unit (a heap of units'
  first seqs) and never above what the reader has handed over (``floor``); acks it covers
  need no per-call row;
* a group's acks wait up to ``GROUP_ACK_DEFER_S`` for the watermark to cover them before
  they are written as rows (safe: until then they are below ``sent_through``, so a crash only
  means reading them back; the final commit writes whatever is left); while units are parked
  in doubt (:meth:`hold`: they hold the watermark back until they are resolved), they wait
  for it (up to ``HELD_ACKS``), kept as seq ranges, not as rows written and deleted again.
"""

from __future__ import annotations

import heapq
import time
from typing import Any, Callable

from comet_journal.uploader.journal.groups import MetricGroup
from comet_journal.uploader.journal.progress import Progress
from comet_journal.uploader.replay.summary import Summary
from comet_journal.uploader.wire.exchange import Outcome

GROUP_ACK_DEFER_S = 0.5
# Group acks kept waiting while units are parked, at most (a range of seqs counts one, a
# list of seqs one per seq: about 40 MB at most).
HELD_ACKS = 1_000_000
RESULT_WAIT_S = 0.1  # the dispatcher's longest wait for a result before looking around


class Ledger:
    """Settled outcomes of one replay, until committed.

    :param floor: every main-line call at or below ``floor()`` has been handed over by the
        reader (or was settled before).
    :param end_seq: the journal's last seq when the replay started.
    """

    def __init__(self, progress: Progress, summary: Summary, floor: Callable[[], int],
                 end_seq: int, clock: Callable[[], float] = time.monotonic):
        self.progress = progress
        self.summary = summary
        self.floor = floor
        self.end_seq = end_seq
        self.clock = clock
        self.reader_done = False
        self.mainline: list[int] = []  # heap: first seqs of main-line units not yet passed
        self.settled_seqs: set[int] = set()  # first seqs of settled units still in the heap
        self.retried_seqs: set[int] = set()
        self.acks: list[tuple[int, int]] = []
        # (acked seqs: a range or a list, attempts, settled at)
        self.group_acks: list[tuple[Any, int, float]] = []
        self.holding = False  # units are parked: group acks wait longer for the watermark
        self.rejects: list[tuple[int, int, int, str]] = []
        self.pending: list = []  # units settled in memory, awaiting commit
        self.held: list[tuple[int, str]] = []  # (seq, why): never sent, tried again next run

    def enter(self, unit) -> None:
        """A unit read from the journal (before it is admitted)."""
        if unit.retry:  # (a group never is)
            self.retried_seqs.add(unit.seq)
        else:
            heapq.heappush(self.mainline, unit.seq)

    # --- verdicts ---------------------------------------------------------------------------

    def settle_call(self, call, verdict: Outcome, attempts: int) -> None:
        """One call's verdict (a job of several calls has one per call). A held call (an SDK
        route this server lacks) is settled as one to try again on the next run."""
        if verdict.held:
            self.held.append((call.seq, verdict.message))
            held = self.summary.not_sendable
            held[call.endpoint] = held.get(call.endpoint, 0) + 1
        elif verdict.ok:
            self._ack(call, verdict.found, attempts)
        else:
            self._reject(call.seq, call.endpoint, attempts, verdict.status, verdict.message)
        self._settled(call)

    def settle_group(self, group: MetricGroup, outcome: Outcome) -> None:
        """Every row of a group: acked at once (``parts`` None), one by one, or rejected."""
        self._settle_group(group, outcome)
        self._settled(group)

    def refuse(self, unit, message: str) -> None:
        """Rejected without being sent (the scheduler never admitted it)."""
        seqs = unit.seqs if unit.__class__ is MetricGroup else [unit.seq]
        for seq in seqs:
            self._reject(seq, unit.endpoint, 0, 0, message)
        self._settled(unit)

    def done(self, unit) -> None:
        """Already on the server (an earlier run's creation whose ack was not recorded)."""
        self._ack(unit, True, 0)
        self._settled(unit)

    def hold(self, parked: bool) -> None:
        """Whether units are parked in doubt (the watermark waits for their resolution)."""
        self.holding = parked

    def _ack(self, call, found: bool, attempts: int) -> None:
        self.acks.append((call.seq, attempts))
        if found:
            self.summary.found_by_readback += 1
        else:
            self.summary.uploaded += 1

    def _settle_group(self, group: MetricGroup, outcome: Outcome) -> None:
        """Every row of a group: acked at once (``parts`` None), one by one, or rejected."""
        attempts, summary = outcome.attempts, self.summary
        if outcome.parts is None and outcome.ok:
            self.group_acks.append((_compact(group.seqs), attempts, self.clock()))
            summary.uploaded += len(group.seqs)
        elif outcome.parts is not None:
            acked = []
            for sub, verdict in outcome.parts:
                if verdict.ok:
                    acked.append(sub.seq)
                    if verdict.found:
                        summary.found_by_readback += 1
                    else:
                        summary.uploaded += 1
                else:
                    self._reject(sub.seq, group.endpoint, attempts, verdict.status,
                                 verdict.message)
            self.group_acks.append((_compact(acked), attempts, self.clock()))
        else:
            for seq in group.seqs:
                self._reject(seq, group.endpoint, attempts, outcome.status, outcome.message)

    def _reject(self, seq: int, endpoint: str, attempts: int, status: int, message: str) -> None:
        self.rejects.append((seq, attempts, status, message))
        self.summary.rejected.append({"seq": seq, "endpoint": endpoint, "status": status,
                                      "message": message})

    def _settled(self, unit) -> None:
        self.pending.append(unit)

    # --- commits ----------------------------------------------------------------------------

    def due(self) -> bool:
        """Is a commit due now? When anything is settled (or a group's deferred acks are
        old enough to be written as rows)."""
        return bool(self.pending) or bool(
            self.group_acks and self.clock() - self.group_acks[0][2] >= GROUP_ACK_DEFER_S
            and not self.holding)

    def watermark(self) -> int:
        """Every main-line call at or below the returned seq is settled (committed or about
        to be, in the same transaction)."""
        settled, heap = self.settled_seqs, self.mainline
        for unit in self.pending:
            if not unit.retry:
                settled.add(unit.seq)
        while heap and heap[0] in settled:
            settled.discard(heapq.heappop(heap))
        if self.reader_done:
            mark = heap[0] - 1 if heap else self.end_seq
        else:
            mark = self.floor()
            if heap:
                mark = min(mark, heap[0] - 1)
        return max(mark, self.progress.acked_through)

    def commit(self, final: bool = False) -> list:
        """Write what is settled; return the units now durable (to release)."""
        if not (self.pending or self.group_acks or final):
            return []
        mark = self.watermark()
        watermark = mark if mark > self.progress.acked_through else None
        # acks the new watermark covers need no row at all
        retried = self.retried_seqs
        acks = [a for a in self.acks if a[0] > mark or a[0] in retried]
        deferred = []
        written_before = self.clock() - GROUP_ACK_DEFER_S
        held = 0
        for entry in self.group_acks:
            seqs, attempts, since = entry
            if not seqs or seqs[-1] <= mark:
                continue
            weight = 1 if seqs.__class__ is range else len(seqs)
            if not final and (since > written_before or (
                    self.holding and held + weight <= HELD_ACKS)):
                held += weight
                deferred.append(entry)
                continue
            acks.extend((s, attempts) for s in seqs if s > mark)
        if not (self.pending or acks or self.rejects or watermark is not None):
            self.group_acks = deferred
            return []
        self.progress.record(acks, self.rejects, watermark, self.held)
        self.acks, self.group_acks, self.rejects, self.held = [], deferred, [], []
        done, self.pending = self.pending, []
        return done

    def flush_quietly(self) -> None:
        """After a failure: record what is settled, without the watermark, if possible."""
        try:
            acks = list(self.acks)
            for seqs, attempts, _since in self.group_acks:
                acks.extend((s, attempts) for s in seqs)
            self.progress.record(acks, self.rejects, None, self.held)
            self.acks, self.group_acks, self.rejects, self.held = [], [], [], []
        except Exception:  # the original failure is what the caller reports
            pass


def _compact(seqs: list[int]) -> Any:
    """Seqs as a range when they are consecutive (the common case: 8 bytes, not 36 a row)."""
    if seqs and seqs[-1] - seqs[0] + 1 == len(seqs):
        return range(seqs[0], seqs[-1] + 1)
    return seqs
