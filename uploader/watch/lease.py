"""Leases: one daemon uploads a run at a time, across hosts, without trusting ``fcntl``.

Several daemons (on several hosts, each with its own state) may watch one shared directory.
With ``--lease-dir DIR`` (a directory all of them can write, shared), a daemon uploads a run
only while it holds the run's lease: a small file ``<run>.lease`` created with ``O_EXCL``
(atomic on NFS v3+ and Lustre), holding the holder's id and a counter the holder bumps at
every turn. A lease is taken over when its content has not changed for ``ttl_s`` *on the
taker's own clock* (hosts' clocks are never compared): the taker renames the stale file
away (only one rename of it can succeed), then creates its own with ``O_EXCL``.

Without ``--lease-dir`` a daemon is alone: its upload lock in its own state directory is
enough, and nothing is written beside the journals.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
import uuid
from typing import Callable, Final

DEFAULT_TTL_S: Final = 60.0
DONE: Final = "done"  # a finished run's lease: never taken over


class Leases:
    """The leases this daemon holds in ``directory``."""

    def __init__(self, directory: str, ttl_s: float = DEFAULT_TTL_S,
                 clock: Callable[[], float] = time.monotonic):
        self.directory = directory
        self.ttl_s = ttl_s
        self.clock = clock
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._beats: dict[str, int] = {}  # runs whose lease we hold -> our counter
        self._seen: dict[str, tuple[str, float]] = {}  # others' leases: content, since when
        os.makedirs(directory, exist_ok=True)

    def path_of(self, run: str) -> str:
        name = os.path.basename(run)
        digest = hashlib.sha256(name.encode()).hexdigest()[:12]
        return os.path.join(self.directory, f"{name}-{digest}.lease")

    def acquire(self, run: str) -> bool:
        """Take or renew ``run``'s lease; False while another daemon holds it."""
        path = self.path_of(run)
        if run in self._beats:
            return self._renew(run, path)
        if self._create(run, path):
            return True
        content = _read(path)
        if content is None:
            return self._create(run, path)  # released meanwhile
        if content.startswith(DONE + " "):
            return False
        seen = self._seen.get(run)
        now = self.clock()
        if seen is None or seen[0] != content:
            self._seen[run] = (content, now)
            return False
        if now - seen[1] < self.ttl_s:
            return False
        stale = f"{path}.{uuid.uuid4().hex[:8]}.stale"
        try:
            os.rename(path, stale)  # only one taker renames the stale lease away
        except FileNotFoundError:
            return False
        _remove(stale)
        self._seen.pop(run, None)
        return self._create(run, path)

    def finish(self, run: str) -> None:
        """``run`` is uploaded and ended: its lease says so for good (other daemons skip it)."""
        if self._beats.pop(run, None) is None:
            return
        path = self.path_of(run)
        tmp = f"{path}.{uuid.uuid4().hex[:8]}.tmp"
        with open(tmp, "w") as f:
            f.write(f"{DONE} {self.holder}\n")
        os.replace(tmp, path)

    def finished(self, run: str) -> bool:
        """Another daemon uploaded ``run`` to the end."""
        content = _read(self.path_of(run))
        return content is not None and content.startswith(DONE + " ")

    def release(self, run: str) -> None:
        if self._beats.pop(run, None) is None:
            return
        path = self.path_of(run)
        content = _read(path)
        if content is not None and content.startswith(self.holder + " "):
            _remove(path)

    def release_all(self) -> None:
        for run in list(self._beats):
            self.release(run)

    def _create(self, run: str, path: str) -> bool:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            f.write(f"{self.holder} 0\n")
        self._beats[run] = 0
        return True

    def _renew(self, run: str, path: str) -> bool:
        content = _read(path)
        if content is None or not content.startswith(self.holder + " "):
            self._beats.pop(run, None)  # taken over while we were away: not ours any more
            return self.acquire(run)
        self._beats[run] += 1
        tmp = f"{path}.{uuid.uuid4().hex[:8]}.tmp"
        with open(tmp, "w") as f:
            f.write(f"{self.holder} {self._beats[run]}\n")
        os.replace(tmp, path)
        return True


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return None


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
