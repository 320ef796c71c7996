"""Metric series held in memory, grown incrementally, and downsampled for drawing.

A chart never receives more than about two points per pixel: for the visible range the
series is cut into ``width`` buckets and each bucket sends its minimum and maximum (in x
order), plus the first and last point of the range, so spikes survive and the line looks the
same as at full resolution. When the range holds few enough points they are sent as they are
(full resolution when zoomed in). The per-bucket work is ``min``/``max`` over array slices,
which runs in C: a million points downsample in milliseconds.

Series are read once from the journal (``journal_read``) and then only the calls journaled
since (``seq`` above the last one read), so a live run costs a small query per refresh.
"""

from __future__ import annotations

import threading
import time
from array import array
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from typing import Callable, Iterable

from comet_journal.uploader.journal.read import as_number

X_KINDS = ("step", "epoch", "time")
REFRESH_EVERY_S = 0.3


@dataclass
class Series:
    """One metric of one context: every numeric point, in journal order."""

    name: str
    context: str | None
    points: int = 0  # rows in the journal, numeric or not
    last_step: int | None = None
    x: dict = field(default_factory=lambda: {k: array("d") for k in X_KINDS})
    y: array = field(default_factory=lambda: array("d"))
    _sorted: dict = field(default_factory=dict)
    _in_order: dict = field(default_factory=dict)

    def add(self, step, epoch, ts_ms, value) -> None:
        self.points += 1
        if step is not None and (self.last_step is None or step > self.last_step):
            self.last_step = step
        number = as_number(value)
        if number is None:
            return
        n = len(self.y)
        self.x["step"].append(n if step is None else step)
        self.x["epoch"].append(0 if epoch is None else epoch)
        self.x["time"].append(ts_ms / 1000.0)
        self.y.append(number)

    def ordered(self, kind: str) -> tuple[array, array]:
        """x (sorted) and y for an x kind; sorted once per length when not already in order
        (the order check covers only the points added since the last call)."""
        xs, n = self.x[kind], len(self.x[kind])
        checked, in_order = self._in_order.get(kind, (0, True))
        if in_order and checked < n:
            start = max(checked - 1, 0)
            in_order = all(xs[i] <= xs[i + 1] for i in range(start, n - 1))
            self._in_order[kind] = (n, in_order)
        if in_order:
            return xs, self.y
        cached = self._sorted.get(kind)
        if not cached or cached[0] != n:
            order = sorted(range(n), key=xs.__getitem__)
            cached = (n, array("d", (xs[i] for i in order)),
                      array("d", (self.y[i] for i in order)))
            self._sorted[kind] = cached
        return cached[1], cached[2]

    def describe(self) -> dict:
        return {"name": self.name, "context": self.context, "points": self.points,
                "last_step": self.last_step}


def downsample(xs: array, ys: array, lo: float | None, hi: float | None,
               width: int) -> tuple[list, list, int]:
    """Points of ``[lo, hi]`` for a chart ``width`` buckets wide; returns (x, y, in range)."""
    i0 = 0 if lo is None else bisect_left(xs, lo)
    i1 = len(xs) if hi is None else bisect_right(xs, hi)
    # One point on each side of the range, so the line reaches the chart's edges.
    i0, i1 = max(0, i0 - 1), min(len(xs), i1 + 1)
    n = i1 - i0
    if n <= 2 * width:
        return xs[i0:i1].tolist(), ys[i0:i1].tolist(), n
    keep: list[int] = [i0]
    for b in range(width):
        j0, j1 = i0 + n * b // width, i0 + n * (b + 1) // width
        if j1 <= j0:
            continue
        part = ys[j0:j1]
        low, high = part.index(min(part)) + j0, part.index(max(part)) + j0
        keep.extend((low, high) if low <= high else (high, low))
    keep.append(i1 - 1)
    unique = sorted(set(keep))
    return [xs[i] for i in unique], [ys[i] for i in unique], n


class RunSeries:
    """Every series of one run, refreshed from the journal at most every REFRESH_EVERY_S."""

    def __init__(self, read_rows: Callable[[dict], Iterable[tuple]]):
        # read_rows(cursor) -> (seq, name, context, step, epoch, ts, value) of the points not
        # read yet, advancing the cursor (journal path -> seq read through)
        self.read_rows = read_rows
        self.series: dict[tuple[str, str | None], Series] = {}
        self.cursor: dict[str, int] = {}
        self.refreshed_at = 0.0
        self.lock = threading.Lock()

    def refresh(self, force: bool = False) -> None:
        with self.lock:
            if not force and time.monotonic() - self.refreshed_at < REFRESH_EVERY_S:
                return
            series = self.series
            for _seq, name, context, step, epoch, ts_ms, value in self.read_rows(self.cursor):
                sid = (name, context)
                s = series.get(sid)
                if s is None:
                    s = series[sid] = Series(name, context)
                s.add(step, epoch, ts_ms, value)
            self.refreshed_at = time.monotonic()

    def describe(self) -> list[dict]:
        self.refresh()
        return [s.describe() for _k, s in sorted(self.series.items(),
                                                  key=lambda kv: (kv[0][0], kv[0][1] or ""))]

    def get(self, name: str, context: str | None) -> Series:
        self.refresh()
        try:
            return self.series[(name, context)]
        except KeyError:
            raise KeyError(f"no metric {name!r} (context {context!r}) in this run") from None
