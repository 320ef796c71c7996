"""Where upload progress lives: the uploader's own state database, never the journal.

A journal may sit on read-only media, on a filesystem shared by several hosts, or be copied
to another machine; the uploader never writes into it or its directory. Progress of one
journal (targets, watermarks, per-call states, server keys, project ids, holder, last error)
lives in ``<state>/progress/<journal id>-<path digest>.db`` on the uploader's host (the
state directory of
:func:`~comet_journal.uploader.state_home.default_state_dir`: ``--state DIR``,
``$COMET_JOURNAL_STATE``, ``$XDG_STATE_HOME/comet-journal``), with the same tables the journal
format 2 had inside the journal (``schema.tables.UPLOAD_TABLES``), keyed by target identity
(server, workspace, project). The file's real path is part of the key, as progress was part
of the file before: two copies of one journal (a backup, a damaged copy) never share
progress or a lock; a copy uploaded elsewhere, or moved, finds what is already on the server
by read-back instead.

Every connection here has the state database as ``main`` and the journal ATTACHed read-only
as ``journal``: SQLite resolves an unqualified table name in ``main`` first, so ``calls`` is
the journal's and ``upload_state`` the state database's, and the queries joining both keep
working unchanged.

Progress a format-2 journal holds inside itself (written by an older comet-journal) is
imported once, read-only, when its target is first met (:func:`import_legacy`).
"""

from __future__ import annotations

import hashlib
import os
import sqlite3

from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.schema import CreateTable

from comet_journal.schema import tables
from comet_journal.schema.journal import busy_timeout, readonly_uri, sqlite_connect
from comet_journal.uploader.state_home import default_state_dir

PROGRESS_DIR = "progress"
LOCKS_DIR = "locks"
JOURNAL_SCHEMA = "journal"  # the name the journal is attached under


def journal_id(journal_path: str) -> str:
    """The journal's id (``meta.journal_id``, the same on every copy of the file; "journal"
    for a file without one)."""
    try:
        conn = sqlite_connect(journal_path, readonly=True)
        try:
            row = conn.execute("SELECT value FROM meta WHERE key='journal_id'").fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        row = None
    if row and row[0]:
        return str(row[0])
    return "journal"


def journal_key(journal_path: str) -> str:
    """What names a journal file's progress and lock: its id and a digest of its real path."""
    where = hashlib.sha256(os.path.realpath(journal_path).encode()).hexdigest()[:16]
    name = "".join(c if c.isalnum() or c in "-_" else "_" for c in journal_id(journal_path))
    return f"{name[:64]}-{where}"


def progress_db_path(journal_path: str, state_dir: str | None = None) -> str:
    """The state database holding ``journal_path``'s upload progress (may not exist yet)."""
    return os.path.join(default_state_dir(state_dir), PROGRESS_DIR,
                        f"{journal_key(journal_path)}.db")


def lock_file_path(journal_path: str, state_dir: str | None = None) -> str:
    """The upload lock file of ``journal_path`` in the state directory (may not exist)."""
    return os.path.join(default_state_dir(state_dir), LOCKS_DIR,
                        f"{journal_key(journal_path)}.lock")


def connect_progress(journal_path: str, state_dir: str | None = None,
                     timeout: float | None = None) -> sqlite3.Connection:
    """A read-write connection to the journal's state database (created if needed), the
    journal attached read-only. Autocommit: callers use explicit transactions."""
    path = progress_db_path(journal_path, state_dir)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    conn = sqlite3.connect(path, timeout=busy_timeout() if timeout is None else timeout,
                           isolation_level=None, check_same_thread=False, uri=True)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        _create_tables(conn)
        _attach_journal(conn, journal_path)
    except BaseException:
        conn.close()
        raise
    return conn


def open_progress_view(journal_path: str, state_dir: str | None = None,
                       timeout: float = 30.0) -> sqlite3.Connection:
    """A read-only view for reports (``status``, the viewer): the journal attached to its
    state database, opened read-only; when there is none yet, to an in-memory one holding
    the progress the journal itself may carry (format 2). Writes nothing anywhere."""
    path = progress_db_path(journal_path, state_dir)
    if os.path.exists(path):
        conn = sqlite3.connect(f"file:{_quote(path)}?mode=ro", uri=True, timeout=timeout,
                               isolation_level=None, check_same_thread=False)
    else:
        conn = sqlite3.connect(":memory:", uri=True, timeout=timeout, isolation_level=None,
                               check_same_thread=False)
        _create_tables(conn)
    try:
        _attach_journal(conn, journal_path)
        if not os.path.exists(path):
            import_legacy(conn, None)
    except BaseException:
        conn.close()
        raise
    return conn


