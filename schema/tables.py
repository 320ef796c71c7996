"""The journal's tables, defined once (SQLAlchemy Core).

Rows of ``calls`` are immutable: one per accepted call, never updated. Upload progress lives
in its own tables (added by later migrations), so a journal can be replayed to several servers
and re-read at any time.
"""

from __future__ import annotations

from sqlalchemy import (BigInteger, Column, Integer, LargeBinary, MetaData, String, Table, Text,
                        UniqueConstraint)

metadata = MetaData()

# Small key/value facts about the file: format version, journal id, creator.
meta = Table(
    "meta", metadata,
    Column("key", String, primary_key=True),
    Column("value", Text, nullable=False),
)

# Named migrations, recorded as they are applied (one transaction each, with their record).
migrations = Table(
    "migrations", metadata,
    Column("name", String, primary_key=True),
    Column("applied_ms", BigInteger, nullable=False),
)

# One row per experiment recorded in this journal. ``id`` is the compact reference that
# ``calls`` use (a 32-character key on every row would double the size of a metric point).
experiments = Table(
    "experiments", metadata,
    Column("id", Integer, primary_key=True),
    Column("key", String(50), nullable=False, unique=True),
    Column("workspace", String),
    Column("project", String),
    Column("name", String),
    Column("created_ms", BigInteger, nullable=False),
    Column("host", String),
    Column("pid", Integer),
)

# The journal proper. ``seq`` is AUTOINCREMENT so it is strictly increasing and never reused,
# even across writers and deletions. ``payload`` is compact JSON of the wire fields (minus
# ``experimentKey``). ``experiment_id`` is NULL for project and viz-instance calls.
calls = Table(
    "calls", metadata,
    Column("seq", Integer, primary_key=True),
    Column("endpoint", String, nullable=False),
    Column("experiment_id", Integer),
    Column("ts_ms", BigInteger, nullable=False),
    Column("payload", Text, nullable=False),
    sqlite_autoincrement=True,
)

# Content-addressed blob store. A blob is an ordered list of chunks; each chunk is stored once
# by its own sha256, so the same file logged twice (or two files sharing chunks) costs nothing
# extra, and a multi-GB file is written and read one chunk at a time.
chunks = Table(
    "chunks", metadata,
    Column("id", Integer, primary_key=True),
    Column("sha256", String(64), nullable=False, unique=True),
    Column("data", LargeBinary, nullable=False),
)

blobs = Table(
    "blobs", metadata,
    Column("sha256", String(64), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("n_chunks", Integer, nullable=False),
)

blob_parts = Table(
    "blob_parts", metadata,
    Column("blob_sha256", String(64), nullable=False),
    Column("idx", Integer, nullable=False),
    Column("chunk_id", Integer, nullable=False),
    UniqueConstraint("blob_sha256", "idx"),
)

JOURNAL_TABLES = (meta, migrations, experiments, calls, chunks, blobs, blob_parts)
