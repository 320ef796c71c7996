"""The emulator's state: one SQLite file, durable across restarts.

The **applied log** is the source of truth: every applied write request is one row of
``applied`` (its endpoint, experiment, ``Idempotency-Key``, all its fields as JSON, and the
response it got), in apply order, duplicates kept. Parameters, output, tags and the rest are
folded from that log when someone reads them (:mod:`comet_journal.emulator.views`). Metric
points (and system samples, as their ``sys.*`` metrics) are also written, one row per point,
into ``metric_points``, indexed by experiment and name, so reading one series of a
10M-point server is an index range, not a fold of the whole log. Only what the server must
look up while it answers a request has tables of its own: experiments (key, project,
lifecycle), projects, asset descriptors (and their bytes), and a few counters.

All access goes through one connection guarded by one lock: the emulator serves a handful of
clients, and a single writer keeps SQLite free of busy errors.

Example::

    store = Store("emulator.db")
    with store.transaction() as conn:
        store.record_applied(conn, "log_other", key, None, '{"key":"a","value":1}', 200, "{}")
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import uuid
from contextlib import contextmanager
from typing import Any, Final, Iterable, Iterator

from comet_journal.emulator.points import (METRIC_POINT_ENDPOINTS, SERIES_PAGE, comet_text,
                                           points_of, series_answer)

SCHEMA_VERSION: Final = 2  # 2: metric points indexed (metric_points)
APPLICATION_ID: Final = 0x434A454D  # "CJEM": this SQLite file is an emulator's state

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS applied (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    endpoint TEXT NOT NULL,
    experiment_key TEXT,
    idempotency_key TEXT,
    fields TEXT NOT NULL,
    status INTEGER NOT NULL,
    response TEXT NOT NULL,
    at_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS applied_by_experiment ON applied (experiment_key, endpoint);
CREATE INDEX IF NOT EXISTS applied_by_endpoint ON applied (endpoint);
CREATE INDEX IF NOT EXISTS applied_by_idempotency_key ON applied (idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE TABLE IF NOT EXISTS projects (
    id TEXT PRIMARY KEY,
    workspace TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT,
    is_public INTEGER NOT NULL DEFAULT 0,
    notes TEXT,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX IF NOT EXISTS live_project_names ON projects (workspace, name)
    WHERE deleted = 0;
CREATE TABLE IF NOT EXISTS experiments (
    key TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    name TEXT,
    run_id TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    start_ms INTEGER,
    end_ms INTEGER,
    state TEXT NOT NULL,
    archived INTEGER NOT NULL DEFAULT 0,
    deleted INTEGER NOT NULL DEFAULT 0,
    offline INTEGER NOT NULL DEFAULT 0,
    file_path TEXT,
    last_heartbeat_ms INTEGER
);
CREATE TABLE IF NOT EXISTS assets (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    asset_id TEXT NOT NULL,
    experiment_key TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    file_name TEXT,
    extension TEXT,
    type TEXT,
    step INTEGER,
    epoch INTEGER,
    context TEXT,
    overwrite INTEGER,
    metadata TEXT,
    sha256 TEXT,
    size INTEGER,
    link TEXT,
    created_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS assets_by_experiment ON assets (experiment_key);
CREATE TABLE IF NOT EXISTS asset_bytes (
    sha256 TEXT PRIMARY KEY,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS metric_points (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    applied_id INTEGER NOT NULL,
    experiment_key TEXT,
    name TEXT NOT NULL,
    value,  -- no type: numbers keep every digit, text stays text (see _stored)
    text TEXT,  -- the value as Comet's read API shows it
    step INTEGER,
    epoch INTEGER,
    context,
    timestamp INTEGER
);
CREATE INDEX IF NOT EXISTS metric_points_by_name ON metric_points (experiment_key, name, id);
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""

# A batch's points, walked by SQLite (values as SQL values; true/false as text, as Comet
# shows them).
_BATCH_POINTS: Final = """
INSERT INTO metric_points (applied_id, experiment_key, name, value, text, step, epoch,
                           context, timestamp)
SELECT ?1, ?2, json_extract(j.value, '$.metricName'),
       CASE json_type(j.value, '$.metricValue') WHEN 'true' THEN 'true'
            WHEN 'false' THEN 'false' ELSE json_extract(j.value, '$.metricValue') END,
       CASE json_type(j.value, '$.metricValue') WHEN 'text' THEN j.value ->> '$.metricValue'
            WHEN 'null' THEN NULL ELSE j.value -> '$.metricValue' END,
       json_extract(j.value, '$.step'), json_extract(j.value, '$.epoch'),
       json_extract(j.value, '$.context'),
       coalesce(nullif(json_extract(j.value, '$.timestamp'), 0), ?3)
