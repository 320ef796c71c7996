"""Wire times of the calls of one replay (:mod:`comet_journal.schema.wire_times` says why and
how): computed from the journal once per stream and run, then kept up to date as the journal
grows. Memory: the last time per name, and the times of the calls that were moved.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field

from comet_journal.schema.wire_times import STAMPED, StreamClock, own_time
from comet_journal.uploader.journal.calls import Call
from comet_journal.uploader.journal.history import History


@dataclass
class _Stream:
    clock: StreamClock
    high: int = 0  # journal rows read so far (seq)
    moved: dict = field(default_factory=dict)  # seq -> wire time, where not its own time


class WireTimes:
    """Wire times of the calls of :data:`STAMPED` endpoints; thread-safe."""

    def __init__(self, history: History):
        self.history = history
        self._lock = threading.Lock()
        self._streams: dict[tuple, _Stream] = {}

    def time_of(self, call: Call) -> int:
        own = own_time(call.payload, call.ts_ms)
        name_field = STAMPED.get(call.endpoint)
        if name_field is None:
            return own
        with self._lock:
            stream = self._streams.get((call.experiment_id, call.endpoint))
            if stream is None:
                stream = _Stream(StreamClock(name_field))
                self._streams[(call.experiment_id, call.endpoint)] = stream
            if call.seq > stream.high:
                self._advance(stream, call)
            return stream.moved.get(call.seq, own)

    def _advance(self, stream: _Stream, call: Call) -> None:
        for seq, ts_ms, text in self.history.stream_rows(call.experiment_id, call.endpoint,
                                                         stream.high):
            payload = json.loads(text)
            wire = stream.clock.next(payload, ts_ms)
            if wire != own_time(payload, ts_ms):
                stream.moved[seq] = wire
            stream.high = seq

    def stamp(self, call: Call) -> Call:
        """Give ``call`` its wire time (``ts_ms``, and the payload's ``timestamp`` if it
        has one); idempotent."""
        if call.endpoint not in STAMPED:
            return call
        wire = self.time_of(call)
        payload = call.payload
        if "timestamp" in payload and payload["timestamp"] != wire:
            payload["timestamp"] = wire
            call.text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
        call.ts_ms = wire
        return call
