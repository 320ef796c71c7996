"""What the server holds of a metric series, read as rarely as the read API allows.

Comet's ``experiment/metrics/get-metric`` has no window (no step, time or offset range): a
read returns the whole series. So a run reads each series at most once for the calls an
*earlier* run left in doubt, and once per *pass* for calls that became in doubt in this run:

* **snapshot** (calls an earlier run may have sent): the first read-back of a series in this
  run reads it once and keeps a count per point signature (a 64-bit hash). Nothing of those
  calls is sent again before they are read back, and identical calls are serialised, so the
  snapshot stays exact if it learns this run's own acks of such calls (:meth:`note_applied`)
  instead of reading again.
* **pass** (a request of this run failed after leaving: applied or not?): the state must be
  read after the failure. Read-backs of one series wait for the pass in progress and are then
  answered together by the next one, so N calls in doubt cost at most N reads, and far fewer
  when they come together (one pass per series for the calls of one interruption).

Memory: a read is decoded point by point from the answer's bytes (never as one list of
dicts); a pass keeps counts only for the signatures asked for; a snapshot 8 bytes a point
(sorted 64-bit hashes). The answer itself is still held whole by the wire client while it is
decoded (about 150 bytes a point).
"""

from __future__ import annotations

import bisect
import codecs
import json
import threading
from array import array
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

MetricPoint = dict
Signature = Callable[[MetricPoint], tuple]


def iter_points(body: bytes | None, window: int = 1 << 20) -> Iterator[MetricPoint]:
    """The ``metrics`` items of a get-metric answer, one at a time, decoded a window of the
    bytes at a time (never the whole answer as one string; other fields are ignored)."""
    if not body:
        return
    head = body.find(b'"metrics"')
    if head < 0:
        return
    pos = body.find(b"[", head) + 1
    if pos <= 0:
        return
    decoder = json.JSONDecoder()
    utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")  # chars split by windows
    text, i = "", 0
    while True:
        while True:  # skip separators, refilling the window when it runs out
            while i < len(text) and text[i] in " \t\r\n,":
                i += 1
            if i < len(text) or pos >= len(body):
                break
            text, i, pos = utf8.decode(body[pos:pos + window]), 0, pos + window
        if i >= len(text) or text[i] == "]":
            return
        try:
            item, end = decoder.raw_decode(text, i)
        except ValueError:
            if pos >= len(body):
                raise
            # the item runs past the window: grow the window by the next piece
            text, i, pos = text[i:] + utf8.decode(body[pos:pos + window]), 0, pos + window
            continue
        i = end
        if isinstance(item, dict):
            yield item


class Snapshot:
    """Counts of point signatures: the series as read once (a sorted array of 64-bit hashes,
    8 bytes a point), plus what this run applied since (a small counter)."""

    def __init__(self, hashes: list[int]):
        hashes.sort()
        self._read = array("q", hashes)
        self._since: Counter = Counter()

    def __getitem__(self, h: int) -> int:
        read = self._read
        return (bisect.bisect_right(read, h) - bisect.bisect_left(read, h)) + self._since[h]

    def add(self, h: int) -> None:
        self._since[h] += 1


@dataclass
class _Pass:
    wanted: set = field(default_factory=set)
    done: threading.Event = field(default_factory=threading.Event)
    counts: Counter | None = None
    error: BaseException | None = None
    led: bool = False


@dataclass
class _Series:
    running: bool = False
    loading: bool = False
    waiting: _Pass | None = None
    snapshot: Snapshot | None = None


class SeriesReads:
    """Per-run reads of metric series.

    :param fetch: ``fetch(key, name) -> bytes | None``: one read of a whole series.
    :param signature: a point's signature (what makes two points the same).
    :param sent_at_start: the highest seq an earlier run may have sent.
    """

    def __init__(self, fetch: Callable[[str, str], bytes | None], signature: Signature,
                 sent_at_start: int):
        self.fetch = fetch
        self.signature = signature
        self.sent_at_start = sent_at_start
        self._cond = threading.Condition()
        self._series: dict[tuple[str, str], _Series] = {}
        self.reads = 0  # series reads made (figures and tests)

    def _count(self, key: str, name: str, wanted: set) -> Counter:
        self.reads += 1
        counts: Counter = Counter()
        for point in iter_points(self.fetch(key, name)):
            h = hash(self.signature(point))
            if h in wanted:
                counts[h] += 1
        return counts

    def snapshot(self, key: str, name: str) -> Snapshot:
        """Counts of the series as read once in this run, plus this run's acks since (one
        read, whatever the number of threads asking at once)."""
        with self._cond:
            series = self._series.setdefault((key, name), _Series())
            while series.loading:
                self._cond.wait()
            if series.snapshot is not None:
                return series.snapshot
            series.loading = True
        snapshot = None
        try:
            self.reads += 1
            snapshot = Snapshot([hash(self.signature(point))
                                 for point in iter_points(self.fetch(key, name))])
        finally:
            with self._cond:
                series.loading = False
                if snapshot is not None:
                    series.snapshot = snapshot
                self._cond.notify_all()
        return snapshot

    def fresh(self, key: str, name: str, wanted: Iterable[int]) -> Counter:
        """Counts of ``wanted`` signatures read after this call (joins the next pass)."""
        with self._cond:
            series = self._series.setdefault((key, name), _Series())
            this = series.waiting or _Pass()
            series.waiting = this
            this.wanted.update(wanted)
            if this.led:
                while not this.done.is_set():
                    self._cond.wait()
                return self._result(this)
            this.led = True
            while series.running:
                self._cond.wait()
            series.running = True
            series.waiting = None
        try:
            this.counts = self._count(key, name, this.wanted)
        except BaseException as exc:  # every waiter gets the failure (a read-back fails)
            this.error = exc
        with self._cond:
            series.running = False
            this.done.set()
            self._cond.notify_all()
        return self._result(this)

    @staticmethod
    def _result(this: _Pass) -> Counter:
        if this.error is not None:
            raise this.error
        return this.counts

    def note_applied(self, key: str, name: str, signature: tuple, seq: int) -> None:
        """This run applied a call an earlier run may have sent: its snapshot counts it."""
        if seq > self.sent_at_start:
            return
        with self._cond:
            series = self._series.get((key, name))
            if series is not None and series.snapshot is not None:
                series.snapshot.add(hash(signature))
