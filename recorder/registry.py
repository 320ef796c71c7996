"""One journal writer per journal file per process, shared by every experiment in it."""

from __future__ import annotations

import os
import threading

from comet_journal.recorder.writer import JournalWriter

_lock = threading.Lock()
_writers: dict[str, JournalWriter] = {}
_users: dict[str, int] = {}


def acquire(path: str, **options) -> JournalWriter:
    """The writer for ``path`` in this process, created on first use."""
    key = os.path.abspath(path)
    with _lock:
        writer = _writers.get(key)
        if writer is None or writer._closed or writer._pid != os.getpid():
            writer = JournalWriter(key, **options)
            _writers[key] = writer
            _users[key] = 0
        _users[key] += 1
        return writer


def release(writer: JournalWriter, timeout: float = 30.0) -> dict:
    """Drop one user of the writer; the last one flushes and closes it."""
    with _lock:
        key = writer.path
        count = _users.get(key, 1) - 1
        if count > 0 and _writers.get(key) is writer:
            _users[key] = count
            writer.flush(timeout)
            return writer.stats.as_dict()
        _users.pop(key, None)
        if _writers.get(key) is writer:
            del _writers[key]
    return writer.close(timeout)


def _after_fork_in_child() -> None:
    # The parent may have held the lock at fork time; the child gets a fresh one.
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)
