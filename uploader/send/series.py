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
  read after the failure. Such calls are *parked* (:meth:`SeriesReads.park`: their
  signatures join the series' next pass) and their job ends; the replay sends them again
  later, together (:meth:`SeriesReads.settle`): the first to come back reads the series once
  for all the calls parked until then, the others wait for that read. So the drops of a
  whole run cost one read per series, not one per drop; a read-back that cannot wait
  (:meth:`SeriesReads.fresh`) joins the next pass at once.

Memory: a read is decoded point by point as the answer's bytes arrive (never held whole,
never as one list of dicts); a pass keeps counts only for the signatures asked for, and
skips undecoded the runs of items none of whose timestamps it wants; a snapshot 8 bytes a
point (sorted 64-bit hashes).
"""

from __future__ import annotations

import bisect
import json
import re
import threading
from array import array
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

from comet_journal.uploader.send.streamed import StreamedAnswer

MetricPoint = dict
Signature = Callable[[MetricPoint], tuple]


class PointReader(StreamedAnswer):
    """The ``metrics`` items of a get-metric answer, decoded as its bytes arrive
    (:meth:`feed`), each handed to ``on_point``; the answer is never held whole. An
    :class:`~comet_journal.uploader.wire.requests.AnswerSink`: ``feed`` never raises."""

    MAX_ITEM = 64 << 20  # one point's JSON larger than this: not a metrics answer
    BROKEN = "the metric series could not be decoded ({exc})"
    EARLY = "the metric series answer ended early (or has no metrics list)"

    def __init__(self, on_point: Callable[[MetricPoint], None], kept: Any = None,
                 times: set | None = None):
        self.on_point = on_point
        self.kept = kept  # what on_point gathers, for whoever made this reader
        # ``times``: only points with one of these timestamps matter (on_point ignores the
        # others), so a run of items none of which has one is skipped undecoded
        self._times = _as_texts(times)
        super().__init__()
        self._decoder = json.JSONDecoder()
        self._in_list = False
        self._done = False

    def finished(self) -> bool:
        return self._done

    def _consume(self) -> None:
        text, i = self._text, 0
        if not self._in_list:
            head = text.find('"metrics"')
            start = text.find("[", head) if head >= 0 else -1
            if start < 0:
                return  # the list has not begun yet
            self._in_list, i = True, start + 1
        # Fast path: the complete items up to the last "}," decoded as one list (a cut
        # inside a string leaves it unterminated, so such a list never parses wrongly).
        cut = text.rfind("},", i)
        if cut > i:
            try:
                items = [] if self._none_wanted(text, i, cut + 1) else \
                    json.loads("[" + text[i:cut + 1] + "]")
            except ValueError:
                items = None
            if items is not None:
                for item in items:
                    if isinstance(item, dict):
                        self.on_point(item)
                i = cut + 2
        n = len(text)
        while True:
            while i < n and text[i] in " \t\r\n,":
                i += 1
            if i >= n:
                break
            if text[i] == "]":
                self._done = True
                break
            try:
                item, i_end = self._decoder.raw_decode(text, i)
            except ValueError:
                if n - i > self.MAX_ITEM:
                    raise
                break  # the item goes on in the next piece
            i = i_end
            if isinstance(item, dict):
                self.on_point(item)
        self._text = text[i:]

    def _none_wanted(self, text: str, start: int, end: int) -> bool:
        """Do the items in ``text[start:end]`` all have integer timestamps, none wanted?
        (The key ``"timestamp"`` cannot occur inside a JSON string: its quotes would be
        escaped; so counting it counts the items that have one.)"""
        if self._times is None:
            return False
        found = _TIMESTAMP.findall(text, start, end)
        return len(found) == text.count('"timestamp"', start, end) and \
            self._times.isdisjoint(found)


_TIMESTAMP = re.compile(r'"timestamp"\s*:\s*(-?\d+)\s*(?=[,}])')


def _as_texts(times: set | None) -> set[str] | None:
    """Integer timestamps as the answer writes them (None: any, or one is not an int)."""
    if times is None or not all(type(t) is int for t in times):
        return None
    return {str(t) for t in times}


def iter_points(body: bytes | None, window: int = 1 << 20) -> Iterator[MetricPoint]:
    """The ``metrics`` items of a whole get-metric answer, fed a window at a time."""
    points: list[MetricPoint] = []
    reader = PointReader(points.append)
    for start in range(0, len(body or b""), window):
        reader.feed(body[start:start + window])
        yield from points
        points.clear()


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
    times: set | None = field(default_factory=set)  # None: any timestamp
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

    :param fetch: ``fetch(key, name, make_reader) -> PointReader | None``: one read of a
        whole series into a fresh ``make_reader()`` per attempt; the reader that took the
        answer (None: the server has no such series).
    :param signature: a point's signature (what makes two points the same).
    :param sent_at_start: the highest seq an earlier run may have sent.
    """

    def __init__(self, fetch: Callable[[str, str, Callable[[], PointReader]],
                                       PointReader | None], signature: Signature,
                 sent_at_start: int):
        self.fetch = fetch
        self.signature = signature
        self.sent_at_start = sent_at_start
        self._cond = threading.Condition()
        self._series: dict[tuple[str, str], _Series] = {}
        self.reads = 0  # series reads made (figures and tests)

    def _hashes(self, key: str, name: str, wanted: set | None,
                times: set | None = None) -> list[int]:
        """One read: the hashes of the series' points (only the ``wanted`` ones if given;
        ``times``: the timestamps they have, a cheap test before a point's signature)."""
        self.reads += 1
        signature = self.signature

        def make_reader() -> PointReader:  # one per attempt: a failed one is dropped whole
            hashes: list[int] = []

            def on_point(point: MetricPoint) -> None:
                if times is not None and point.get("timestamp") not in times:
                    return
                h = hash(signature(point))
                if wanted is None or h in wanted:
                    hashes.append(h)
            return PointReader(on_point, hashes, times)

        reader = self.fetch(key, name, make_reader)
        return [] if reader is None else reader.kept

    def _count(self, key: str, name: str, wanted: set, times: set | None) -> Counter:
        return Counter(self._hashes(key, name, wanted, times))

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
            snapshot = Snapshot(self._hashes(key, name, None))
        finally:
            with self._cond:
                series.loading = False
                if snapshot is not None:
                    series.snapshot = snapshot
                self._cond.notify_all()
        return snapshot

    def fresh(self, key: str, name: str, wanted: Iterable[int],
              times: Iterable[Any] | None = None) -> Counter:
        """Counts of ``wanted`` signatures read after this call (joins the next pass).
        ``times``: the timestamps of the wanted points, if the signature holds them."""
        return self.settle(key, name, self.park(key, name, wanted, times))

    def park(self, key: str, name: str, wanted: Iterable[int],
             times: Iterable[Any] | None = None) -> "_Pass":
        """Put ``wanted`` signatures (of calls whose request failed after leaving) into the
        next pass of the series, to be read later (:meth:`settle`): every call parked until
        that pass begins is answered by its one read."""
        with self._cond:
            series = self._series.setdefault((key, name), _Series())
            this = series.waiting or _Pass()
            series.waiting = this
            this.wanted.update(wanted)
            if times is None:
                this.times = None
            elif this.times is not None:
                this.times.update(times)
            return this

    def settle(self, key: str, name: str, this: "_Pass") -> Counter:
        """The counts of the pass ``this`` (from :meth:`park`): read now by the first caller
        (after any pass in progress), waited for by the others."""
        with self._cond:
            series = self._series[(key, name)]
            if this.led:
                while not this.done.is_set():
                    self._cond.wait()
                return self._result(this)
            this.led = True
            while series.running:
                self._cond.wait()
            series.running = True
            if series.waiting is this:
                series.waiting = None  # calls parked from now on wait for the next pass
        try:
            this.counts = self._count(key, name, this.wanted, this.times)
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
