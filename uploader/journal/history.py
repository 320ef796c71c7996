"""What the journal says came before a call: the context a read-back compares the server with.

Read through a connection of the calling thread (``connect``), never written.
"""

from __future__ import annotations

import sqlite3
from typing import Any, Callable

from comet_journal.schema import blobs as blob_store
from comet_journal.uploader.journal.calls import Call

LOOKBACK = 200_000  # journal rows scanned back for identical earlier calls

_NOT_REJECTED = ("seq NOT IN (SELECT seq FROM upload_state WHERE target_id=? AND "
                 "state='rejected')")


class History:
    """Earlier (and, for an interrupted run, later) journal calls of one target.

    :param connect: the calling thread's read connection to the journal.
    :param target_id: the upload target whose rejections do not count.
    :param sent_at_start: the highest seq an earlier run may have sent.
    :param adopted: experiments whose calls another copy's upload may have sent (any seq).
    """

    def __init__(self, connect: Callable[[], sqlite3.Connection], target_id: int,
                 sent_at_start: int, adopted: set[int] | None = None):
        self.connect = connect
        self.target_id = target_id
        self.sent_at_start = sent_at_start
        self.adopted = adopted if adopted is not None else set()

    def rows_before(self, call: Call, endpoint: str, extra_sql: str = "", args: tuple = (),
                    lookback: int | None = LOOKBACK) -> list[tuple]:
        """``(seq, ts_ms, payload)`` of earlier calls of the same experiment and endpoint,
        minus rejected ones, in order."""
        low = max(0, call.seq - lookback) if lookback else 0
        return self.connect().execute(
            "SELECT seq, ts_ms, payload FROM calls WHERE seq >= ? AND seq < ? AND endpoint=? "
            "AND experiment_id IS ? " + extra_sql + " AND " + _NOT_REJECTED + " ORDER BY seq",
            (low, call.seq, endpoint, call.experiment_id, *args, self.target_id)).fetchall()

    def sent_later(self, call: Call, name_field: str, name: str) -> list[Call]:
        """Later calls of ``call``'s stream (same endpoint and name) that an earlier run may
        have sent."""
        high = self.sent_at_start
        if call.experiment_id in self.adopted:
            high = call.seq + LOOKBACK  # every later call of the stream may be there
        if high <= call.seq:
            return []
        rows = self.connect().execute(
            "SELECT seq, ts_ms, payload FROM calls WHERE seq > ? AND seq <= ? AND endpoint=? "
            "AND experiment_id IS ? AND " + _NOT_REJECTED + " ORDER BY seq",
            (call.seq, high, call.endpoint, call.experiment_id, self.target_id)).fetchall()
        later = [Call(seq, call.endpoint, call.experiment_id, ts, text) for seq, ts, text in rows]
        return [c for c in later if c.payload.get(name_field) == name]

    def output_length_before(self, call: Call) -> int:
        """Characters of output the experiment logged before ``call``."""
        return self.connect().execute(
            "SELECT coalesce(sum(length(json_extract(j.value, '$.output'))), 0) FROM calls c, "
            "json_each(c.payload, '$.outputLines') j WHERE c.endpoint='log_output' AND "
            "c.experiment_id IS ? AND c.seq < ? AND c." + _NOT_REJECTED,
            (call.experiment_id, call.seq, self.target_id)).fetchone()[0]

    def text_of(self, ref: Any) -> Any:
        """A field's text: a blob reference read from the journal, else the value itself."""
        if blob_store.is_blob_ref(ref):
            return blob_store.read_blob(self.connect(), ref["$blob"]).decode(
                "utf-8", errors="replace")
        return ref

    def stream_rows(self, experiment_id: int | None, endpoint: str, after_seq: int
                    ) -> list[tuple]:
        """``(seq, ts_ms, payload)`` of every call of one experiment's endpoint after
        ``after_seq``, in order, rejected ones included: what depends on the journal alone
        (the wire times of an ordered stream) must not change with upload progress."""
        return self.connect().execute(
            "SELECT seq, ts_ms, payload FROM calls WHERE seq > ? AND endpoint=? AND "
            "experiment_id IS ? ORDER BY seq", (after_seq, endpoint, experiment_id)).fetchall()
