"""What the two output captures share: line splitting, and journaling lines as ``log_output``
rows (:class:`Capture`). :mod:`~comet_journal.recorder.output_capture` (Python level) and
:mod:`~comet_journal.recorder.fd_capture` (file descriptors) build on it."""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import time
import weakref
from typing import Any, Final

# Imported for its fork hook's place: a child's writers must empty the queue they inherit
# before this module's threads restart there and journal (os.register_at_fork runs
# after_in_child hooks in registration order; the first import registers first).
from comet_journal.recorder import writer as _writer_first  # noqa: F401

logger = logging.getLogger(__name__)

MAX_LINE_CHARS: Final = 100_000
ROOM_WAIT_MAX_S: Final = 1.0  # the capture thread slows down for the journal, at most this

_CAPTURES: "weakref.WeakSet[Capture]" = weakref.WeakSet()
_SURROGATES: Final = re.compile("[\ud800-\udfff]")


class LineSplitter:
    """Turns chunks of text into complete lines (each keeping its ``"\\n"``)."""

    __slots__ = ("_pending",)

    def __init__(self):
        self._pending = ""

    def feed(self, text: str) -> list[str]:
        if "\n" not in text:
            pending = self._pending + text
            if "\r" in text:
                pending = _keep_last_update(pending)
            out = []
            while len(pending) > MAX_LINE_CHARS:
                out.append(pending[:MAX_LINE_CHARS])
                pending = pending[MAX_LINE_CHARS:]
            self._pending = pending
            return out
        parts = text.split("\n")
        parts[0] = self._pending + parts[0]
        self._pending = ""
        out = []
        for part in parts[:-1]:
            if "\r" in part:
                part = _keep_last_update(part)
            while len(part) > MAX_LINE_CHARS:
                out.append(part[:MAX_LINE_CHARS])
                part = part[MAX_LINE_CHARS:]
            out.append(part + "\n")
        out.extend(self.feed(parts[-1]) if parts[-1] else ())
        return out

    def rest(self) -> str:
        pending, self._pending = self._pending, ""
        return pending

    def clear(self) -> None:
        self._pending = ""


def _keep_last_update(text: str) -> str:
    """Drop what a carriage return overwrites: keep from the last ``"\\r"`` that has text
    after it (a trailing ``"\\r"`` may be half of a ``"\\r\\n"``)."""
    end = len(text) - 1 if text.endswith("\r") else len(text)
    i = text.rfind("\r", 0, end)
    return text[i:] if i > 0 else text


def _clean(text: str) -> str:
    """Text that SQLite can store: lone surrogates (from surrogateescape) become U+FFFD."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return _SURROGATES.sub("\ufffd", text)


def _on_recorder_thread() -> str | None:
    name = threading.current_thread().name
    return name if name.startswith("recorder.") else None


class Capture:
    """What both captures share: the experiment, the lock, offsets and journaling."""

    def __init__(self, experiment: Any, restart_in_child: bool = True):
        self._exp = experiment
        self._lock = threading.RLock()
        self._journaling = False
        self._stopped = False
        self.restart_in_child = restart_in_child
        self.lines = 0
        self.failures = 0
        self._reported = False
        self._pid = os.getpid()
        _CAPTURES.add(self)

    def _prepare(self, lines: list[str], stderr: bool) -> dict | None:
        """Payload of one ``log_output`` row; called under the lock (offsets in order)."""
        if not lines or not self._journaling:
            return None
        exp = self._exp
        ts = int(time.time() * 1000)
        secrets = getattr(exp, "_secrets", None)  # the API key never enters the journal
        out = []
        for line in lines:
            offset = exp._output_offset
            exp._output_offset = offset + 1
            text = secrets.mask_text(_clean(line)) if secrets else _clean(line)
            out.append({"output": text, "stderr": stderr, "localTimestamp": ts,
                        "offset": offset})
        payload: dict = {"outputLines": out}
        if exp.context is not None:
            payload["context"] = exp.context
        self.lines += len(out)
        return payload

    def _journal(self, payload: dict) -> None:
        """Queue one row; outside the lock, so that waiting for the writer cannot deadlock
        with the writer thread printing (its reports go through the tee too)."""
        exp = self._exp
        thread = _on_recorder_thread()
        if thread is None:
            exp._enqueue("log_output", payload)
            return
        queue = exp._queue
        queue.append(("log_output", exp._id, time.time(), payload))
        if thread != "recorder.journal-writer":  # the writer never waits for itself
            deadline = time.monotonic() + ROOM_WAIT_MAX_S
            while len(queue) > exp._max_queue and time.monotonic() < deadline \
                    and not exp.ended:
                time.sleep(0.01)

    def _failed(self, exc: BaseException) -> None:
        self.failures += 1
        if not self._reported:
            self._reported = True
            message = f"output capture could not journal a line ({type(exc).__name__}: {exc})"
            logger.error("comet-journal: %s", message)
            try:
                stream = sys.__stderr__
                if stream is not None:
                    stream.write(f"comet-journal: {message}\n")
                    stream.flush()
            except Exception:
                pass

    def _after_fork_in_child(self) -> None:
        self._lock = threading.RLock()
        self._pid = os.getpid()


def _after_fork_in_child() -> None:
    for capture in list(_CAPTURES):
        try:
            capture._after_fork_in_child()
        except Exception:
            pass


os.register_at_fork(after_in_child=_after_fork_in_child)