def _quote(path: str) -> str:
    return os.path.abspath(path).replace("?", "%3f").replace("#", "%23")


# Only in the state database: experiments adopted from another copy's upload (sneakernet).
_ADOPTED_DDL = ("CREATE TABLE IF NOT EXISTS upload_adopted (target_id INTEGER NOT NULL, "
                "experiment_id INTEGER NOT NULL, adopted_ms BIGINT NOT NULL, "
                "PRIMARY KEY (target_id, experiment_id))")


def _create_tables(conn: sqlite3.Connection) -> None:
    for table in tables.UPLOAD_TABLES:
        ddl = str(CreateTable(table, if_not_exists=True).compile(
            dialect=sqlite_dialect.dialect()))
        conn.execute(ddl)
    conn.execute(_ADOPTED_DDL)


def _attach_journal(conn: sqlite3.Connection, journal_path: str) -> None:
    conn.execute(f"ATTACH DATABASE ? AS {JOURNAL_SCHEMA}", (readonly_uri(journal_path),))


def _journal_has_progress(conn: sqlite3.Connection) -> bool:
    return conn.execute(f"SELECT 1 FROM {JOURNAL_SCHEMA}.sqlite_master WHERE type='table' "
                        "AND name='upload_targets'").fetchone() is not None


def import_legacy(conn: sqlite3.Connection, identity: str | None) -> int:
    """Copy the progress a format-2 journal holds inside itself (for ``identity``, or every
    target) into ``main``, unless ``main`` already has that target. Reads the journal only.
    Returns how many targets were imported. The caller holds a write transaction (or ``main``
    is private to it)."""
    if not _journal_has_progress(conn):
        return 0
    j = JOURNAL_SCHEMA
    rows = conn.execute(f"SELECT id, identity FROM {j}.upload_targets" +
                        (" WHERE identity=?" if identity is not None else ""),
                        (identity,) if identity is not None else ()).fetchall()
    imported = 0
    for old_id, ident in rows:
        if conn.execute("SELECT 1 FROM main.upload_targets WHERE identity=?",
                        (ident,)).fetchone():
            continue
        cols = ("identity, server, workspace, project, created_ms, updated_ms, acked_through, "
                "sent_through, holder, last_error, last_error_ms, completed_ms")
        # holder: whoever held the old lock is gone (or uploads from another host).
        conn.execute(f"INSERT INTO main.upload_targets ({cols}) SELECT "
                     f"{cols.replace('holder', 'NULL')} FROM {j}.upload_targets WHERE id=?",
                     (old_id,))
        new_id = conn.execute("SELECT id FROM main.upload_targets WHERE identity=?",
                              (ident,)).fetchone()[0]
        for table in ("upload_experiments", "upload_state", "upload_projects"):
            names = [c.name for c in tables.metadata.tables[table].columns if c.name != "target_id"]
            listed = ", ".join(names)
            conn.execute(f"INSERT OR IGNORE INTO main.{table} (target_id, {listed}) "
                         f"SELECT ?, {listed} FROM {j}.{table} WHERE target_id=?",
                         (new_id, old_id))
        imported += 1
    return imported


def upload_holder(journal_path: str, identity: str, state_dir: str | None = None) -> str | None:
    """Who uploads ``journal_path`` to ``identity`` now, as recorded (None: unknown)."""
    try:
        conn = open_progress_view(journal_path, state_dir, timeout=5.0)
        try:
            row = conn.execute("SELECT holder FROM upload_targets WHERE identity=?",
                               (identity,)).fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return None
    return row[0] if row else None


class ProgressFiles:
    """A journal's files in the state directory, named before the journal moves, so that
    :meth:`follow` can rename them after it (``--after-upload move:DIR``)."""

    def __init__(self, journal_path: str, state_dir: str | None = None):
        self.state_dir = state_dir
        self.database = progress_db_path(journal_path, state_dir)

    def follow(self, new_journal_path: str) -> None:
        """Rename the progress database to the journal's new name (nothing when none)."""
        new = progress_db_path(new_journal_path, self.state_dir)
        if new == self.database:
            return
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(self.database + suffix):
                os.replace(self.database + suffix, new + suffix)
