"""Stand-ins for the journal writer and its queue.

``NullWriter`` is the writer of a disabled experiment (``disabled=True``): every call is
checked as usual, then dropped; nothing is created on disk, no thread is started. DDP code
commonly passes ``disabled=rank != 0`` so that only one rank records the run.
``EndedQueue`` replaces the queue of an ended experiment.
"""

from __future__ import annotations

import hashlib

from comet_journal.recorder.writer import WriterStats

_CHUNK = 1 << 20


class DiscardQueue:
    """Looks like the writer's deque to the experiment's hot path; keeps nothing."""

    __slots__ = ()

    def append(self, item) -> None:
        pass

    def __len__(self) -> int:
        return 0


class EndedQueue:
    """Stands in for the writer queue once the experiment has ended: calls are refused with
    one warning (and counted) instead of an extra check on every hot-path call."""

    def __init__(self, experiment, logger):
        self._experiment = experiment
        self._logger = logger

    def append(self, item) -> None:
        exp = self._experiment
        exp._calls_after_end += 1
        if exp._calls_after_end == 1:
            self._logger.warning("comet-journal: experiment %s has ended; later calls are "
                                 "ignored", exp.key)

    def __len__(self) -> int:
        return 0


class NullWriter:
    """The parts of :class:`~comet_journal.recorder.writer.JournalWriter` an experiment uses."""

    path = None

    def __init__(self, max_queue: int):
        self.queue = DiscardQueue()
        self.max_queue = max_queue
        self.stats = WriterStats()

    def wait_for_room(self) -> None:
        pass

    def flush(self, timeout: float | None = None) -> bool:
        return True

    def put_blob_stream(self, stream) -> tuple[str, int]:
        """Read the stream (so that a bad one is refused as it would be) and keep nothing."""
        digest, size = hashlib.sha256(), 0
        while True:
            chunk = stream.read(_CHUNK)
            if not chunk:
                return digest.hexdigest(), size
            digest.update(chunk)
            size += len(chunk)
