"""The journal's content-addressed blob store (asset bytes, text samples, code, patches).

Writing streams a file one chunk at a time, storing each chunk once under its own sha256 and
committing every few chunks, so a file of several GB is journaled with bounded memory and
without one giant transaction. The blob row (its sha256, size, chunk list) is written last: a
process killed mid-file leaves only unreferenced chunks, never a half blob. Reading streams the
chunks back in order and checks every chunk's hash, so a tampered or missing chunk is an error,
never silently wrong bytes.

A payload field refers to a blob as ``{"$blob": "<sha256>", "size": N}`` (see
:func:`blob_ref`).
"""

from __future__ import annotations

import hashlib
import io
import sqlite3
from typing import BinaryIO, Final, Iterator

CHUNK_SIZE: Final = 1 << 20  # 1 MiB: large enough for throughput, small enough for memory
CHUNKS_PER_COMMIT: Final = 16  # let other writers (the recorder's thread) in every 16 MiB


class MissingBlobError(LookupError):
    """A blob or one of its chunks is absent or does not match its hash."""


def blob_ref(sha256: str, size: int) -> dict:
    return {"$blob": sha256, "size": size}


def is_blob_ref(value) -> bool:
    return isinstance(value, dict) and isinstance(value.get("$blob"), str)


def put_stream(conn: sqlite3.Connection, stream: BinaryIO,
               chunk_size: int = CHUNK_SIZE) -> tuple[str, int]:
    """Store everything ``stream`` yields; return ``(sha256, size)``.

    ``conn`` must be an autocommit connection (``isolation_level=None``) that is not inside
    a transaction; this function opens and commits its own.
    """
    whole = hashlib.sha256()
    chunk_ids: list[int] = []
    size = 0
    pending = 0
    conn.execute("BEGIN IMMEDIATE")
    try:
        while True:
            data = stream.read(chunk_size)
            if not data:
                break
            whole.update(data)
            size += len(data)
            chunk_ids.append(_put_chunk(conn, data))
            pending += 1
            if pending >= CHUNKS_PER_COMMIT:
                conn.execute("COMMIT")
                conn.execute("BEGIN IMMEDIATE")
                pending = 0
        sha = whole.hexdigest()
        if conn.execute("SELECT 1 FROM blobs WHERE sha256=?", (sha,)).fetchone() is None:
            conn.executemany("INSERT INTO blob_parts (blob_sha256, idx, chunk_id) VALUES (?,?,?)",
                             [(sha, i, cid) for i, cid in enumerate(chunk_ids)])
            conn.execute("INSERT INTO blobs (sha256, size, n_chunks) VALUES (?,?,?)",
                         (sha, size, len(chunk_ids)))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return sha, size


def put_bytes(conn: sqlite3.Connection, data: bytes) -> tuple[str, int]:
    return put_stream(conn, io.BytesIO(data))


def _put_chunk(conn: sqlite3.Connection, data: bytes) -> int:
    sha = hashlib.sha256(data).hexdigest()
    row = conn.execute("SELECT id FROM chunks WHERE sha256=?", (sha,)).fetchone()
    if row is not None:
        return row[0]
    return conn.execute("INSERT INTO chunks (sha256, data) VALUES (?, ?)", (sha, data)).lastrowid


def blob_size(conn: sqlite3.Connection, sha256: str) -> int:
    row = conn.execute("SELECT size FROM blobs WHERE sha256=?", (sha256,)).fetchone()
    if row is None:
        raise MissingBlobError(f"blob {sha256} is not in the journal")
    return row[0]


def check_blob(conn: sqlite3.Connection, sha256: str) -> None:
    """Check that a blob is whole without reading its bytes: its row, every part in order,
    every chunk row, and the chunk sizes adding up. Raises :class:`MissingBlobError`.

    (The bytes' hashes are checked by :func:`iter_chunks` as they are read.)
    """
    row = conn.execute("SELECT size, n_chunks FROM blobs WHERE sha256=?", (sha256,)).fetchone()
    if row is None:
        raise MissingBlobError(f"blob {sha256} is not in the journal")
    size, n_chunks = row
    parts = conn.execute(
        "SELECT p.idx, c.id, length(c.data) FROM blob_parts p LEFT JOIN chunks c "
        "ON c.id = p.chunk_id WHERE p.blob_sha256=? ORDER BY p.idx", (sha256,)).fetchall()
    total = 0
    for expected, (idx, chunk_id, length) in enumerate(parts):
        if idx != expected:
            raise MissingBlobError(f"blob {sha256}: part {expected} of {n_chunks} is missing "
                                   "from the journal")
        if chunk_id is None:
            raise MissingBlobError(f"blob {sha256}: chunk {idx} is missing from the journal")
        total += length
    if len(parts) != n_chunks:
        raise MissingBlobError(f"blob {sha256}: {n_chunks - len(parts)} of its {n_chunks} "
                               "chunks are missing from the journal")
    if total != size:
        raise MissingBlobError(f"blob {sha256}: its chunks hold {total} bytes, not {size}")


def iter_chunks(conn: sqlite3.Connection, sha256: str) -> Iterator[bytes]:
    """Yield a blob's bytes chunk by chunk, verifying each chunk and the whole."""
    size = blob_size(conn, sha256)
    parts = conn.execute(
        "SELECT p.idx, c.id, c.sha256 FROM blob_parts p LEFT JOIN chunks c ON c.id = p.chunk_id "
        "WHERE p.blob_sha256=? ORDER BY p.idx", (sha256,)).fetchall()
    whole = hashlib.sha256()
    total = 0
    for idx, chunk_id, chunk_sha in parts:
        if chunk_id is None:
            raise MissingBlobError(f"blob {sha256}: chunk {idx} is missing from the journal")
        data = conn.execute("SELECT data FROM chunks WHERE id=?", (chunk_id,)).fetchone()[0]
        if hashlib.sha256(data).hexdigest() != chunk_sha:
            raise MissingBlobError(f"blob {sha256}: chunk {idx} does not match its hash "
                                   "(the journal was altered)")
        whole.update(data)
        total += len(data)
        yield data
    if total != size or whole.hexdigest() != sha256:
        raise MissingBlobError(f"blob {sha256}: stored bytes do not match the blob's hash "
                               f"({total} of {size} bytes)")


def read_blob(conn: sqlite3.Connection, sha256: str) -> bytes:
    """The whole blob in memory: only for small blobs (code, text samples, graphs)."""
    return b"".join(iter_chunks(conn, sha256))


class BlobReader(io.RawIOBase):
    """A file-like view of a blob that reads one chunk at a time (for streaming uploads)."""

    def __init__(self, conn: sqlite3.Connection, sha256: str):
        super().__init__()
        self._chunks = iter_chunks(conn, sha256)
        self._buffer = b""
        self.size = blob_size(conn, sha256)

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            out = self._buffer + b"".join(self._chunks)
            self._buffer = b""
            return out
        while len(self._buffer) < n:
            nxt = next(self._chunks, None)
            if nxt is None:
                break
            self._buffer += nxt
        out, self._buffer = self._buffer[:n], self._buffer[n:]
        return out

    def readinto(self, b) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)

    def __len__(self) -> int:
        return self.size
