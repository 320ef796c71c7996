"""What is pending for a target: per experiment and endpoint, with bytes and the oldest call.

Read-only: used by ``comet-upload status`` and ``--dry-run``. Never writes to the journal,
not even the upload-progress migration: a journal no uploader has touched simply has
everything pending.
"""

from __future__ import annotations

import errno
import os
import re
import socket
import sqlite3
from dataclasses import asdict, dataclass, field

from comet_journal.schema.catalogue import blob_fields
from comet_journal.schema.journal import read_header
from comet_journal.uploader.errors import redact
from comet_journal.uploader.journal.progress_store import open_progress_view

# The bytes a call uploads: the sizes of its blob references (blob fields: the catalogue's).
_BLOB_SIZE_SQL = " + ".join(f"coalesce(json_extract(c.payload, '$.{name}.size'), 0)"
                            for name in sorted(blob_fields()))


@dataclass
class ExperimentPending:
    key: str | None  # None: project-level calls
    workspace: str | None
    project: str | None
    name: str | None
    server_key: str | None
    link: str | None
    pending: int = 0
    bytes: int = 0
    oldest_pending_ms: int | None = None
    per_endpoint: dict[str, dict] = field(default_factory=dict)


@dataclass
class PendingReport:
    journal: str
    server: str
    identity: str
    total_calls: int
    pending: int
    pending_bytes: int
    uploaded: int
    rejected: int
    in_doubt: int  # may have been sent by a run that stopped before recording the outcome
    oldest_pending_ms: int | None
    last_error: str | None  # only a current one: not older than the last progress
    last_error_ms: int | None
    holder: str | None  # "pid N on HOST since T", or "stopped (pid N, not running)"
    other_targets: list[str]
    experiments: list[ExperimentPending] = field(default_factory=list)
    acknowledged: bool = False  # the server acknowledged at least one call
    uploader_running: bool = False

    def as_dict(self) -> dict:
        return asdict(self)


def pending_report(path: str, identity: str, server: str,
                   state_dir: str | None = None) -> PendingReport:
    """Raises :class:`comet_journal.schema.errors.JournalError` for a missing or unreadable journal.

    Progress comes from the uploader's state database (``state_dir``, default
    ``default_state_dir()``), the journal attached read-only."""
    path = os.fspath(path)
    read_header(path)
    conn = _read_only(path, state_dir)
    try:
        return _report(conn, path, identity, server)
    finally:
        conn.close()


def upload_targets(path: str, state_dir: str | None = None) -> list[tuple[str, str]]:
    """(identity, server) of every target some uploader recorded progress for, oldest first."""
    path = os.fspath(path)
    read_header(path)
    conn = _read_only(path, state_dir)
    try:
        if not _has_progress(conn):
            return []
        return [(r[0], r[1]) for r in conn.execute(
            "SELECT identity, server FROM upload_targets ORDER BY id")]
    finally:
        conn.close()


def holder_state(holder: str | None) -> tuple[str | None, bool]:
    """(what to show, running?) for the holder an uploader recorded ("pid N on HOST since
    T"): a process of this machine that is gone is "stopped (pid N, not running)"."""
    if not holder:
        return None, False
    found = re.match(r"pid (\d+) on (\S+)", holder)
    if not found or found.group(2) != socket.gethostname():
        return holder, True  # another machine: cannot look
    pid = int(found.group(1))
    try:
        os.kill(pid, 0)
    except OSError as exc:
        if exc.errno == errno.ESRCH:
            return f"stopped (pid {pid}, not running)", False
    return holder, True


def _superseded(error_ms: int | None, updated_ms: int | None) -> bool:
    """The target's progress moved after the error was recorded (the two stamps of one
    update may differ by a few ms)."""
    return error_ms is not None and updated_ms is not None and updated_ms - error_ms > 50


def _read_only(path: str, state_dir: str | None = None) -> sqlite3.Connection:
    """The journal attached read-only to its progress (the uploader's state database)."""
    return open_progress_view(path, state_dir)


# --- reads of the upload progress (kept small: the progress may move out of the journal) ---

def _has_progress(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND "
                        "name='upload_targets'").fetchone() is not None


def _target_row(conn: sqlite3.Connection, identity: str) -> tuple | None:
    """(id, acked_through, sent_through, last_error, last_error_ms, holder, updated_ms)."""
    return conn.execute("SELECT id, acked_through, sent_through, last_error, last_error_ms, "
                        "holder, updated_ms FROM upload_targets WHERE identity=?",
                        (identity,)).fetchone()


