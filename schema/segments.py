"""Sealed segments: immutable, self-verifying slices of a journal that another host may read.

A live SQLite journal must never be opened from another host (WAL's ``-shm`` index is memory
mapped; network filesystems do not keep mappings or POSIX locks coherent). So the host that
writes a journal also *seals* what it has committed into segments, in a directory beside it
(``run.db.segments/``), and readers elsewhere open only sealed segments:

* a segment is a small SQLite file (rollback mode, one file, stamped ``SEGMENT_APPLICATION_ID``)
  holding the journal's rows of a contiguous seq range: its ``calls``, the ``experiments``
  known so far, and the blob rows (``chunks``, ``blobs``, ``blob_parts``) added since the
  previous segment, plus the journal's ``meta``;
* it is written under a temporary name, fsynced, then renamed into place (atomic within a
  directory, on NFS and Lustre too), and named ``<first seq>-<last seq>.<writer>.seg``
  (zero-padded, so names sort by seq; ``writer`` names the sealing process, so two
  processes writing one journal, DDP ranks sharing a run, never replace each other's files;
  readers take either where their ranges overlap);
* its ``segment`` table is the header: format version, journal id, seq range, row count and a
  sha256 over every row; :func:`verify` recomputes it (and each chunk's own sha256), so a torn
  or partly visible file is reported as not ready, never read as data;
* readers open segments with ``mode=ro&immutable=1`` (nobody writes a sealed segment again)
  and follow the chain of contiguous ranges from seq 1, stopping at a gap (:func:`chain`);
* compaction (:func:`merge`) replaces consecutive segments by one covering their range: the
  merged file is renamed in first, then the parts removed, so a reader sees either. Levels
  (litestream-style): ``fanout`` segments of one level become one of the next, so a row is
  copied about log(seals) times and a run keeps about ``(fanout - 1) * levels`` files.

A segment with no calls may still carry a heartbeat: see ``recorder.sealing``.
"""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
import uuid
from dataclasses import dataclass
from typing import Final, Iterator

from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.schema import CreateTable

from comet_journal.schema import tables

SEGMENT_FORMAT: Final = 1
SEGMENT_APPLICATION_ID: Final = 0x434A5347  # "CJSG": a segment, never taken for a journal
SEGMENTS_SUFFIX: Final = ".segments"
HEARTBEAT_FILE_NAME: Final = "heartbeat"  # the writer's counter, bumped every seal tick
ENDED_FILE_NAME: Final = "ended"  # written once the run's end is sealed
_NAME = re.compile(r"^(\d{12})-(\d{12})(?:\.([0-9a-z]{1,32}))?\.seg$")
_SEGMENT_TABLES = (tables.meta, tables.experiments, tables.calls, tables.chunks, tables.blobs,
                   tables.blob_parts)
_HEADER_DDL = "CREATE TABLE segment (key TEXT PRIMARY KEY, value TEXT NOT NULL)"


class SegmentNotReady(Exception):
    """A segment that cannot be read as data now (torn, partly visible, or gone): retry."""


@dataclass(frozen=True)
class Watermark:
    """How far a journal has been sealed: its last seq and the last blob rows."""

    seq: int = 0
    chunk_id: int = 0
    blob_rowid: int = 0
    part_rowid: int = 0


@dataclass(frozen=True)
class SegmentInfo:
    path: str
    first: int
    last: int
    writer: str = ""  # the sealing process ("": a segment named before writer ids)


def segments_dir(journal_path: str) -> str:
    return os.fspath(journal_path) + SEGMENTS_SUFFIX


def segment_name(first: int, last: int, writer: str = "") -> str:
    return f"{first:012d}-{last:012d}" + (f".{writer}" if writer else "") + ".seg"


