"""Worker threads that run one callable on the jobs they are given, and hand back results.

The pool knows nothing of what the jobs are or who owns them: ``run(job)`` returns a result
or raises; either comes back from :meth:`WorkerPool.results` as ``(job, result)``, an
exception as the result. A worker whose callable raised stops (``on_error`` is then called
after the exception is queued, so the cause arrives before any consequence).
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any, Callable, Iterator


class WorkerPool:
    def __init__(self, run: Callable[[Any], Any], size: int, name: str = "worker",
                 on_error: Callable[[], None] | None = None):
        self.run = run
        self.on_error = on_error
        self._work: queue.Queue = queue.Queue()
        self._results: queue.Queue = queue.Queue()
        self._threads = [threading.Thread(target=self._loop, name=f"{name}-{i}", daemon=True)
                         for i in range(max(1, size))]
        for thread in self._threads:
            thread.start()

    def submit(self, job: Any) -> None:
        self._work.put((job,))

    def results(self, timeout: float) -> Iterator[tuple[Any, Any]]:
        """What finished: waits up to ``timeout`` for the first, then takes what is there."""
        try:
            item = self._results.get(timeout=timeout)
        except queue.Empty:
            return
        while True:
            yield item
            try:
                item = self._results.get_nowait()
            except queue.Empty:
                return

    def close(self, join_s: float) -> bool:
        """End the workers (after their current job); wait ``join_s`` at most. Returns
        whether a worker is still busy (in a job that did not end in time)."""
        for _ in self._threads:
            self._work.put(None)
        limit = time.monotonic() + join_s
        for thread in self._threads:
            thread.join(timeout=max(0.0, limit - time.monotonic()))
        return any(thread.is_alive() for thread in self._threads)

    def _loop(self) -> None:
        while True:
            item = self._work.get()
            if item is None:
                return
            job = item[0]
            try:
                result = self.run(job)
            except BaseException as exc:  # the owner decides; this worker stops
                self._results.put((job, exc))
                if self.on_error is not None:
                    self.on_error()
                return
            self._results.put((job, result))