def _other_targets(conn: sqlite3.Connection, identity: str) -> list[str]:
    return [r[0] for r in conn.execute("SELECT identity FROM upload_targets WHERE "
                                       "identity != ?", (identity,))]


def _acknowledged(conn: sqlite3.Connection, tid: int, acked: int) -> bool:
    return acked > 0 or conn.execute(
        "SELECT 1 FROM upload_state WHERE target_id=? AND state='acked' LIMIT 1",
        (tid,)).fetchone() is not None


def _report(conn: sqlite3.Connection, path: str, identity: str, server: str) -> PendingReport:
    target = None
    others: list[str] = []
    if _has_progress(conn):
        target = _target_row(conn, identity)
        others = _other_targets(conn, identity)
    tid, acked, sent, last_error, last_error_ms, holder, updated_ms = \
        target or (-1, 0, 0, None, None, None, None)
    total = conn.execute("SELECT count(*) FROM calls").fetchone()[0]
    if target is not None:
        pending_sql = ("(c.seq > ? AND NOT EXISTS (SELECT 1 FROM upload_state s WHERE "
                       "s.target_id=? AND s.seq=c.seq)) OR EXISTS (SELECT 1 FROM upload_state "
                       "s WHERE s.target_id=? AND s.seq=c.seq AND s.state IN "
                       "('retry','unknown'))")
        args: tuple = (acked, tid, tid)
    else:
        pending_sql, args = "1", ()
    rows = conn.execute(
        f"SELECT c.experiment_id, c.endpoint, count(*), sum(length(c.payload) + "
        f"{_BLOB_SIZE_SQL}), min(c.ts_ms) FROM calls c WHERE {pending_sql} "
        "GROUP BY c.experiment_id, c.endpoint", args).fetchall()
    exps = {r[0]: r for r in conn.execute("SELECT id, key, workspace, project, name FROM "
                                          "experiments")}
    known: dict[int, tuple] = {}
    rejected = in_doubt = 0
    if target is not None:
        known = {r[0]: (r[1], r[2]) for r in conn.execute(
            "SELECT experiment_id, server_key, link FROM upload_experiments WHERE "
            "target_id=?", (tid,))}
        rejected = conn.execute("SELECT count(*) FROM upload_state WHERE target_id=? AND "
                                "state='rejected'", (tid,)).fetchone()[0]
        in_doubt = conn.execute(
            "SELECT count(*) FROM calls c WHERE c.seq > ? AND c.seq <= ? AND NOT EXISTS "
            "(SELECT 1 FROM upload_state s WHERE s.target_id=? AND s.seq=c.seq)",
            (acked, sent, tid)).fetchone()[0]
    holder, running = holder_state(holder)
    if running:
        in_doubt = 0  # in flight now: the running uploader settles them
    per_exp: dict = {}
    for exp_id, endpoint, count, size, oldest in rows:
        entry = per_exp.get(exp_id)
        if entry is None:
            row = exps.get(exp_id)
            server_key, link = known.get(exp_id, (None, None))
            entry = per_exp[exp_id] = ExperimentPending(
                key=row[1] if row else None, workspace=row[2] if row else None,
                project=row[3] if row else None, name=row[4] if row else None,
                server_key=server_key, link=link)
        entry.pending += count
        entry.bytes += int(size or 0)
        entry.oldest_pending_ms = oldest if entry.oldest_pending_ms is None else min(
            entry.oldest_pending_ms, oldest)
        entry.per_endpoint[endpoint] = {"calls": count, "bytes": int(size or 0)}
    experiments = sorted(per_exp.values(), key=lambda e: (e.key is None, e.key or ""))
    pending = sum(e.pending for e in experiments)
    if last_error and (pending == 0 and not rejected or _superseded(last_error_ms, updated_ms)):
        last_error = last_error_ms = None  # progress since: not the current state
    oldest = min((e.oldest_pending_ms for e in experiments if e.oldest_pending_ms), default=None)
    return PendingReport(
        journal=path, server=server, identity=identity, total_calls=total, pending=pending,
        pending_bytes=sum(e.bytes for e in experiments), uploaded=total - pending - rejected,
        rejected=rejected, in_doubt=in_doubt, oldest_pending_ms=oldest,
        last_error=redact(last_error) if last_error else None, last_error_ms=last_error_ms,
        holder=holder, other_targets=others, experiments=experiments,
        acknowledged=target is not None and _acknowledged(conn, tid, acked),
        uploader_running=running)