def list_segments(directory: str) -> list[SegmentInfo]:
    """Sealed segments in ``directory`` by name (temporary files are never listed)."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    out = []
    for name in names:
        m = _NAME.match(name)
        if m:
            out.append(SegmentInfo(os.path.join(directory, name), int(m[1]), int(m[2]),
                                   m[3] or ""))
    return sorted(out, key=lambda s: (s.first, -s.last, s.writer))


def chain(directory: str, after: int = 0) -> list[SegmentInfo]:
    """The segments to read, in order, for every seq above ``after``: at each step the one
    reaching furthest from the next seq (a merged segment beats its parts); stops at a gap."""
    segments = list_segments(directory)
    out: list[SegmentInfo] = []
    position = after
    while True:
        covering = [s for s in segments if s.first <= position + 1 <= s.last]
        if not covering:
            return out
        best = max(covering, key=lambda s: s.last)
        out.append(best)
        position = best.last


# --- writing ----------------------------------------------------------------------------------

def seal(journal: sqlite3.Connection, directory: str, mark: Watermark,
         writer: str = "") -> tuple[Watermark, str | None]:
    """Seal what ``journal`` (a connection to the live journal, on its own host) committed
    above ``mark`` into one new segment of ``writer`` in ``directory``. Returns the new
    watermark and the segment's path (None: nothing new)."""
    journal.execute("BEGIN")  # one read snapshot for every table
    try:
        last = journal.execute("SELECT coalesce(max(seq), 0) FROM calls").fetchone()[0]
        if last <= mark.seq:
            return mark, None
        rows = _rows_above(journal, mark, last)
    finally:
        journal.execute("ROLLBACK")
    new_mark = Watermark(last, max([mark.chunk_id] + [r[0] for r in rows["chunks"]]),
                         rows.pop("_blob_rowid"), rows.pop("_part_rowid"))
    path = os.path.join(directory, segment_name(mark.seq + 1, last, writer))
    write_segment(path, rows, mark.seq + 1, last, new_mark)
    return new_mark, path


def _rows_above(conn: sqlite3.Connection, mark: Watermark, last: int) -> dict:
    blob_rows = conn.execute("SELECT rowid, sha256, size, n_chunks FROM blobs WHERE rowid > ? "
                             "ORDER BY rowid", (mark.blob_rowid,)).fetchall()
    part_rows = conn.execute("SELECT rowid, blob_sha256, idx, chunk_id FROM blob_parts WHERE "
                             "rowid > ? ORDER BY rowid", (mark.part_rowid,)).fetchall()
    return {
        "meta": conn.execute("SELECT key, value FROM meta ORDER BY key").fetchall(),
        "experiments": conn.execute(
            "SELECT id, key, workspace, project, name, created_ms, host, pid FROM experiments "
            "ORDER BY id").fetchall(),
        "calls": conn.execute("SELECT seq, endpoint, experiment_id, ts_ms, payload FROM calls "
                              "WHERE seq > ? AND seq <= ? ORDER BY seq",
                              (mark.seq, last)).fetchall(),
        "chunks": conn.execute("SELECT id, sha256, data FROM chunks WHERE id > ? ORDER BY id",
                               (mark.chunk_id,)).fetchall(),
        "blobs": [r[1:] for r in blob_rows],
        "blob_parts": [r[1:] for r in part_rows],
        "_blob_rowid": max([mark.blob_rowid] + [r[0] for r in blob_rows]),
        "_part_rowid": max([mark.part_rowid] + [r[0] for r in part_rows]),
    }


_COLUMNS = {"meta": "key, value",
            "experiments": "id, key, workspace, project, name, created_ms, host, pid",
            "calls": "seq, endpoint, experiment_id, ts_ms, payload",
            "chunks": "id, sha256, data", "blobs": "sha256, size, n_chunks",
            "blob_parts": "blob_sha256, idx, chunk_id"}


def write_segment(path: str, rows: dict, first: int, last: int, mark: Watermark,
                  level: int = 0) -> None:
    """Write one segment: temporary name, fsync, rename into place, fsync the directory."""
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{uuid.uuid4().hex[:8]}.tmp")
    conn = sqlite3.connect(tmp, isolation_level=None)
    try:
        conn.execute(f"PRAGMA application_id={SEGMENT_APPLICATION_ID}")
        conn.execute("PRAGMA journal_mode=OFF")  # a new private file: no rollback needed
        conn.execute("BEGIN")
        for table in _SEGMENT_TABLES:
            conn.execute(str(CreateTable(table).compile(dialect=sqlite_dialect.dialect())))
        conn.execute(_HEADER_DDL)
        for name, cols in _COLUMNS.items():
            marks = ",".join("?" * len(cols.split(",")))
            conn.executemany(f"INSERT INTO {name} ({cols}) VALUES ({marks})", rows[name])
        header = {"format": SEGMENT_FORMAT, "journal_id": dict(rows["meta"]).get("journal_id", ""),
                  "first_seq": first, "last_seq": last, "rows": len(rows["calls"]),
                  "checksum": _digest(rows), "chunk_id": mark.chunk_id,
                  "blob_rowid": mark.blob_rowid, "part_rowid": mark.part_rowid,
                  "level": level}
        conn.executemany("INSERT INTO segment VALUES (?, ?)",
                         [(k, str(v)) for k, v in header.items()])
        conn.execute("COMMIT")
    finally:
        conn.close()
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(directory)


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _digest(rows: dict) -> str:
    h = hashlib.sha256()
    for name in _COLUMNS:
        for row in rows[name]:
            h.update(name.encode())
            for value in row:
                h.update(b"\x1f" + (value if isinstance(value, bytes) else repr(value).encode()))
            h.update(b"\x1e")
    return h.hexdigest()


