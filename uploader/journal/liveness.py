"""Is a journal's run still live, ended, or stale (its writer died without ending it)?

* ended: every experiment in the journal has journaled its end (``end()`` records an
  ``experiment_start_end_time`` row with ``endTimeMillis``) and every writer registered in
  the journal's ``meta`` (one per Experiment: ranks sharing an experiment are several) has
  ended, so a journal that one rank still writes is never taken as ended;
* live: not ended, and the file grew recently, or a writer process recorded in the journal is
  still running on this host (the recorder's periodic keep-alive rows make a live run grow
  even when the training code logs nothing);
* stale: not ended, no growth for ``stale_after_s`` and no live writer. A stale journal is
  reported, never marked finished: its run may be resumed, or its end may be set by hand.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import time
from dataclasses import dataclass
from typing import Final

from comet_journal.schema.journal import sqlite_connect
from comet_journal.schema.writers import live_writers

DEFAULT_STALE_AFTER_S: Final = 600.0

LIVE: Final = "live"
ENDED: Final = "ended"
STALE: Final = "stale"


@dataclass(frozen=True)
class Liveness:
    state: str
    idle_s: float  # seconds since the journal last changed on disk
    experiments: int
    ended_experiments: int
    live_writer_pids: tuple[int, ...]


def last_change(path: str) -> float:
    """Newest mtime of the journal and its WAL (commits land in the WAL first)."""
    newest = 0.0
    for p in (path, path + "-wal"):
        try:
            st = os.stat(p)
        except OSError:
            continue
        if st.st_size:  # an empty WAL is made by any reader opening the journal: not growth
            newest = max(newest, st.st_mtime)
    return newest


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def journal_liveness(path: str, stale_after_s: float = DEFAULT_STALE_AFTER_S,
                     now: float | None = None,
                     ended_writers: frozenset[str] = frozenset()) -> Liveness:
    """Classify a journal (``ended_writers``: writer keys known to have ended by a record
    outside it). Raises ``sqlite3.Error`` when it cannot be read."""
    now = time.time() if now is None else now
    conn: sqlite3.Connection = sqlite_connect(path, readonly=True)
    try:
        experiments = conn.execute("SELECT id, host, pid FROM experiments").fetchall()
        ended = conn.execute(
            "SELECT count(DISTINCT experiment_id) FROM calls WHERE "
            "endpoint = 'experiment_start_end_time' AND payload LIKE '%\"endTimeMillis\"%'"
        ).fetchone()[0]
        writing = live_writers(conn, ended_writers)
    finally:
        conn.close()
    idle = max(0.0, now - last_change(path))
    host = socket.gethostname()
    live_pids = tuple(sorted({pid for _id, h, pid in experiments
                              if h == host and pid and _pid_alive(pid)}))
    if experiments and ended >= len(experiments) and not writing:
        state = ENDED
    elif idle < stale_after_s or live_pids:
        state = LIVE
    else:
        state = STALE
    return Liveness(state, idle, len(experiments), ended, live_pids)


class HeartbeatClock:
    """When each writer's heartbeat counter last changed, on this process's own clock (a
    writer on another host is never judged by comparing its clock with ours)."""

    def __init__(self):
        self._seen: dict[str, tuple[int | None, float]] = {}

    def idle_s(self, key: str, counter: int | None, now: float | None = None) -> float:
        """Seconds since ``counter`` was last seen to change (0 the first time)."""
        now = time.monotonic() if now is None else now
        last = self._seen.get(key)
        if last is None or last[0] != counter:
            self._seen[key] = (counter, now)
            return 0.0
        return now - last[1]


def sealed_liveness(copy_path: str | None, ended_sealed: bool, idle_s: float,
                    stale_after_s: float = DEFAULT_STALE_AFTER_S,
                    ended_writers: frozenset[str] = frozenset()) -> Liveness:
    """A run read through sealed segments: ended only when its writer sealed the end and the
    private copy (``copy_path``, None: none yet) says every experiment and writer ended;
    else live while its heartbeat moves (``idle_s``, on our clock), stale after that."""
    if copy_path is not None and os.path.exists(copy_path):
        copy = journal_liveness(copy_path, stale_after_s, ended_writers=ended_writers)
        experiments, ended = copy.experiments, copy.ended_experiments
        if ended_sealed and copy.state == ENDED:
            return Liveness(ENDED, idle_s, experiments, ended, ())
    else:
        experiments = ended = 0
    state = LIVE if idle_s < stale_after_s else STALE
    return Liveness(state, idle_s, experiments, ended, ())
