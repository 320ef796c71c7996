"""The upload's progress line on stderr, and why it waits when the server does not answer."""

from __future__ import annotations

import sys
import threading
import time

from comet_journal.uploader.cli.formatting import human_bytes, human_duration_s

REDRAW_S = 0.5  # while retrying no call completes: the line is redrawn on its own


class ProgressBar:
    """``[#####     ] 1234/5000 calls  1.2 MiB  850 calls/s  ETA 4s`` on stderr; while the
    server is failing, ``retrying: connection refused (attempt 4, next in 8 s, giving up at
    14:03)`` from the server gate's retry state."""

    def __init__(self, path: str, gate, stream=None):
        self.path = path
        self.gate = gate
        self.stream = stream or sys.stderr
        self.started = time.monotonic()
        self.lock = threading.Lock()
        self.drawn = False
        self.last = None
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="comet-upload-progress",
                                        daemon=True)
        self._ticker.start()

    def update(self, summary) -> None:
        with self.lock:
            self.last = summary
            self._draw()

    def close(self) -> None:
        self._stop.set()
        with self.lock:
            if self.drawn:
                self.stream.write("\n")
                self.stream.flush()

    def _tick(self) -> None:
        while not self._stop.wait(REDRAW_S):
            with self.lock:
                if self._stop.is_set():
                    return
                if self.gate.retrying is not None or self.last is not None:
                    self._draw()

    def _draw(self) -> None:
        line = f"\r{self.path}: {self._counts()}{retry_words(self.gate)}"
        self.stream.write(line + "\033[K")
        self.stream.flush()
        self.drawn = True

    def _counts(self) -> str:
        s = self.last
        if s is None:
            return "connecting"
        done, total = s.done, max(s.pending, 1)
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = done / elapsed
        width = 24
        filled = int(width * min(done, total) / total)
        eta = f"  ETA {human_duration_s((total - done) / rate)}" if 0 < rate and done < total \
            else ""
        return (f"[{'#' * filled}{' ' * (width - filled)}] {done}/{s.pending} calls  "
                f"{human_bytes(s.bytes_sent)}  {rate:,.0f} calls/s{eta}")


def retry_words(gate) -> str:
    """``"  retrying: connection refused (attempt 4, next in 8 s, giving up at 14:03)"``, or
    ``""`` while the server answers."""
    state = gate.retrying
    if state is None:
        return ""
    next_in = max(0.0, state.retry_at - gate.policy.clock())
    give_up = ("never giving up" if state.give_up_at is None else
               "giving up at " + time.strftime("%H:%M:%S", time.localtime(state.give_up_at)))
    return (f"  retrying: {state.cause} (attempt {state.attempt}, next in {next_in:.0f} s, "
            f"{give_up})")


def finish_bar(bar) -> None:
    if bar is not None:
        bar.close()