# --- reading ----------------------------------------------------------------------------------

def open_segment(path: str) -> sqlite3.Connection:
    """A read-only connection to a sealed segment (immutable: it is never written again)."""
    uri = "file:" + os.path.abspath(path).replace("?", "%3f").replace("#", "%23")
    return sqlite3.connect(uri + "?mode=ro&immutable=1", uri=True, isolation_level=None)


def read_segment(path: str) -> tuple[dict[str, str], dict]:
    """The header and rows of a segment, verified; :class:`SegmentNotReady` when it is torn,
    partly visible, gone, or does not match its name."""
    try:
        conn = open_segment(path)
        try:
            if conn.execute("PRAGMA application_id").fetchone()[0] != SEGMENT_APPLICATION_ID:
                raise SegmentNotReady(f"{path}: not a sealed segment (yet)")
            header = dict(conn.execute("SELECT key, value FROM segment").fetchall())
            rows = {name: conn.execute(f"SELECT {cols} FROM {name} ORDER BY "
                                       f"{_ORDER[name]}").fetchall()
                    for name, cols in _COLUMNS.items()}
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise SegmentNotReady(f"{path}: cannot be read now ({exc})") from None
    _verify(path, header, rows)
    return header, rows


_ORDER = {"meta": "key", "experiments": "id", "calls": "seq", "chunks": "id",
          "blobs": "rowid", "blob_parts": "rowid"}


def _verify(path: str, header: dict, rows: dict) -> None:
    m = _NAME.match(os.path.basename(path))
    try:
        first, last, count = (int(header["first_seq"]), int(header["last_seq"]),
                              int(header["rows"]))
        checksum, version = header["checksum"], int(header["format"])
    except (KeyError, ValueError):
        raise SegmentNotReady(f"{path}: incomplete header") from None
    if version > SEGMENT_FORMAT:
        raise SegmentNotReady(f"{path}: segment format {version} is newer than this "
                              f"comet-journal reads ({SEGMENT_FORMAT})")
    if m and (int(m[1]), int(m[2])) != (first, last):
        raise SegmentNotReady(f"{path}: header says seqs {first}-{last}")
    if len(rows["calls"]) != count or _digest(rows) != checksum:
        raise SegmentNotReady(f"{path}: rows do not match the header's count or checksum")
    seqs = [r[0] for r in rows["calls"]]
    if seqs and (seqs[0] < first or seqs[-1] > last):
        raise SegmentNotReady(f"{path}: calls outside seqs {first}-{last}")
    for _id, sha, data in rows["chunks"]:
        if hashlib.sha256(data).hexdigest() != sha:
            raise SegmentNotReady(f"{path}: a chunk does not match its sha256")


def watermark_of(header: dict[str, str]) -> Watermark:
    """The sealing watermark a segment's header records (where the next one starts)."""
    return Watermark(int(header["last_seq"]), int(header.get("chunk_id", 0)),
                     int(header.get("blob_rowid", 0)), int(header.get("part_rowid", 0)))


def _header_last(parts: list[SegmentInfo]) -> dict[str, str]:
    return read_segment(parts[-1].path)[0]


def iter_rows(paths: list[str]) -> Iterator[tuple[str, dict[str, str], dict]]:
    for path in paths:
        header, rows = read_segment(path)
        yield path, header, rows


# --- compaction -------------------------------------------------------------------------------

def merge(parts: list[SegmentInfo], level: int = 1, writer: str = "") -> str:
    """Replace consecutive segments by one covering their range, of compaction ``level``
    (renamed in before the parts are removed: a reader sees the parts or the whole).
    Returns the merged path."""
    if len(parts) < 2:
        raise ValueError("merge needs at least two consecutive segments")
    merged: dict = {name: [] for name in _COLUMNS}
    for _path, _header, rows in iter_rows([p.path for p in parts]):
        for name in ("calls", "chunks", "blobs", "blob_parts"):
            merged[name].extend(rows[name])
        merged["meta"], merged["experiments"] = rows["meta"], rows["experiments"]
    path = os.path.join(os.path.dirname(parts[0].path),
                        segment_name(parts[0].first, parts[-1].last, writer))
    write_segment(path, merged, parts[0].first, parts[-1].last,
                  watermark_of(_header_last(parts)), level)
    for part in parts:
        if part.path != path:
            try:
                os.remove(part.path)
            except FileNotFoundError:
                pass
    return path
