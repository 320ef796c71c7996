"""Writing one imported experiment into a journal, all or nothing.

The journal is built under a temporary name beside its final path and linked into place
only when complete, so a crash or a refused archive never leaves a half-imported journal
that an uploader could pick up (and so two importers racing on one archive make one
journal: the second link fails and its copy is discarded). It is written the way the
recorder writes: the schema's tables, the blob store for file bytes, payloads checked
against the endpoint catalogue as the uploader's integrity check will check them.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
import uuid
from typing import BinaryIO, Final

from comet_journal.schema import blobs as blob_store
from comet_journal.schema.catalogue import ENDPOINTS, validate
from comet_journal.schema.journal import Journal, sqlite_connect

ROWS_PER_COMMIT: Final = 5_000
INSERT_CALL_SQL: Final = ("INSERT INTO calls (endpoint, experiment_id, ts_ms, payload) "
                          "VALUES (?, ?, ?, ?)")
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


def existing_import(path: str, key: str) -> bool:
    """True when the journal at ``path`` already holds the experiment ``key``."""
    if not os.path.exists(path):
        return False
    Journal.open(path, readonly=True).close()  # refuses a file that is not a journal
    conn = sqlite_connect(path, readonly=True)
    try:
        row = conn.execute("SELECT 1 FROM experiments WHERE key=?", (key,)).fetchone()
    finally:
        conn.close()
    return row is not None


class ImportJournal:
    """A new journal being filled with one experiment; :meth:`commit_to` puts it in place."""

    def __init__(self, final_path: str):
        self.final_path = os.path.abspath(final_path)
        directory = os.path.dirname(self.final_path)
        os.makedirs(directory, exist_ok=True)
        self.tmp_path = os.path.join(
            directory, f".{os.path.basename(self.final_path)}.{uuid.uuid4().hex}.importing")
        Journal.open(self.tmp_path, create=True).close()  # created, stamped and migrated
        self._conn = sqlite_connect(self.tmp_path)
        # A temporary file: durability comes from one fsync at the end, before the link.
        self._conn.execute("PRAGMA synchronous=OFF")
        self._rows: list[tuple] = []
        self.calls = 0
        self.experiment_id: int | None = None

    def add_experiment(self, key: str, workspace: str | None, project: str | None,
                       created_ms: int) -> int:
        cur = self._conn.execute(
            "INSERT INTO experiments (key, workspace, project, name, created_ms, host, pid) "
            "VALUES (?,?,?,?,?,?,?)",
            (key, workspace, project, None, created_ms, socket.gethostname(), os.getpid()))
        self.experiment_id = cur.lastrowid
        return self.experiment_id

    def call(self, endpoint: str, payload: dict, ts_ms: int) -> None:
        """Journal one call; raises ``CatalogueError`` when the payload does not fit.

        ``experiment_create`` may lack its project, as the recorder's may: the uploader's
        ``--workspace``/``--project-name`` (or the server's default) supply it."""
        if endpoint != "experiment_create":
            validate(ENDPOINTS[endpoint], payload, journal_form=True)
        self._rows.append((endpoint, self.experiment_id, int(ts_ms), _encode(payload)))
        if len(self._rows) >= ROWS_PER_COMMIT:
            self._flush()

    def blob(self, stream: BinaryIO) -> dict:
        """Store a file's bytes (streamed, chunk by chunk); return its blob reference."""
        self._flush()  # the blob store commits on its own
        sha, size = blob_store.put_stream(self._conn, stream)
        return blob_store.blob_ref(sha, size)

    def set_meta(self, key: str, value: str) -> None:
        self._flush()
        self._conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                           (key, value))

    def _flush(self) -> None:
        if not self._rows:
            return
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            self._conn.executemany(INSERT_CALL_SQL, self._rows)
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self.calls += len(self._rows)
        self._rows = []

    def commit_to_final(self) -> bool:
        """Make the journal durable and link it to its final path.

        False when another import put a journal there first (this copy is discarded).
        """
        self._flush()
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._conn.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
        self._conn.close()
        with open(self.tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        try:
            os.link(self.tmp_path, self.final_path)
            linked = True
        except FileExistsError:
            linked = False
        self.discard()
        return linked

    def discard(self) -> None:
        try:
            self._conn.close()
        except sqlite3.Error:
            pass
        for suffix in ("", "-wal", "-shm"):
            try:
                os.unlink(self.tmp_path + suffix)
            except FileNotFoundError:
                pass


def now_ms() -> int:
    return int(time.time() * 1000)
