"""Descriptor-level output capture (``auto_output_logging="fd"``).

File descriptors 1 and 2 are redirected (``os.dup`` / ``os.dup2``) into pipes read by a daemon
thread ``recorder.output-capture``, which forwards every byte to the original descriptor,
unchanged and in order, and journals the lines (see :mod:`comet_journal.recorder.output_capture` for what
a journaled line is). Output of C extensions and of child processes goes through the same
descriptors, so it is captured too; a forked child's output is forwarded and journaled by
the parent's thread.

``stop()`` flushes Python's and C's buffers, puts the original descriptors back, waits for
the pipes to drain (at most ``DRAIN_MAX_S``) and journals the partial lines. A child process
that still holds a pipe after that keeps reaching the terminal through the thread (no longer
journaled) until it lets go.

Limits: while capture is active ``isatty()`` is false on fds 1 and 2 (they are pipes), and
output written right before ``os._exit()`` may not reach the terminal (the forwarding thread
dies with the process). One descriptor-level capture per process: a second experiment asking
for one gets Python-level capture.
"""

from __future__ import annotations

import atexit
import codecs
import logging
import os
import selectors
import sys
import threading
import time
import weakref
from typing import Any, Final

from comet_journal.recorder.capture import Capture, LineSplitter

logger = logging.getLogger(__name__)

READ_CHUNK_BYTES: Final = 65_536
DRAIN_QUIET_S: Final = 0.05  # stop() waits for the pipes to stay empty this long ...
DRAIN_MAX_S: Final = 2.0  # ... but no longer than this
EXIT_DRAIN_S: Final = 1.0  # at exit, forwarding for children that outlived the capture

_CAPTURES: "weakref.WeakSet[FdCapture]" = weakref.WeakSet()

_fd_capture_active: "FdCapture | None" = None


class _FdStream:
    __slots__ = ("fd", "saved", "read_end", "stderr", "splitter", "decoder", "forward", "open")

    def __init__(self, fd: int, saved: int, read_end: int, stderr: bool):
        self.fd = fd
        self.saved = saved
        self.read_end = read_end
        self.stderr = stderr
        self.splitter = LineSplitter()
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.forward = True  # False once the original descriptor is broken
        self.open = True


