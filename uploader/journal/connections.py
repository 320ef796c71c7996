"""Read connections to one journal, one per thread (SQLite connections are not shared).

Each is the state database with the journal attached read-only (:mod:`.progress_store`), so
a query may join the journal's calls with the target's progress."""

from __future__ import annotations

import sqlite3
import threading

from comet_journal.uploader.journal.progress_store import connect_progress


class JournalConnections:
    def __init__(self, path: str, state_dir: str | None = None):
        self.path = path
        self.state_dir = state_dir
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def connect(self) -> sqlite3.Connection:
        """This thread's read connection to the journal."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect_progress(self.path, self.state_dir)
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def close_all(self) -> None:
        with self._lock:
            for conn in self._all:
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
            self._all.clear()
