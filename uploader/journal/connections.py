"""Read connections to one journal, one per thread (SQLite connections are not shared)."""

from __future__ import annotations

import sqlite3
import threading

from comet_journal.schema.journal import sqlite_connect


class JournalConnections:
    def __init__(self, path: str):
        self.path = path
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def connect(self) -> sqlite3.Connection:
        """This thread's read connection to the journal."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite_connect(self.path)
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
