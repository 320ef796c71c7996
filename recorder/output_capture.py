"""Output capture: standard output and standard error journaled as output lines.

Two ways, both keeping what reaches the terminal byte-for-byte unchanged and in order:

* :class:`PythonCapture` (``auto_output_logging="simple"``, the default, here):
  ``sys.stdout`` and ``sys.stderr`` are replaced by tees that write to the original stream
  first, then journal complete lines. ``logging.StreamHandler`` objects that held the
  original streams are pointed at the tees (as the official SDK does). Output written below
  Python (C extensions, child processes, ``os.write(1, ...)``, ``sys.stdout.buffer``) is
  not seen.
* :class:`comet_journal.recorder.fd_capture.FdCapture` (``auto_output_logging="fd"``): file descriptors 1
  and 2 are redirected into pipes; a thread forwards every byte to the original descriptor
  and journals the lines. This sees output of C extensions and of child processes too.

A journaled line keeps its ``"\\n"``, so the lines of one stream, in offset order, concatenate
to exactly what was written (give or take the in-place updates below). A line longer than
``MAX_LINE_CHARS`` is journaled in pieces; bytes that are not UTF-8 are journaled as U+FFFD.
In-place updates (progress bars redrawn after ``"\\r"``) are journaled as the terminal shows
them: only the text after the last carriage return of a line is kept.

Both restore exactly what they replaced on ``stop()`` (called by ``Experiment.end()``,
including at exit and from ``with`` on an exception). Journaling never raises into the
caller: a failure is counted and reported once.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import time
import weakref
from typing import Any, Final

logger = logging.getLogger(__name__)

MAX_LINE_CHARS: Final = 100_000
ROOM_WAIT_MAX_S: Final = 1.0  # the capture thread slows down for the journal, at most this

_CAPTURES: "weakref.WeakSet[_Capture]" = weakref.WeakSet()
_local = threading.local()  # .busy: the captures this thread is inside (no re-entry)
_SURROGATES: Final = re.compile("[\ud800-\udfff]")


class _LineSplitter:
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


class _Capture:
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


# --- Python-level capture ---------------------------------------------------------------------

class _Tee:
    """Stands in for ``sys.stdout`` / ``sys.stderr``: the original stream gets every write
    first, unchanged; complete lines are then journaled. Everything else is delegated."""

    def __init__(self, capture: "PythonCapture", original: Any, stderr: bool):
        self._capture = capture
        self._original = original
        self._stderr = stderr
        self._splitter = _LineSplitter()
        self._disabled = False

    def write(self, s):
        original = self._original
        capture = self._capture
        busy = getattr(_local, "busy", None)
        if busy is None:
            busy = _local.busy = set()
        if self._disabled or capture in busy:
            return original.write(s)
        payload = None
        busy.add(capture)  # a write from inside (a signal handler, a report) passes through
        try:
            with capture._lock:
                n = original.write(s)  # raises as the original would: then nothing journaled
                if isinstance(s, str) and s:
                    try:
                        payload = capture._prepare(self._splitter.feed(s), self._stderr)
                    except Exception as exc:
                        capture._failed(exc)
            if payload is not None:
                try:
                    capture._journal(payload)
                except Exception as exc:
                    capture._failed(exc)
        finally:
            busy.discard(capture)
        return n

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self._original.flush()

    def _finish(self) -> dict | None:
        """The pending partial line as a last row (called under the capture lock)."""
        rest = self._splitter.rest()
        return self._capture._prepare([rest], self._stderr) if rest else None

    def __getattr__(self, name: str):
        if name in _TEE_SLOTS:  # our own, not set yet (copy, pickle): no recursion
            raise AttributeError(name)
        return getattr(self._original, name)

    def __repr__(self) -> str:
        return f"<comet-journal tee of {self._original!r}>"


_TEE_SLOTS: Final = frozenset({"_capture", "_original", "_stderr", "_splitter", "_disabled"})


def _unwrap(stream: Any) -> Any:
    """Skip tees left disabled in place by captures that could not unhook themselves."""
    while isinstance(stream, _Tee) and stream._disabled:
        stream = stream._original
    return stream


class PythonCapture(_Capture):
    """Tees ``sys.stdout`` and ``sys.stderr`` (see the module docstring)."""

    def __init__(self, experiment: Any, restart_in_child: bool = True):
        super().__init__(experiment, restart_in_child)
        self._tees: dict[str, _Tee] = {}
        self._originals: dict[str, Any] = {}
        self._handlers: list[tuple[logging.StreamHandler, Any]] = []

    def start(self) -> None:
        self._journaling = True
        for name, stderr in (("stdout", False), ("stderr", True)):
            original = getattr(sys, name)
            if original is None:  # pythonw, or a closed stream: nothing to capture
                continue
            tee = _Tee(self, original, stderr)
            self._tees[name], self._originals[name] = tee, original
            setattr(sys, name, tee)
        by_original = {id(o): self._tees[n] for n, o in self._originals.items()}
        for handler in _stream_handlers():
            tee = by_original.get(id(handler.stream))
            if tee is not None:
                old = handler.setStream(tee)
                self._handlers.append((handler, old))

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        with self._lock:
            payloads = [tee._finish() for tee in self._tees.values()]
        for payload in payloads:
            if payload is not None:
                try:
                    self._journal(payload)
                except Exception as exc:
                    self._failed(exc)
        self._journaling = False
        for name, tee in self._tees.items():
            tee._disabled = True
            if getattr(sys, name) is tee:
                setattr(sys, name, _unwrap(self._originals[name]))
            # else: something wrapped our tee since; it stays in place, passing through
        for handler, old in self._handlers:
            if handler.stream in self._tees.values():
                try:
                    handler.setStream(_unwrap(old))
                except Exception:
                    pass
        self._handlers = []

    def _after_fork_in_child(self) -> None:
        super()._after_fork_in_child()
        for tee in self._tees.values():
            tee._splitter.clear()  # the parent journals its own partial lines
        if not self.restart_in_child and not self._stopped:
            self._journaling = False  # the child's output passes through unjournaled


def _stream_handlers() -> list[logging.StreamHandler]:
    loggers = [logging.getLogger()] + [lg for lg in logging.Logger.manager.loggerDict.values()
                                       if isinstance(lg, logging.Logger)]
    return [h for lg in loggers for h in lg.handlers
            if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)]


def make_capture(mode: str, experiment: Any, restart_in_child: bool = True) -> _Capture | None:
    """Start output capture in ``mode`` ("simple" or "fd"); the started capture, or None.

    A second descriptor-level capture in one process falls back to the Python level.
    """
    if mode == "fd":
        from comet_journal.recorder.fd_capture import FdCapture

        capture = FdCapture(experiment, restart_in_child)
        if capture.start():
            return capture
        logger.warning("comet-journal: descriptor-level output capture is not available "
                       "(another experiment of this process has it, or fds 1/2 are closed); "
                       "capturing Python-level output instead")
    capture = PythonCapture(experiment, restart_in_child)
    capture.start()
    return capture


def _after_fork_in_child() -> None:
    for capture in list(_CAPTURES):
        try:
            capture._after_fork_in_child()
        except Exception:
            pass


os.register_at_fork(after_in_child=_after_fork_in_child)
