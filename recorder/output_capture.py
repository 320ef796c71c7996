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
import sys
import threading
from typing import Any, Final

from comet_journal.recorder.capture import Capture, LineSplitter

logger = logging.getLogger(__name__)

_local = threading.local()  # .busy: the captures this thread is inside (no re-entry)


# --- Python-level capture ---------------------------------------------------------------------

class _Tee:
    """Stands in for ``sys.stdout`` / ``sys.stderr``: the original stream gets every write
    first, unchanged; complete lines are then journaled. Everything else is delegated."""

    def __init__(self, capture: "PythonCapture", original: Any, stderr: bool):
        self._capture = capture
        self._original = original
        self._stderr = stderr
        self._splitter = LineSplitter()
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


class PythonCapture(Capture):
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


def make_capture(mode: str, experiment: Any, restart_in_child: bool = True) -> Capture | None:
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