FROM json_each(?4, '$.values') AS j"""


def _stored(value: Any) -> Any:
    """A value as the index keeps it: numbers and text as SQL values; true/false and NaN as
    Comet shows them (SQLite has no NaN); anything else as JSON text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value != value:
        return "NaN"
    if value is None or isinstance(value, (int, float, str)):
        return value
    return json.dumps(value)


# Experiment lifecycle states (``archived`` and ``deleted`` are flags beside them).
RUNNING: Final = "running"
STOPPED: Final = "stopped"  # write/experiment/stop was called
ENDED: Final = "ended"  # the client said it is no longer alive

_EXPERIMENT_COLUMNS: Final = frozenset(
    ("name", "start_ms", "end_ms", "state", "archived", "deleted", "offline", "file_path",
     "last_heartbeat_ms", "project_id"))
_PROJECT_COLUMNS: Final = frozenset(("name", "description", "is_public", "notes", "deleted"))


def now_ms() -> int:
    return int(time.time() * 1000)


def new_id() -> str:
    """A Comet-style identifier: 32 lowercase hex digits."""
    return uuid.uuid4().hex


class StateFileError(RuntimeError):
    """The database file is not an emulator state (another SQLite file, or a newer one)."""


class Store:
    """The emulator's SQLite state. ``lock`` serialises every access."""

    def __init__(self, path: str | os.PathLike, store_asset_bytes: bool = True):
        self.path = os.fspath(path)
        self.store_asset_bytes = store_asset_bytes
        self.lock = threading.RLock()
        self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._conn.row_factory = sqlite3.Row
        self._open()

    def _open(self) -> None:
        conn = self._conn
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if tables and app_id != APPLICATION_ID:
            raise StateFileError(f"{self.path}: not an emulator state database "
                                 "(pass --db a new file or an emulator's own)")
        if version > SCHEMA_VERSION:
            raise StateFileError(f"{self.path}: written by a newer emulator "
                                 f"(format {version}, this one reads {SCHEMA_VERSION})")
        # WAL + synchronous=NORMAL: a commit survives a killed emulator, and costs no fsync
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=10000")
        conn.executescript(f"BEGIN; {_SCHEMA} PRAGMA application_id={APPLICATION_ID}; "
                           f"PRAGMA user_version={SCHEMA_VERSION};")
        try:
            if tables and version < 2:  # an older state: index the points it already holds
                for row in self.applied_rows(conn, None, METRIC_POINT_ENDPOINTS):
                    self._add_points(conn, row["id"], row["endpoint"], row["experiment_key"],
                                     row["fields"], row["at_ms"])
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def close(self) -> None:
        with self.lock:
            self._conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction under the lock; rolled back if the block raises."""
        with self.lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """Read access under the lock (a consistent view: nobody writes meanwhile)."""
        with self.lock:
            yield self._conn

    # --- the applied log ------------------------------------------------------------------

    def record_applied(self, conn: sqlite3.Connection, endpoint: str, experiment_key: str | None,
                       idempotency_key: str | None, fields: str, status: int,
                       response: str) -> int:
        at_ms = now_ms()
        row_id = conn.execute(
            "INSERT INTO applied (endpoint, experiment_key, idempotency_key, fields, status, "
            "response, at_ms) VALUES (?,?,?,?,?,?,?)",
            (endpoint, experiment_key, idempotency_key, fields, status, response, at_ms),
        ).lastrowid
        if endpoint in METRIC_POINT_ENDPOINTS:
            self._add_points(conn, row_id, endpoint, experiment_key, fields, at_ms)
        return row_id

    def _add_points(self, conn: sqlite3.Connection, row_id: int, endpoint: str,
                    experiment_key: str | None, fields: str, at_ms: int) -> None:
        if endpoint == "batch_metrics":
            try:  # SQLite walks the batch itself: no Python object per point
                conn.execute(_BATCH_POINTS, (row_id, experiment_key, at_ms, fields))
                return
            except sqlite3.OperationalError:
                pass  # not strict JSON (a NaN value): point by point below
        conn.executemany(
            "INSERT INTO metric_points (applied_id, experiment_key, name, value, text, step, "
            "epoch, context, timestamp) VALUES (?,?,?,?,?,?,?,?,?)",
            [(row_id, experiment_key, p["metricName"], _stored(p["metricValue"]),
              comet_text(p["metricValue"]), p["step"], p["epoch"], _stored(p["context"]),
              p["timestamp"])
             for p in points_of(endpoint, json.loads(fields), at_ms)])

    def metric_points(self, conn: sqlite3.Connection, experiment_key: str,
                      name: str | None = None) -> Iterator[dict]:
        """Points of one experiment (one name, or all) in apply order, one at a time:
        ``{metricName, metricValue, step, epoch, context, timestamp}``."""
        sql = ("SELECT name, value, step, epoch, context, timestamp FROM metric_points "
               "WHERE experiment_key=?")
        args: list = [experiment_key]
        if name is not None:
            sql += " AND name=?"
            args.append(name)
        for n, value, step, epoch, context, ts in conn.execute(sql + " ORDER BY id", args):
            yield {"metricName": n, "metricValue": value, "step": step, "epoch": epoch,
                   "context": context, "timestamp": ts}

    def series_json(self, conn: sqlite3.Connection, experiment_key: str, name: str,
                    page: int = 50_000) -> bytes:
        """Comet's get-metric answer for one series, whole (see :meth:`series_pieces`)."""
        return b"".join(series_answer(
            experiment_key, name,
            lambda after, offset: conn.execute(SERIES_PAGE, (experiment_key, name, after, page,
                                                             offset)).fetchone()))

    def series_pieces(self, experiment_key: str, name: str, page: int = 10_000
                      ) -> Iterator[bytes]:
        """Comet's get-metric answer for one series in pieces, one page of points each,
        written by SQLite (no Python object per point), each page read under the lock and
        none held between pages: memory is one page, whatever the series' length. A point
        applied while the answer is written is in it or not, never in part."""
        def read_page(after: int, offset: int) -> tuple:
            with self.reading() as conn:
                return conn.execute(SERIES_PAGE, (experiment_key, name, after, page,
                                                  offset)).fetchone()
        return series_answer(experiment_key, name, read_page)

    def metric_counts(self, conn: sqlite3.Connection, experiment_key: str) -> dict[str, int]:
        """Points per metric name of one experiment."""
        return dict(conn.execute("SELECT name, count(*) FROM metric_points WHERE "
                                 "experiment_key=? GROUP BY name", (experiment_key,)))

    def applied_response(self, conn: sqlite3.Connection, idempotency_key: str
                         ) -> tuple[int, str] | None:
        """The first stored response to a request carrying ``idempotency_key``, if any."""
        row = conn.execute("SELECT status, response FROM applied WHERE idempotency_key=? "
                           "ORDER BY id LIMIT 1", (idempotency_key,)).fetchone()
        return None if row is None else (row[0], row[1])

    def applied_rows(self, conn: sqlite3.Connection, experiment_key: str | None = None,
                     endpoints: Iterable[str] | None = None) -> list[sqlite3.Row]:
        """Applied rows in apply order, optionally of one experiment and some endpoints."""
        sql, args = "SELECT * FROM applied", []
        where = []
        if experiment_key is not None:
            where.append("experiment_key=?")
            args.append(experiment_key)
        if endpoints is not None:
            names = list(endpoints)
            where.append(f"endpoint IN ({','.join('?' * len(names))})")
            args.extend(names)
        if where:
            sql += " WHERE " + " AND ".join(where)
        return conn.execute(sql + " ORDER BY id", args).fetchall()

    # --- counters ---------------------------------------------------------------------------

    def bump(self, conn: sqlite3.Connection, name: str, by: int = 1) -> None:
        conn.execute("INSERT INTO counters (name, value) VALUES (?, ?) "
                     "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value", (name, by))

    def counter(self, conn: sqlite3.Connection, name: str) -> int:
        row = conn.execute("SELECT value FROM counters WHERE name=?", (name,)).fetchone()
        return 0 if row is None else row[0]

    # --- projects -------------------------------------------------------------------------

    def project(self, conn: sqlite3.Connection, project_id: str) -> sqlite3.Row | None:
        return conn.execute("SELECT * FROM projects WHERE id=? AND deleted=0",
                            (project_id,)).fetchone()

    def project_named(self, conn: sqlite3.Connection, workspace: str, name: str
                      ) -> sqlite3.Row | None:
        return conn.execute("SELECT * FROM projects WHERE workspace=? AND name=? AND deleted=0",
                            (workspace, name)).fetchone()

    def projects(self, conn: sqlite3.Connection, workspace: str | None = None,
                 include_deleted: bool = False) -> list[sqlite3.Row]:
        sql, args = "SELECT * FROM projects WHERE 1=1", []
        if workspace is not None:
            sql += " AND workspace=?"
            args.append(workspace)
        if not include_deleted:
            sql += " AND deleted=0"
        return conn.execute(sql + " ORDER BY created_ms, id", args).fetchall()

    def create_project(self, conn: sqlite3.Connection, workspace: str, name: str,
                       description: str | None = None, is_public: bool = False) -> str:
        project_id = new_id()
        ms = now_ms()
        conn.execute("INSERT INTO projects (id, workspace, name, description, is_public, "
                     "created_ms, updated_ms) VALUES (?,?,?,?,?,?,?)",
                     (project_id, workspace, name, description, int(is_public), ms, ms))
        return project_id

    def ensure_project(self, conn: sqlite3.Connection, workspace: str, name: str) -> str:
        """The live project ``workspace/name``, created if needed (as Comet does)."""
        row = self.project_named(conn, workspace, name)
        return row["id"] if row is not None else self.create_project(conn, workspace, name)

    def update_project(self, conn: sqlite3.Connection, project_id: str, **columns: Any) -> None:
        unknown = set(columns) - _PROJECT_COLUMNS
        if unknown:
            raise ValueError(f"not project columns: {sorted(unknown)}")
        sets = ", ".join(f"{name}=?" for name in columns)
        conn.execute(f"UPDATE projects SET {sets}, updated_ms=? WHERE id=?",
                     (*columns.values(), now_ms(), project_id))

    # --- experiments ------------------------------------------------------------------------

    def experiment(self, conn: sqlite3.Connection, key: str) -> sqlite3.Row | None:
        """The experiment ``key`` with its project's names (deleted ones too)."""
        return conn.execute(
            "SELECT e.*, p.workspace AS workspace, p.name AS project_name FROM experiments e "
            "JOIN projects p ON p.id = e.project_id WHERE e.key=?", (key,)).fetchone()

    def experiments(self, conn: sqlite3.Connection, project_id: str | None = None
                    ) -> list[sqlite3.Row]:
        sql = ("SELECT e.*, p.workspace AS workspace, p.name AS project_name FROM experiments e "
               "JOIN projects p ON p.id = e.project_id")
        args: list = []
        if project_id is not None:
            sql += " WHERE e.project_id=?"
            args.append(project_id)
        return conn.execute(sql + " ORDER BY e.created_ms, e.rowid", args).fetchall()

    def create_experiment(self, conn: sqlite3.Connection, key: str, project_id: str,
                          name: str | None, created_by: str, offline: bool = False) -> None:
        ms = now_ms()
        conn.execute("INSERT INTO experiments (key, project_id, name, run_id, created_by, "
                     "created_ms, start_ms, state, offline) VALUES (?,?,?,?,?,?,?,?,?)",
                     (key, project_id, name, new_id(), created_by, ms, ms, RUNNING,
                      int(offline)))

    def update_experiment(self, conn: sqlite3.Connection, key: str, **columns: Any) -> None:
        unknown = set(columns) - _EXPERIMENT_COLUMNS
        if unknown:
            raise ValueError(f"not experiment columns: {sorted(unknown)}")
        sets = ", ".join(f"{name}=?" for name in columns)
        conn.execute(f"UPDATE experiments SET {sets} WHERE key=?", (*columns.values(), key))

    # --- assets -----------------------------------------------------------------------------

    def add_asset(self, conn: sqlite3.Connection, *, asset_id: str, experiment_key: str,
                  endpoint: str, file_name: str | None, data: bytes | None, sha256: str | None,
                  size: int | None, extension: str | None = None, type: str | None = None,
                  step: int | None = None, epoch: int | None = None, context: str | None = None,
                  overwrite: bool | None = None, metadata: Any = None,
                  link: str | None = None) -> None:
        conn.execute(
            "INSERT INTO assets (asset_id, experiment_key, endpoint, file_name, extension, type, "
            "step, epoch, context, overwrite, metadata, sha256, size, link, created_ms) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (asset_id, experiment_key, endpoint, file_name, extension, type, step, epoch,
             context, None if overwrite is None else int(overwrite),
             None if metadata is None else json.dumps(metadata), sha256, size, link, now_ms()))
        if data is not None and self.store_asset_bytes:
            conn.execute("INSERT OR IGNORE INTO asset_bytes (sha256, data) VALUES (?, ?)",
                         (sha256, data))

    def assets(self, conn: sqlite3.Connection, experiment_key: str) -> list[sqlite3.Row]:
        return conn.execute("SELECT * FROM assets WHERE experiment_key=? ORDER BY seq",
                            (experiment_key,)).fetchall()

    def asset_data(self, conn: sqlite3.Connection, sha256: str) -> bytes | None:
        row = conn.execute("SELECT data FROM asset_bytes WHERE sha256=?", (sha256,)).fetchone()
        return None if row is None else bytes(row[0])
