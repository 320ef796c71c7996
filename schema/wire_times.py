"""Distinct wire timestamps for the ordered streams read back by their current value.

A parameter or "other" reads back from Comet as a summary: the value and timestamp of the
last call applied. Identical values logged within one millisecond look the same there, so
after an interrupt a read-back could not tell how far a run of them got. Each call of such a
stream (one experiment, one endpoint, one name) therefore goes out with a timestamp strictly
above the previous call's: its own (the payload's ``timestamp``, else its journal time) or,
where that is not above, the previous one's + 1 ms. The times follow from the journal alone
(every row of the stream in journal order, rejected ones included), so every upload run, its
read-backs and the emulator's comparison compute the same time for the same call.
"""

from __future__ import annotations

from typing import Final

# The ordered endpoints read back by their current value, and the field naming the stream.
STAMPED: Final = {"log_parameter": "parameterName", "log_other": "key"}


def own_time(payload: dict, ts_ms: int) -> int:
    """A call's own time: the payload's ``timestamp`` (ms) if it has one, else the journal's."""
    ts = payload.get("timestamp")
    return int(ts) if isinstance(ts, (int, float)) and not isinstance(ts, bool) else ts_ms


class StreamClock:
    """Wire times of one experiment's calls of one :data:`STAMPED` endpoint, fed in journal
    order (:meth:`next`)."""

    def __init__(self, name_field: str):
        self.name_field = name_field
        self.last: dict = {}  # name -> wire time of its latest call

    def next(self, payload: dict, ts_ms: int) -> int:
        name = payload.get(self.name_field)
        own = own_time(payload, ts_ms)
        previous = self.last.get(name)
        wire = own if previous is None or own > previous else previous + 1
        self.last[name] = wire
        return wire
