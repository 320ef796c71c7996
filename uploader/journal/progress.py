"""Upload progress, kept in the uploader's state database on its own host (the tables of the
journal's old migration ``0002_upload_state``; :mod:`.progress_store` says where and how the
journal is attached read-only). The journal and its directory are never written.

Design (litestream's "position apart from data"; ``calls`` rows are never updated):

* a **target** is a server root plus the command line's workspace/project overrides; each
  target has its own progress, so one journal can go to several servers;
* the **watermark** ``acked_through``: every call at or below it is settled. Above it, sparse
  rows of ``upload_state`` say which calls are already acked (out of order, by concurrent
  streams) or rejected. When the watermark moves, acked rows below it are deleted in the same
  transaction, so the table stays the size of the concurrency window, not of the journal (a
  1,000,000-call upload leaves a handful of rows, not a million);
* **rejected** rows stay (with the HTTP status and the server's message) until
  ``--retry-rejected`` turns them into ``retry`` rows, which the next replay sends again
  (marking them ``unknown`` while in flight);
* the **in-flight mark** ``sent_through`` is raised durably *before* any call above it is
  handed to the network (in steps, so it costs one commit per window, not per call). After a
  crash (SIGKILL included) exactly the calls in ``(acked_through, sent_through]`` without a row
  (plus ``unknown`` rows) have an unknown outcome: the replay reads them back before sending
  them again. Everything above ``sent_through`` was never sent and goes out normally;
* acks are written in batches (one transaction per window of acks); a call counts as done
  for ordering (its successor in an ordered stream may go) only once its ack is committed, so
  a crash never leaves two calls of one ordered stream both of unknown outcome.

All access is raw ``sqlite3`` with short transactions (workers read the state database while
the dispatcher commits).
"""

from __future__ import annotations

import os
import socket
import sqlite3
import time
from dataclasses import dataclass
from typing import Iterable

from comet_journal.schema.journal import Journal
from comet_journal.uploader.journal.progress_store import connect_progress, import_legacy

ACKED = "acked"
REJECTED = "rejected"
RETRY = "retry"
UNKNOWN = "unknown"


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class ExperimentTarget:
    """What a target knows of one journal experiment."""

    experiment_id: int
    server_key: str | None = None
    link: str | None = None
    method: str | None = None
    create_started_ms: int | None = None
    created_ms: int | None = None


