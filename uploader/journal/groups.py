"""Batch mode's bulk path: metric points go out a page of journal rows at a time.

In batch mode, against a server with ``batch/logger/experiment/metric``, the
dispatcher never sees a metric point on its own. :class:`BulkReader` reads the journal in
pages: the page's other calls come as rows, its ``log_metric`` rows as one aggregate per
experiment, made by SQLite (seqs, and batch items with their timestamp spliced in), so a page
costs a few queries and no Python work per point. An experiment's points fill
:class:`MetricGroup` units of ``batch_size`` consecutive points; a group is one request and,
for the dispatcher, one unit: admitted, ordered, sent and settled as a whole, with one
progress update for all its rows.

Ordering (:mod:`comet_journal.uploader.journal.calls`): points are ``positioned`` and go concurrently with
everything else; an experiment's open group is flushed before any create or barrier of that
experiment (all groups before any global call) is yielded, so whatever holds a point back, or
is held back by it, holds its group. Up to ``lanes`` groups of an experiment fly at once, but
a group that shares a point (same payload and time) with a group in flight waits for it
(:meth:`MetricGroup.overlaps`): identical points must never be in two requests of unknown
outcome at once, or a read-back could not tell which copy the server has (within one request
a batch is applied or not as a whole).

Exactly once: ``sent_through`` covers a group before it is handed out (the dispatcher), a
group holding a row an earlier run may have sent is read back before sending, and an
ambiguous failure (timeout, reset, 5xx) reads the group back item by item and resends only
what the server lacks (:mod:`comet_journal.uploader.send.groups`). A 404 switches batches off and
the rows go one by one through the documented endpoint, in order.
"""

from __future__ import annotations

import json
from typing import Callable, Iterator

from comet_journal.uploader.journal.calls import Call, JournalReader, classify
from comet_journal.schema.ordering import BARRIER, CREATE, GLOBAL, POSITIONED

_SEP = "\n"  # compact JSON never holds a raw newline: it separates items in an aggregate
_HOLDS = (CREATE, BARRIER, GLOBAL)

_NOT_SETTLED = ("seq NOT IN (SELECT seq FROM upload_state WHERE target_id = ? AND seq > ? "
                "AND seq <= ?)")
# Everything but the points (a point of no experiment goes alone: it is refused as such).
_OTHERS_SQL = ("SELECT seq, endpoint, experiment_id, ts_ms, payload FROM calls WHERE seq > ? "
               "AND seq <= ? AND (endpoint != 'log_metric' OR experiment_id IS NULL) AND "
               + _NOT_SETTLED + " ORDER BY seq")
# A metric row's payload as its batch item: the call's time is added unless the caller gave
# one (as build_batch does).
_ITEM = ("CASE WHEN instr(payload, '\"timestamp\":') = 0 THEN CASE WHEN payload = '{}' THEN "
         "'{\"timestamp\":' || ts_ms || '}' ELSE substr(payload, 1, length(payload) - 1) || "
         "',\"timestamp\":' || ts_ms || '}' END ELSE payload END")
_POINTS = ("FROM calls WHERE seq > ? AND seq <= ? AND endpoint = 'log_metric' AND "
           "experiment_id IS NOT NULL AND " + _NOT_SETTLED)
# One row per experiment: its seqs, and its items joined by _SEP.
_METRICS_SQL = (f"SELECT experiment_id, group_concat(seq), group_concat({_ITEM}, char(10)) "
                f"{_POINTS} GROUP BY experiment_id")
_ROWS_SQL = f"SELECT seq, {_ITEM} {_POINTS} AND experiment_id = ? ORDER BY seq"


class MetricGroup:
    """Consecutive ``log_metric`` calls of one experiment (at most ``batch_size``).

    ``seq`` is its first row's seq (the unit's place in the journal), ``items`` the rows'
    batch items (compact JSON), ``maybe_sent`` whether an earlier run may have sent a row.
    """

    __slots__ = ("seq", "experiment_id", "stream", "seqs", "items", "maybe_sent", "_keys",
                 "_admitted")
    kind = POSITIONED
    endpoint = "log_metric"
    retry = False

    def __init__(self, experiment_id: int, seqs: list[int], items: list[str],
                 maybe_sent: bool):
        self.seq = seqs[0]
        self.experiment_id = experiment_id
        self.stream = (experiment_id, "bulk")
        self.seqs = seqs
        self.items = items
        self.maybe_sent = maybe_sent
        self._keys: set[str] | None = None

    def __len__(self) -> int:
        return len(self.seqs)

    @property
    def last(self) -> int:
        return self.seqs[-1]

    def overlaps(self, other: "MetricGroup") -> bool:
        """Do the two groups share a point (same payload and time)?"""
        if self._keys is None:
            self._keys = set(self.items)
        return not self._keys.isdisjoint(other.items)

    def calls(self, sent_through: int = 0) -> list[Call]:
        """The rows as :class:`Call` objects (read-back, fallback): rare, so not kept."""
        exp = self.experiment_id
        return [Call(seq, "log_metric", exp, json.loads(text)["timestamp"], text,
                     maybe_sent=seq <= sent_through, kind=POSITIONED)
                for seq, text in zip(self.seqs, self.items)]

    def label(self) -> str:
        return f"batch of {len(self.seqs)} log_metric calls from call {self.seq}"


