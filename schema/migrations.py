"""Named, recorded migrations of the journal format.

Each migration runs in one transaction together with its record in the ``migrations`` table
(the sqlite-utils pattern), so a journal is always at a well-defined format version: the
number of migrations applied. Append new migrations at the end; never edit or reorder old ones.
The list is static (every package sees the same format version): a package that needs tables
adds its migration here, never at import time elsewhere.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from sqlalchemy import Connection, select

from comet_journal.schema import tables


@dataclass(frozen=True)
class Migration:
    name: str
    apply: Callable[[Connection], None]


def _0001_journal(conn: Connection) -> None:
    tables.metadata.create_all(conn, tables=list(tables.JOURNAL_TABLES))


def _0002_upload_state(conn: Connection) -> None:
    tables.metadata.create_all(conn, tables=list(tables.UPLOAD_TABLES))


MIGRATIONS: list[Migration] = [
    Migration("0001_journal", _0001_journal),
    Migration("0002_upload_state", _0002_upload_state),
]


def format_version() -> int:
    """The newest journal format this code reads and writes."""
    return len(MIGRATIONS)


def applied(conn: Connection) -> list[str]:
    """Names of the migrations already applied to this journal (read-only)."""
    return list(conn.execute(select(tables.migrations.c.name)).scalars())


def pending(conn: Connection) -> list[Migration]:
    """Migrations not yet applied, in order (read-only)."""
    done = set(applied(conn)) if has_table(conn, "migrations") else set()
    return [m for m in MIGRATIONS if m.name not in done]


def has_table(conn: Connection, name: str) -> bool:
    row = conn.exec_driver_sql(
        "SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,)).first()
    return row is not None


def apply_pending(conn: Connection) -> list[str]:
    """Apply every pending migration, each in its own transaction with its record."""
    names = []
    todo = pending(conn)
    for migration in todo:
        if conn.in_transaction():  # end SQLAlchemy's autobegun read transaction first
            conn.rollback()
        # BEGIN IMMEDIATE (see schema.journal._engine) takes the write lock first, and the
        # re-check inside it makes two processes migrating one journal at once safe: the
        # second one finds the migration applied and skips it.
        conn.info["begin_immediate"] = True
        try:
            with conn.begin():
                if has_table(conn, "migrations") and migration.name in applied(conn):
                    continue
                _apply_one(conn, migration)
        finally:
            conn.info.pop("begin_immediate", None)
        names.append(migration.name)
    return names


def _apply_one(conn: Connection, migration: Migration) -> None:
    migration.apply(conn)
    conn.execute(tables.migrations.insert().values(
        name=migration.name, applied_ms=int(time.time() * 1000)))
    version = MIGRATIONS.index(migration) + 1
    conn.execute(tables.meta.delete().where(tables.meta.c.key == "format_version"))
    conn.execute(tables.meta.insert().values(key="format_version", value=str(version)))
    # user_version mirrors the format in the file header, readable without SQL.
    conn.exec_driver_sql(f"PRAGMA user_version = {int(version)}")