class Progress:
    """Progress of one journal towards one target. Not thread-safe: the replay's dispatcher
    thread owns it.

    :param path: the journal, opened read-only (never migrated, never written).
    :param state_dir: the uploader's state directory (default: ``default_state_dir()``).
    """

    def __init__(self, path: str, identity: str, server: str, workspace: str | None = None,
                 project: str | None = None, state_dir: str | None = None):
        self.path = path
        Journal.open(path, readonly=True).close()  # a clear error for a foreign or newer file
        self.conn = connect_progress(path, state_dir)
        self.identity = identity
        self.target_id = self._target(identity, server, workspace, project)
        self.acked_through, self.sent_through = self.conn.execute(
            "SELECT acked_through, sent_through FROM upload_targets WHERE id=?",
            (self.target_id,)).fetchone()

    # --- the target ---------------------------------------------------------------------

    def _target(self, identity, server, workspace, project) -> int:
        conn = self.conn
        row = conn.execute("SELECT id FROM upload_targets WHERE identity=?",
                           (identity,)).fetchone()
        if row:
            return row[0]
        with _tx(conn):
            import_legacy(conn, identity)  # progress an older comet-journal kept inside
            conn.execute("INSERT OR IGNORE INTO upload_targets (identity, server, workspace, "
                         "project, created_ms, updated_ms) VALUES (?,?,?,?,?,?)",
                         (identity, server, workspace, project, now_ms(), now_ms()))
        return conn.execute("SELECT id FROM upload_targets WHERE identity=?",
                            (identity,)).fetchone()[0]

    def set_holder(self, holder: str | None) -> None:
        with _tx(self.conn):
            self.conn.execute("UPDATE upload_targets SET holder=? WHERE id=?",
                              (holder, self.target_id))

    def holder(self) -> str | None:
        row = self.conn.execute("SELECT holder FROM upload_targets WHERE id=?",
                                (self.target_id,)).fetchone()
        return row[0] if row else None

    def set_last_error(self, error: str | None) -> None:
        with _tx(self.conn):
            self.conn.execute("UPDATE upload_targets SET last_error=?, last_error_ms=?, "
                              "updated_ms=? WHERE id=?",
                              (error, now_ms() if error else None, now_ms(), self.target_id))

    # --- experiments --------------------------------------------------------------------

    def experiments(self) -> dict[int, ExperimentTarget]:
        rows = self.conn.execute(
            "SELECT experiment_id, server_key, link, method, create_started_ms, created_ms "
            "FROM upload_experiments WHERE target_id=?", (self.target_id,)).fetchall()
        return {r[0]: ExperimentTarget(*r) for r in rows}

    def claimed_keys(self) -> set[str]:
        """Server keys of this target's experiments (never adopt one of them twice)."""
        return {r[0] for r in self.conn.execute(
            "SELECT server_key FROM upload_experiments WHERE target_id=? AND server_key IS NOT "
            "NULL", (self.target_id,))}

    def create_started(self, exp: ExperimentTarget, method: str) -> None:
        """Durably note that a create request is about to be sent (before sending it)."""
        exp.create_started_ms = exp.create_started_ms or now_ms()
        exp.method = method
        with _tx(self.conn):
            self.conn.execute(
                "INSERT INTO upload_experiments (target_id, experiment_id, method, "
                "create_started_ms) VALUES (?,?,?,?) ON CONFLICT (target_id, experiment_id) "
                "DO UPDATE SET method=excluded.method, create_started_ms=excluded."
                "create_started_ms", (self.target_id, exp.experiment_id, method,
                                      exp.create_started_ms))

    def adopted(self) -> set[int]:
        """Experiments found on the server, made by an upload of another copy."""
        return {r[0] for r in self.conn.execute(
            "SELECT experiment_id FROM upload_adopted WHERE target_id=?", (self.target_id,))}

    def experiment_created(self, exp: ExperimentTarget, server_key: str, link: str | None,
                           method: str, adopted: bool = False) -> None:
        """Record the server's key (committed before anything else of it is sent); an
        ``adopted`` experiment stays marked as such (its calls are read back first)."""
        exp.server_key, exp.link, exp.method, exp.created_ms = server_key, link, method, now_ms()
        with _tx(self.conn):
            self.conn.execute(
                "INSERT INTO upload_experiments (target_id, experiment_id, server_key, link, "
                "method, create_started_ms, created_ms) VALUES (?,?,?,?,?,?,?) "
                "ON CONFLICT (target_id, experiment_id) DO UPDATE SET server_key=excluded."
                "server_key, link=excluded.link, method=excluded.method, "
                "created_ms=excluded.created_ms",
                (self.target_id, exp.experiment_id, server_key, link, method,
                 exp.create_started_ms, exp.created_ms))
            if adopted:
                self.conn.execute("INSERT OR IGNORE INTO upload_adopted VALUES (?,?,?)",
                                  (self.target_id, exp.experiment_id, now_ms()))

    # --- projects -----------------------------------------------------------------------

    def project_ids(self) -> dict[tuple[str, str], str]:
        """The server's ids of projects this target created or found: (workspace, project)."""
        return {(r[0], r[1]): r[2] for r in self.conn.execute(
            "SELECT workspace, project, project_id FROM upload_projects WHERE target_id=?",
            (self.target_id,))}

    def set_project_id(self, workspace: str, project: str, project_id: str) -> None:
        with _tx(self.conn):
            self.conn.execute("INSERT OR REPLACE INTO upload_projects VALUES (?,?,?,?)",
                              (self.target_id, workspace, project, project_id))

    # --- calls --------------------------------------------------------------------------

    def count_pending(self, end_seq: int) -> int:
        """Calls up to ``end_seq`` not settled on this target (retries included)."""
        t, acked = self.target_id, self.acked_through
        above = self.conn.execute("SELECT count(*) FROM calls WHERE seq > ? AND seq <= ?",
                                  (acked, end_seq)).fetchone()[0]
        settled_above = self.conn.execute(
            "SELECT count(*) FROM upload_state WHERE target_id=? AND seq > ? AND seq <= ?",
            (t, acked, end_seq)).fetchone()[0]
        retries = self.conn.execute("SELECT count(*) FROM upload_state WHERE target_id=? AND "
                                    "state IN ('retry','unknown') AND seq <= ?",
                                    (t, acked)).fetchone()[0]
        return above - settled_above + retries

    def raise_sent_through(self, seq: int) -> None:
        """Durably mark every call up to ``seq`` as possibly sent (before sending them)."""
        if seq <= self.sent_through:
            return
        with _tx(self.conn):
            self.conn.execute("UPDATE upload_targets SET sent_through=?, updated_ms=? WHERE id=?",
                              (seq, now_ms(), self.target_id))
        self.sent_through = seq

    def lower_sent_through(self, seq: int) -> None:
        """After a graceful stop: nothing above ``seq`` (nor the watermark) may have been
        sent, so bring the in-flight mark back down (the next run reads back only what may
        really have reached the server)."""
        seq = max(seq, self.acked_through)
        if seq >= self.sent_through:
            return
        with _tx(self.conn):
            self.conn.execute("UPDATE upload_targets SET sent_through=?, updated_ms=? WHERE "
                              "id=?", (seq, now_ms(), self.target_id))
        self.sent_through = seq

    def mark_unknown(self, seqs: Iterable[int]) -> None:
        """Retried rejected calls about to be sent again: unknown until acked."""
        rows = [(UNKNOWN, now_ms(), self.target_id, s) for s in seqs]
        if rows:
            with _tx(self.conn):
                self.conn.executemany("UPDATE upload_state SET state=?, updated_ms=? "
                                      "WHERE target_id=? AND seq=?", rows)

    def record(self, acks: list[tuple[int, int]], rejects: list[tuple[int, int, int, str]],
               acked_through: int | None = None, held: Iterable[tuple[int, str]] = ()) -> None:
        """One transaction: acks ``(seq, attempts)``, rejections ``(seq, attempts, status,
        error)``, calls held back ``(seq, why)`` (never sent: this server lacks their route;
        kept as ``retry``, so the next run tries them first and none is "in doubt"), and
        optionally a new watermark (with compaction of acked rows below it)."""
        conn = self.conn
        t = self.target_id
        ms = now_ms()
        held = list(held)
        with _tx(conn):
            if held:
                conn.executemany(
                    "INSERT OR REPLACE INTO upload_state (target_id, seq, state, attempts, "
                    "status, error, updated_ms) VALUES (?,?,'retry',0,NULL,?,?)",
                    [(t, s, why, ms) for s, why in held])
            if acks:
                conn.executemany(
                    "INSERT OR REPLACE INTO upload_state (target_id, seq, state, attempts) "
                    "VALUES (?,?,'acked',?)", [(t, s, a) for s, a in acks])
            if rejects:
                conn.executemany(
                    "INSERT OR REPLACE INTO upload_state (target_id, seq, state, attempts, "
                    "status, error, updated_ms) VALUES (?,?,'rejected',?,?,?,?)",
                    [(t, s, a, st, e, ms) for s, a, st, e in rejects])
            if acked_through is not None and acked_through > self.acked_through:
                conn.execute("UPDATE upload_targets SET acked_through=?, updated_ms=?, "
                             "sent_through=max(sent_through, ?) WHERE id=?",
                             (acked_through, ms, acked_through, t))
                conn.execute("DELETE FROM upload_state WHERE target_id=? AND seq<=? AND "
                             "state='acked'", (t, acked_through))
        if acked_through is not None and acked_through > self.acked_through:
            self.acked_through = acked_through
            self.sent_through = max(self.sent_through, acked_through)

    def retry_rejected(self) -> int:
        """Turn every rejected call of this target into one to send again; return how many."""
        with _tx(self.conn):
            cur = self.conn.execute("UPDATE upload_state SET state='retry', updated_ms=? "
                                    "WHERE target_id=? AND state='rejected'",
                                    (now_ms(), self.target_id))
        return cur.rowcount

    def rejected(self) -> list[tuple[int, str, int | None, str | None, int | None, str]]:
        """Rejected calls: ``(seq, endpoint, experiment_id, status, error, payload)``."""
        return self.conn.execute(
            "SELECT s.seq, c.endpoint, c.experiment_id, s.status, s.error, c.payload "
            "FROM upload_state s JOIN calls c ON c.seq = s.seq "
            "WHERE s.target_id=? AND s.state='rejected' ORDER BY s.seq",
            (self.target_id,)).fetchall()

    def mark_completed(self) -> None:
        """The run has ended and everything is on this target (``status DIR``: uploaded)."""
        with _tx(self.conn):
            self.conn.execute("UPDATE upload_targets SET completed_ms=?, updated_ms=? "
                              "WHERE id=?", (now_ms(), now_ms(), self.target_id))

    def close(self) -> None:
        try:
            self.conn.close()
        except sqlite3.Error:
            pass


class _tx:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` on an autocommit connection (rollback on error)."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def __enter__(self):
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.conn.execute("COMMIT")
        elif self.conn.in_transaction:
            self.conn.execute("ROLLBACK")
        return False


def holder_text() -> str:
    return f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%H:%M:%S')}"