class FdCapture(Capture):
    """Redirects file descriptors 1 and 2 through pipes (see the module docstring)."""

    def __init__(self, experiment: Any, restart_in_child: bool = True):
        super().__init__(experiment, restart_in_child)
        self._streams: list[_FdStream] = []
        self._thread: threading.Thread | None = None
        self._control: tuple[int, int] | None = None
        self._drained = threading.Event()
        self._inherited = False  # True in a forked child: the parent owns the pipes
        # Who closes which descriptor (a number closed twice may belong to someone else by
        # then): the thread closes the read ends and the control pipe's read end, stop() the
        # control pipe's write end, and the saved originals are closed, under _fd_lock, by
        # whichever of the two comes last.
        self._fd_lock = threading.Lock()
        self._restored = False
        self._thread_done = False
        self._saved_closed = False

    def start(self) -> bool:
        """Redirect the descriptors; False (nothing changed) when another fd capture is
        active in this process or the descriptors cannot be duplicated."""
        global _fd_capture_active
        if _fd_capture_active is not None and not _fd_capture_active._stopped:
            return False
        _flush_all()
        self._journaling = True
        try:
            for fd, stderr in ((1, False), (2, True)):
                try:
                    saved = os.dup(fd)
                except OSError:
                    continue  # fd not open: nothing to capture there
                read_end, write_end = os.pipe()
                os.dup2(write_end, fd)
                os.close(write_end)
                self._streams.append(_FdStream(fd, saved, read_end, stderr))
            if not self._streams:
                self._journaling = False
                return False
            self._control = os.pipe()
            self._thread = threading.Thread(target=self._pump, name="recorder.output-capture",
                                            daemon=True)
            self._thread.start()
        except BaseException:
            self._restore_fds()
            self._close_all_fds()
            raise
        _fd_capture_active = self
        _CAPTURES.add(self)
        return True

    def stop(self) -> None:
        global _fd_capture_active
        if self._stopped:
            return
        self._stopped = True
        if _fd_capture_active is self:
            _fd_capture_active = None
        if self._inherited or self._pid != os.getpid():
            self._journaling = False
            return
        _flush_all()
        with self._fd_lock:
            self._restore_fds()  # from here on, new output goes straight to the terminal
            self._restored = True
        if self._control is not None:
            _close(self._control[1], write=b"x")  # wakes the thread up: drain, then finish
        if self._thread is not None and self._thread.is_alive():
            self._drained.wait(DRAIN_MAX_S + 1.0)
        self._journaling = False
        with self._fd_lock:
            if self._thread_done:
                self._close_saved()

    def _restore_fds(self) -> None:
        for stream in self._streams:
            try:
                os.dup2(stream.saved, stream.fd)
            except OSError:
                pass

    def _close_saved(self) -> None:
        """Close the saved originals once (called under _fd_lock)."""
        if not self._saved_closed:
            self._saved_closed = True
            for stream in self._streams:
                _close(stream.saved)

    def _close_all_fds(self) -> None:
        """Only where nothing else can use them: a failed start, a forked child."""
        for fd in [s.read_end for s in self._streams] + list(self._control or ()):
            _close(fd)
        self._close_saved()

    # --- the thread -------------------------------------------------------------------

    def _pump(self) -> None:
        selector = selectors.DefaultSelector()
        control = self._control[0]
        try:
            by_fd = {}
            for stream in self._streams:
                selector.register(stream.read_end, selectors.EVENT_READ)
                by_fd[stream.read_end] = stream
            selector.register(control, selectors.EVENT_READ)
            draining_since = None
            while any(s.open for s in self._streams):
                timeout = (None if draining_since is None or self._drained.is_set()
                           else DRAIN_QUIET_S)
                events = selector.select(timeout)
                got_data = False
                for key, _ in events:
                    if key.fd == control:
                        selector.unregister(control)
                        draining_since = time.monotonic()
                        continue
                    stream = by_fd[key.fd]
                    try:
                        data = os.read(stream.read_end, READ_CHUNK_BYTES)
                    except InterruptedError:
                        continue
                    if not data:  # EOF: every writer (us, children) has let go
                        stream.open = False
                        selector.unregister(stream.read_end)
                        continue
                    got_data = True
                    self._forward(stream, data)
                    self._take(stream, data)
                if draining_since is not None and not self._drained.is_set() and (
                        not got_data or time.monotonic() - draining_since > DRAIN_MAX_S):
                    self._finish_journal()  # quiet, or long enough: stop() may return
            self._finish_journal()
        except Exception as exc:
            self._failed(exc)
            self._finish_journal()
            # Keep the terminal fed even so: plain forwarding until EOF.
            self._forward_until_eof()
        finally:
            selector.close()
            for stream in self._streams:
                _close(stream.read_end)
            _close(control)
            with self._fd_lock:
                self._thread_done = True
                if self._restored:
                    self._close_saved()

    def _forward(self, stream: _FdStream, data: bytes) -> None:
        if not stream.forward:
            return
        view = memoryview(data)
        while view:
            try:
                written = os.write(stream.saved, view)
            except BlockingIOError:  # the original descriptor is non-blocking
                time.sleep(0.01)
                continue
            except InterruptedError:
                continue
            except OSError as exc:  # EPIPE, EBADF: the terminal is gone; keep journaling
                stream.forward = False
                logger.warning("comet-journal: output capture cannot write to fd %d any more "
                               "(%s)", stream.fd, exc)
                return
            view = view[written:]

    def _take(self, stream: _FdStream, data: bytes) -> None:
        if not self._journaling:
            return
        try:
            with self._lock:
                text = stream.decoder.decode(data)
                payload = self._prepare(stream.splitter.feed(text), stream.stderr)
            if payload is not None:
                self._journal(payload)
        except Exception as exc:
            self._failed(exc)

    def _finish_journal(self) -> None:
        """Journal the partial lines and let stop() return; later output is only forwarded."""
        if self._drained.is_set():
            return
        try:
            payloads = []
            with self._lock:
                for stream in self._streams:
                    rest = stream.decoder.decode(b"", final=True) + stream.splitter.rest()
                    if rest:
                        payloads.append(self._prepare([rest], stream.stderr))
            for payload in payloads:
                if payload is not None:
                    self._journal(payload)
        except Exception as exc:
            self._failed(exc)
        finally:
            self._journaling = False
            self._drained.set()

    def _forward_until_eof(self) -> None:
        with selectors.DefaultSelector() as selector:
            for stream in self._streams:
                if stream.open:
                    selector.register(stream.read_end, selectors.EVENT_READ, stream)
            while selector.get_map():
                for key, _ in selector.select():
                    try:
                        data = os.read(key.fd, READ_CHUNK_BYTES)
                    except InterruptedError:
                        continue
                    except OSError:
                        data = b""
                    if data:
                        self._forward(key.data, data)
                    else:
                        key.data.open = False
                        selector.unregister(key.fd)

    def _after_fork_in_child(self) -> None:
        super()._after_fork_in_child()
        if self._streams and not self._stopped:
            # fds 1 and 2 of the child still lead into the parent's pipes: the parent's
            # thread forwards and journals the child's output. The child lets go of the
            # rest, and its stop() leaves fds 1 and 2 alone.
            self._inherited = True
            self._journaling = False
            self._fd_lock = threading.Lock()
            self._close_all_fds()


def _close(fd: int, write: bytes = b"") -> None:
    try:
        if write:
            os.write(fd, write)
    except OSError:
        pass
    try:
        os.close(fd)
    except OSError:
        pass


def _flush_all() -> None:
    """Push out what Python and C have buffered, so it lands on the right side of a switch."""
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except Exception:
            pass
    try:
        import ctypes

        ctypes.CDLL(None).fflush(None)
    except Exception:
        pass


def _forward_outliving_children_at_exit() -> None:
    """A child that outlived the capture may have written its last lines just before we exit:
    give the forwarding thread (a daemon, killed at exit) a moment to pass them on."""
    deadline = time.monotonic() + EXIT_DRAIN_S
    for capture in list(_CAPTURES):
        thread = capture._thread
        if thread is not None and thread.is_alive() and capture._pid == os.getpid():
            thread.join(max(0.0, deadline - time.monotonic()))


atexit.register(_forward_outliving_children_at_exit)
