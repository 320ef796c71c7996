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

# --- upload progress (migration 0002_upload_state) -------------------------------------------
# Written by the uploader only; ``calls`` is never touched. See ``uploader/progress.py`` for the
# design (a watermark plus sparse per-call rows) and why each column exists.

# One row per destination ("target"): a server root plus the command line's workspace/project
# overrides. A journal can be uploaded to several targets; each keeps its own progress.
#   acked_through: every call with seq <= this is settled (acked, or has a "rejected" row).
#   sent_through:  no call with seq > this was ever handed to the network for this target, so
#                  after a crash only calls in (acked_through, sent_through] are of unknown
#                  outcome and need a read-back (or an idempotent resend) before sending again.
upload_targets = Table(
    "upload_targets", metadata,
    Column("id", Integer, primary_key=True),
    Column("identity", String, nullable=False, unique=True),
    Column("server", String, nullable=False),
    Column("workspace", String),
    Column("project", String),
    Column("created_ms", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
    Column("acked_through", Integer, nullable=False, server_default="0"),
    Column("sent_through", Integer, nullable=False, server_default="0"),
    Column("holder", String),  # who uploads now (pid, host): for the "locked" message only
    Column("last_error", Text),
    Column("last_error_ms", BigInteger),
    # Set by the watch daemon when the run has ended and every call is on this target.
    Column("completed_ms", BigInteger),
)

# The server's identity of each journal experiment on a target. ``server_key`` is recorded
# before anything else of that experiment is sent; ``create_started_ms`` is written before the
# create request, so a restart knows a create may have happened and looks for it first.
upload_experiments = Table(
    "upload_experiments", metadata,
    Column("target_id", Integer, primary_key=True),
    Column("experiment_id", Integer, primary_key=True),
    Column("server_key", String),
    Column("link", String),
    Column("method", String),  # "client-key" (idempotent by key) or "rest-create"
    Column("create_started_ms", BigInteger),
    Column("created_ms", BigInteger),
)

# Sparse per-call state. Rows exist for calls acked above the watermark (compacted away once
# the watermark passes them), for rejected calls (kept, with the server's answer, until
# ``--retry-rejected``), and for calls being retried after a rejection ("unknown" while sent).
upload_state = Table(
    "upload_state", metadata,
    Column("target_id", Integer, primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("state", String, nullable=False),  # acked | rejected | retry | unknown
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("status", Integer),  # the HTTP status of a rejection
    Column("error", Text),
    Column("updated_ms", BigInteger),
    sqlite_with_rowid=False,
)

# projectIds only the server knows (for ``{"$project": ...}`` references in the journal).
upload_projects = Table(
    "upload_projects", metadata,
    Column("target_id", Integer, primary_key=True),
    Column("workspace", String, primary_key=True),
    Column("project", String, primary_key=True),
    Column("project_id", String, nullable=False),
)

UPLOAD_TABLES = (upload_targets, upload_experiments, upload_state, upload_projects)
