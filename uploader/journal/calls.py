"""Journal calls as the replay sees them: reading the pending calls of one target in order.

How each call may be ordered is decided by :mod:`comet_journal.schema.ordering`.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any, Iterator

from comet_journal.schema.ordering import kind_of, stream_key


@dataclass(eq=False)
class Call:
    """One journal row on its way to the server."""

    seq: int
    endpoint: str
    experiment_id: int | None
    ts_ms: int
    text: str  # the payload as journaled (compact JSON)
    maybe_sent: bool = False  # sent by an earlier run whose outcome was never recorded
    retry: bool = False  # a rejected call sent again (--retry-rejected)
    kind: str = ""
    stream: Any = None
    _payload: dict | None = field(default=None, repr=False)

    @property
    def payload(self) -> dict:
        if self._payload is None:
            self._payload = json.loads(self.text)
        return self._payload

    def label(self) -> str:
        p = self.payload
        name = p.get("metricName") or p.get("parameterName") or p.get("key") \
            or p.get("fileName") or ""
        return f"call {self.seq} ({self.endpoint}{' ' + repr(name) if name else ''})"


def classify(call: Call) -> Call:
    """Fill in the call's ordering kind and stream (:mod:`~comet_journal.schema.ordering`)."""
    call.kind = kind_of(call.endpoint)
    call.stream = stream_key(call)
    return call


class JournalReader:
    """Pending calls of one target in journal order, read in pages with short transactions
    (the recorder may be appending meanwhile); stops at ``end_seq``, the journal's end when
    the upload started.

    Yields first the calls to retry (``--retry-rejected``; rows ``retry``/``unknown``), then
    every call above the watermark that has no state row.
    """

    PAGE = 2000
    buffered = 0  # rows read but not yet yielded (see journal.groups.BulkReader)

    def __init__(self, conn: sqlite3.Connection, target_id: int, acked_through: int,
                 sent_through: int, end_seq: int):
        self.conn = conn
        self.target_id = target_id
        self.acked_through = acked_through
        self.sent_through = sent_through
        self.end_seq = end_seq
        self.position = acked_through  # every main-line row up to here has been yielded

    def floor(self) -> int:
        """Every main-line call at or below this seq has been yielded (or was settled)."""
        return self.position

    def take(self, keep=None) -> list:
        return []

    def _settled(self, low: int, high: int) -> set[int]:
        """Seqs in ``(low, high]`` that already have a state row (acked, rejected...)."""
        return {r[0] for r in self.conn.execute(
            "SELECT seq FROM upload_state WHERE target_id=? AND seq > ? AND seq <= ?",
            (self.target_id, low, high))}

    def retries(self) -> list[Call]:
        rows = self.conn.execute(
            "SELECT c.seq, c.endpoint, c.experiment_id, c.ts_ms, c.payload, s.state "
            "FROM upload_state s JOIN calls c ON c.seq = s.seq WHERE s.target_id=? AND "
            "s.state IN ('retry', 'unknown') ORDER BY s.seq", (self.target_id,)).fetchall()
        return [classify(Call(r[0], r[1], r[2], r[3], r[4], maybe_sent=r[5] == "unknown",
                              retry=True)) for r in rows]

    def __iter__(self) -> Iterator[Call]:
        yield from self.retries()
        yield from self._rows(self.acked_through)

    def has_create(self, experiment_id: int) -> bool:
        """Does the journal (as it is now, past ``end_seq`` too) hold the experiment's
        create call?"""
        return self.conn.execute(
            "SELECT 1 FROM calls WHERE endpoint='experiment_create' AND experiment_id=? "
            "LIMIT 1", (experiment_id,)).fetchone() is not None

    def _rows(self, cursor: int) -> Iterator[Call]:
        """Every call above ``cursor`` (to ``end_seq``) without a state row, in order."""
        conn = self.conn
        while cursor < self.end_seq:
            rows = conn.execute(
                "SELECT seq, endpoint, experiment_id, ts_ms, payload FROM calls WHERE seq > ? "
                "AND seq <= ? ORDER BY seq LIMIT ?", (cursor, self.end_seq, self.PAGE)).fetchall()
            if not rows:
                return
            last = rows[-1][0]
            settled = self._settled(cursor, last)
            sent = self.sent_through
            for seq, endpoint, exp_id, ts_ms, text in rows:
                self.position = seq
                if seq in settled:
                    continue
                yield classify(Call(seq, endpoint, exp_id, ts_ms, text, maybe_sent=seq <= sent))
            cursor = last


def journal_end(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT coalesce(max(seq), 0) FROM calls").fetchone()[0]
