"""One uploader per (journal, server): an ``fcntl`` lock on a sidecar file.

Why ``fcntl`` rather than a lease row in the journal: the kernel releases the lock when the
process dies, SIGKILL included, so a crashed uploader never blocks the next run until some
lease expires, and no clock or heartbeat is involved. One lock file per journal, in the
uploader's state directory (``<state>/locks/<journal id>.lock``; never beside the journal,
whose directory may be read-only or shared), carries a one-byte lock range per target (at an
offset derived from the target's identity), so uploads of the same journal to *different*
servers may run side by side while a second upload to the *same* server waits or is refused.

POSIX record locks belong to the process, so a second lock taken in the same process would
silently succeed; a process-wide registry refuses that case too.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import threading
import time
from typing import Callable

from comet_journal.uploader.errors import LockedError
from comet_journal.uploader.journal.progress_store import lock_file_path

_HELD: set[tuple[str, int]] = set()
_HELD_LOCK = threading.Lock()


def _offset(identity: str) -> int:
    return int.from_bytes(hashlib.sha256(identity.encode()).digest()[:4], "big")


class UploadLock:
    """Held while uploading ``journal_path`` to the target ``identity``.

    :param wait: block until the other uploader finishes (polling) instead of refusing.
    :param describe_holder: returns who holds it (for the refusal message).
    :param state_dir: the uploader's state directory (default: ``default_state_dir()``).
    """

    def __init__(self, journal_path: str, identity: str, *, wait: bool = False,
                 poll_s: float = 0.2, describe_holder: Callable[[], str | None] | None = None,
                 sleep: Callable[[float], None] = time.sleep, state_dir: str | None = None):
        self.path = lock_file_path(journal_path, state_dir)
        self.journal_path = journal_path
        self.identity = identity
        self.offset = _offset(identity)
        self.wait = wait
        self.poll_s = poll_s
        self.describe_holder = describe_holder
        self.sleep = sleep
        self._fd: int | None = None
        self._key = (os.path.realpath(self.path), self.offset)

    def acquire(self) -> "UploadLock":
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            while True:
                with _HELD_LOCK:
                    mine = self._key in _HELD
                    if not mine:
                        try:
                            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, self.offset)
                            _HELD.add(self._key)
                            self._fd = fd
                            return self
                        except OSError as exc:
                            if exc.errno not in (errno.EACCES, errno.EAGAIN):
                                raise
                if not self.wait:
                    holder = self.describe_holder() if self.describe_holder else None
                    raise LockedError(
                        f"another comet-upload ({holder or 'another process'}) is uploading "
                        f"{self.journal_path} to {self.identity.split('|')[0]}",
                        "wait for it to finish, or pass --wait to queue behind it")
                self.sleep(self.poll_s)
        except BaseException:
            if self._fd is None:
                os.close(fd)
            raise

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, self.offset)
        finally:
            os.close(self._fd)
            self._fd = None
            with _HELD_LOCK:
                _HELD.discard(self._key)

    def __enter__(self) -> "UploadLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
