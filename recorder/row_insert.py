"""Inserting the writer's encoded call rows: one transaction per batch, and as little lost as
possible when something fails.

* A row whose values fail (a lone surrogate, a value SQLite refuses) is isolated: the batch
  is written again row by row; a lone surrogate is stored escaped as visible text
  (``\\udce9``), any other failing row is dropped alone and reported by the caller.
* On a full disk, :func:`write_what_fits` writes the longest start of the batch that still
  fits, in halving chunks (order kept), instead of losing a batch bigger than the free space.
"""

from __future__ import annotations

import sqlite3
from typing import Callable, Final

from comet_journal.recorder.encoding import escape_surrogates
from comet_journal.schema import tables
from sqlalchemy.dialects import sqlite as sqlite_dialect

# Errors caused by one row's values rather than by the journal or the disk.
ROW_ERRORS: Final = (ValueError, TypeError, OverflowError, sqlite3.InterfaceError,
                     sqlite3.IntegrityError, sqlite3.DataError)

# The one INSERT, compiled from the table definition (no second copy of the schema).
INSERT_CALL: Final = str(
    tables.calls.insert().values(endpoint=None, experiment_id=None, ts_ms=None, payload=None)
    .compile(dialect=sqlite_dialect.dialect())).replace(":endpoint", "?") \
    .replace(":experiment_id", "?").replace(":ts_ms", "?").replace(":payload", "?")


def disk_full(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and (
        getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "is full" in str(exc))


def insert_rows(conn: sqlite3.Connection, rows: list[tuple],
                lose_row: Callable[[str, Exception], None],
                report: Callable[[str, str], None]) -> int:
    """Insert rows in one transaction; the number written. ``lose_row(endpoint, exc)`` is
    told of each row dropped, ``report(kind, message)`` of each row stored escaped."""
    try:
        return _commit(conn, rows, conn.executemany)
    except ROW_ERRORS:
        return _commit(conn, rows,
                       lambda sql, each: _insert_each(conn, sql, each, lose_row, report))


def write_what_fits(insert: Callable[[list], int], rows: list[tuple]) -> tuple[int, int]:
    """On a full disk: ``insert`` the longest start of ``rows`` that fits, in halving chunks.
    Returns the rows consumed and the rows written (a row error loses that row alone)."""
    consumed = written = 0
    size = len(rows) // 2
    while size >= 1 and consumed < len(rows):
        chunk = rows[consumed:consumed + size]
        try:
            written += insert(chunk)
        except Exception as exc:  # anything but a full disk: the caller's retry handles it
            if not disk_full(exc):
                break
            size //= 2
            continue
        consumed += len(chunk)
    return consumed, written


def _commit(conn: sqlite3.Connection, rows: list[tuple], insert: Callable) -> int:
    conn.execute("BEGIN IMMEDIATE")
    try:
        written = insert(INSERT_CALL, rows)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return len(rows) if written.__class__ is sqlite3.Cursor else written


def _insert_each(conn: sqlite3.Connection, sql: str, rows: list[tuple],
                 lose_row: Callable[[str, Exception], None],
                 report: Callable[[str, str], None]) -> int:
    written = 0
    for row in rows:
        try:
            try:
                conn.execute(sql, row)
            except UnicodeEncodeError:
                conn.execute(sql, row[:3] + (escape_surrogates(row[3]),))
                report("surrogate", f"one {row[0]} call has a lone surrogate in a string (a "
                       "file name decoded under LC_ALL=C?); stored with the surrogate "
                       "escaped as text, e.g. \\udce9")
            written += 1
        except ROW_ERRORS as exc:
            lose_row(row[0], exc)
    return written