class _Open:
    """The points of one experiment read but not yet in a group."""

    __slots__ = ("seqs", "items")

    def __init__(self):
        self.seqs: list[int] = []
        self.items: list[str] = []


class BulkReader(JournalReader):
    """A :class:`~comet_journal.uploader.calls.JournalReader` that yields metric rows as groups.

    :param enabled: whether to group now (batches may be switched off by a 404 mid-run).
    ``buffered`` rows wait in open groups; :meth:`take` flushes some early (the dispatcher
    does when its window is full and an experiment's lanes are idle); :meth:`floor` is the
    highest seq below which every row has been yielded or settled (for the watermark).
    """

    SPAN = 4000  # seqs per page

    def __init__(self, *args, batch_size: int, enabled: Callable[[], bool], **kwargs):
        super().__init__(*args, **kwargs)
        self.batch_size = max(1, batch_size)
        self.enabled = enabled
        self.open: dict[int, _Open] = {}
        self.buffered = 0

    def floor(self) -> int:
        if self.buffered:
            return min(o.seqs[0] for o in self.open.values() if o.seqs) - 1
        return self.position

    def take(self, keep: Callable[[int], bool] = lambda exp: False) -> list[MetricGroup]:
        """Remove and return the open groups of the experiments ``keep`` does not keep (the
        caller admits them all at once: :meth:`floor` no longer covers them)."""
        return list(self._flush(keep))

    def _flush(self, keep: Callable[[int], bool]) -> Iterator[MetricGroup]:
        # one at a time: rows leave ``open`` only when their group is handed over
        for exp_id in sorted((e for e, o in self.open.items() if o.seqs and not keep(e)),
                             key=lambda e: self.open[e].seqs[0]):
            while self.open[exp_id].seqs:  # (the dispatcher may take mid-page: many rows)
                yield self._group(exp_id, min(self.batch_size, len(self.open[exp_id].seqs)))

    def _group(self, exp_id: int, n: int) -> MetricGroup:
        o = self.open[exp_id]
        seqs, items = o.seqs[:n], o.items[:n]
        del o.seqs[:n], o.items[:n]
        self.buffered -= n
        return MetricGroup(exp_id, seqs, items, seqs[0] <= self.sent_through)

    def _add_points(self, low: int, high: int) -> Iterator[MetricGroup]:
        """The metric rows in ``(low, high]`` into the open groups; yield the full ones."""
        t = self.target_id
        for exp_id, seq_text, items_text in self.conn.execute(
                _METRICS_SQL, (low, high, t, low, high)).fetchall():
            seqs = list(map(int, seq_text.split(",")))
            items = items_text.split(_SEP)
            if len(items) != len(seqs):  # a raw newline in a payload (no recorder writes it)
                rows = self.conn.execute(_ROWS_SQL, (low, high, t, low, high, exp_id))
                seqs, items = map(list, zip(*rows.fetchall()))
            if seqs != sorted(seqs):  # an aggregate's order is not promised
                pairs = sorted(zip(seqs, items))
                seqs, items = [p[0] for p in pairs], [p[1] for p in pairs]
            o = self.open.get(exp_id)
            if o is None:
                o = self.open[exp_id] = _Open()
            o.seqs += seqs
            o.items += items
            self.buffered += len(seqs)
            while len(o.seqs) >= self.batch_size:
                yield self._group(exp_id, self.batch_size)

    def __iter__(self) -> Iterator:
        if not self.enabled():
            yield from super().__iter__()
            return
        yield from self.retries()
        cursor = self.acked_through
        conn, t = self.conn, self.target_id
        while cursor < self.end_seq:
            high = min(self.end_seq, cursor + self.SPAN)
            if not self.enabled():  # batches switched off (404): the rest goes call by call
                yield from self._flush(lambda exp: False)
                yield from self._rows(cursor)
                return
            low = cursor
            for seq, endpoint, exp_id, ts_ms, text in conn.execute(
                    _OTHERS_SQL, (cursor, high, t, cursor, high)).fetchall():
                call = classify(Call(seq, endpoint, exp_id, ts_ms, text,
                                     maybe_sent=seq <= self.sent_through))
                if call.kind in _HOLDS:
                    # the points before it, then (if they are its experiment's, or it is
                    # global) their groups, before it
                    yield from self._add_points(low, seq - 1)
                    self.position = seq - 1
                    low = seq
                    yield from self._flush(lambda exp: call.kind != GLOBAL and exp != exp_id)
                    self.position = seq
                yield call
            yield from self._add_points(low, high)
            self.position = cursor = high
        yield from self._flush(lambda exp: False)
