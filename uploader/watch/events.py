"""The daemon's event log: one line per event on stderr, with a timestamp, or one JSON object
per event (``--json-log``) for log collectors. Never carries the API key."""

from __future__ import annotations

import datetime as _dt
import json
import sys
import threading
from typing import Any, TextIO

from comet_journal.uploader.errors import redact

LEVELS = ("debug", "info", "warning", "error")


class EventLog:
    """``log(event, message, **fields)``; thread-safe."""

    def __init__(self, stream: TextIO | None = None, json_mode: bool = False,
                 min_level: str = "info"):
        self.stream = stream
        self.json_mode = json_mode
        self.min_level = LEVELS.index(min_level)
        self._lock = threading.Lock()

    def __call__(self, event: str, message: str, level: str = "info", **fields: Any) -> None:
        if LEVELS.index(level) < self.min_level:
            return
        now = _dt.datetime.now(_dt.timezone.utc)
        if self.json_mode:
            record = {"ts": now.isoformat(timespec="milliseconds"), "level": level,
                      "event": event, "message": redact(message)}
            record.update({k: redact(v) if isinstance(v, str) else v
                           for k, v in fields.items()})
            line = json.dumps(record, sort_keys=True, default=str)
        else:
            line = f"{now.strftime('%Y-%m-%dT%H:%M:%S.%f')[:-3]}Z {level.upper():<7} " \
                   f"{event}: {redact(message)}"
        stream = self.stream or sys.stderr
        with self._lock:
            try:
                stream.write(line + "\n")
                stream.flush()
            except (OSError, ValueError):
                pass
