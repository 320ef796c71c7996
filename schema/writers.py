"""Who writes an experiment: each Experiment (rank, process, later job) registers as a writer
of its experiment in the journal's ``meta`` table and marks itself ended at ``end()``.

A run is *ended* only when every writer of its experiments has ended, so the daemon never
finishes, moves or deletes a journal that a rank still writes (ranks sharing one experiment
end at different times; each journals its own end time, and the last one journaled, the last
writer's, is the one the server keeps). A writer killed before ``end()`` stays registered:
its run is reported stale, never finished. These rows are not calls: nothing is uploaded.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import uuid
from typing import Final, Iterable

from comet_journal.schema.journal import sqlite_connect

PREFIX: Final = "writer/"
LIVE: Final = "live"
ENDED: Final = "ended"


def writer_key(experiment_key: str) -> str:
    return f"{PREFIX}{experiment_key}/{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:8]}"


def register(conn: sqlite3.Connection, key: str) -> None:
    """Inside the caller's transaction (the one that registers the experiment)."""
    conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, LIVE))


def mark_ended(path: str, key: str) -> bool:
    """After the writer's last call is durable. False when the journal could not be written
    (the run then reads as not ended: stale, never wrongly finished)."""
    try:
        conn = sqlite_connect(path)
        try:
            conn.execute("UPDATE meta SET value=? WHERE key=?", (ENDED, key))
        finally:
            conn.close()
        return True
    except sqlite3.Error:
        return False


def live_writers(conn: sqlite3.Connection, ended_elsewhere: Iterable[str] = ()) -> int:
    """Writers registered and not ended (any experiment of the journal); ``ended_elsewhere``:
    keys known to have ended by another record (a sealed run's ``ended-writers.*`` files)."""
    keys = [k for (k,) in conn.execute("SELECT key FROM meta WHERE key LIKE ? AND value = ?",
                                       (PREFIX + "%", LIVE))]
    ended = set(ended_elsewhere)
    return sum(1 for k in keys if k not in ended)
