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
import zlib
from dataclasses import dataclass
from typing import Final

from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.schema import CreateTable

from comet_journal.schema import tables
from comet_journal.schema.journal import readonly_uri

SEGMENT_FORMAT: Final = 2  # 2: a CRC-32 of the whole file (1, a digest of rows: still read)
FILE_CHECKSUM: Final = "file-crc32"  # format 2's header checksum: see _stamp_file
SEGMENT_APPLICATION_ID: Final = 0x434A5347  # "CJSG": a segment, never taken for a journal
SEGMENTS_SUFFIX: Final = ".segments"
HEARTBEAT_FILE_NAME: Final = "heartbeat"  # the writer's counter, bumped every seal tick
ENDED_FILE_NAME: Final = "ended"  # written once the run's end is sealed
# "ended-writers.<writer id>": the journal writer keys (``schema.writers``) that process ended,
# one per line. A writer marks itself ended in the journal's meta after its last call, and
# that meta reaches a segment only with a later call: with no later call (the last rank of a
# run), this file is what says so. One file per process: two ranks never race on one file.
ENDED_WRITERS_PREFIX: Final = "ended-writers."
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


def ended_writers(directory: str) -> frozenset[str]:
    """Journal writer keys recorded as ended in ``directory``'s ``ended-writers.*`` files."""
    try:
        names = [n for n in os.listdir(directory) if n.startswith(ENDED_WRITERS_PREFIX)]
    except OSError:
        return frozenset()
    keys: set[str] = set()
    for name in names:
        try:
            with open(os.path.join(directory, name)) as f:
                keys.update(line.strip() for line in f if line.strip())
        except OSError:  # replaced or not visible yet: read on the next look
            continue
    return frozenset(keys)


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
# Rows are copied by SQLite itself (INSERT ... SELECT from the attached journal or parts) and
# the checksum is a CRC-32 of the finished file's bytes (stamped into its header's
# user_version): the sealer thread shares the recorder's process, and per-row work there, in
# Python or in SQL, would slow the training loop.

_COLUMNS = {"meta": "key, value",
            "experiments": "id, key, workspace, project, name, created_ms, host, pid",
            "calls": "seq, endpoint, experiment_id, ts_ms, payload",
            "chunks": "id, sha256, data", "blobs": "sha256, size, n_chunks",
            "blob_parts": "blob_sha256, idx, chunk_id"}
_USER_VERSION = slice(60, 64)  # the SQLite header's user_version: where the CRC is kept


def seal(journal_path: str, directory: str, mark: Watermark,
         writer: str = "") -> tuple[Watermark, str | None]:
    """Seal what the journal (on this host, read-only) committed above ``mark`` into one new
    segment of ``writer`` in ``directory``. Returns the new watermark and the segment's
    path (None: nothing new)."""
    with _Staged(directory) as staged:
        conn = staged.conn
        conn.execute("ATTACH DATABASE ? AS j", (readonly_uri(journal_path),))
        conn.execute("BEGIN")  # one read snapshot of every journal table
        last = conn.execute("SELECT coalesce(max(seq), 0) FROM j.calls").fetchone()[0]
        if last <= mark.seq:
            conn.execute("ROLLBACK")
            return mark, None
        new_mark = Watermark(last, *conn.execute(
            "SELECT max(?, coalesce((SELECT max(id) FROM j.chunks), 0)), "
            "max(?, coalesce((SELECT max(rowid) FROM j.blobs), 0)), "
            "max(?, coalesce((SELECT max(rowid) FROM j.blob_parts), 0))",
            (mark.chunk_id, mark.blob_rowid, mark.part_rowid)).fetchone())
        _create_tables(conn)
        where = {"meta": ("", ()), "experiments": ("", ()),
                 "calls": ("WHERE seq > ? AND seq <= ?", (mark.seq, last)),
                 "chunks": ("WHERE id > ? AND id <= ?", (mark.chunk_id, new_mark.chunk_id)),
                 "blobs": ("WHERE rowid > ? AND rowid <= ?", (mark.blob_rowid,
                                                               new_mark.blob_rowid)),
                 "blob_parts": ("WHERE rowid > ? AND rowid <= ?", (mark.part_rowid,
                                                                   new_mark.part_rowid))}
        for name, cols in _COLUMNS.items():
            conn.execute(f"INSERT INTO main.{name} ({cols}) SELECT {cols} FROM j.{name} "
                         f"{where[name][0]} ORDER BY {_ORDER[name]}", where[name][1])
        path = os.path.join(directory, segment_name(mark.seq + 1, last, writer))
        staged.finish(path, mark.seq + 1, last, new_mark, 0)
    return new_mark, path


class _Staged:
    """A segment being written under a temporary name: :meth:`finish` writes the header,
    commits, fsyncs and renames it into place; leaving without it removes the file."""

    def __init__(self, directory: str):
        os.makedirs(directory, exist_ok=True)
        self.tmp = os.path.join(directory, f".{uuid.uuid4().hex}.seg.tmp")
        self.conn = sqlite3.connect(f"file:{_uri(self.tmp)}?mode=rwc", uri=True,
                                    isolation_level=None)
        self.conn.execute(f"PRAGMA application_id={SEGMENT_APPLICATION_ID}")
        self.conn.execute("PRAGMA journal_mode=OFF")  # a new private file: no rollback needed
        self.conn.execute("PRAGMA synchronous=OFF")  # fsynced once, whole, before the rename
        self.done = False

    def __enter__(self) -> "_Staged":
        return self

    def finish(self, path: str, first: int, last: int, mark: Watermark, level: int) -> None:
        conn = self.conn
        journal_id = conn.execute("SELECT value FROM main.meta WHERE key='journal_id'"
                                  ).fetchone()
        header = {"format": SEGMENT_FORMAT, "journal_id": journal_id[0] if journal_id else "",
                  "first_seq": first, "last_seq": last,
                  "rows": conn.execute("SELECT count(*) FROM main.calls").fetchone()[0],
                  "checksum": FILE_CHECKSUM, "chunk_id": mark.chunk_id,
                  "blob_rowid": mark.blob_rowid, "part_rowid": mark.part_rowid,
                  "level": level}
        conn.executemany("INSERT INTO main.segment VALUES (?, ?)",
                         [(k, str(v)) for k, v in header.items()])
        conn.execute("COMMIT")
        conn.close()
        _stamp_file(self.tmp)
        os.replace(self.tmp, path)
        _fsync_dir(os.path.dirname(path))
        self.done = True

    def __exit__(self, *exc) -> None:
        if not self.done:
            self.conn.close()
            try:
                os.remove(self.tmp)
            except FileNotFoundError:
                pass


def _create_tables(conn: sqlite3.Connection) -> None:
    for table in _SEGMENT_TABLES:
        conn.execute(str(CreateTable(table).compile(dialect=sqlite_dialect.dialect())))
    conn.execute(_HEADER_DDL)


def _file_crc(f) -> int:
    """CRC-32 of a segment file's bytes, its user_version (where the CRC is kept) as zeros."""
    head = bytearray(f.read(100))
    head[_USER_VERSION] = bytes(4)
    crc = zlib.crc32(head)
    while True:
        block = f.read(1 << 20)
        if not block:
            return crc
        crc = zlib.crc32(block, crc)


def _stamp_file(path: str) -> None:
    """Stamp the finished file's CRC into its header (SQLite leaves user_version to the
    application), then fsync it."""
    with open(path, "rb+") as f:
        crc = _file_crc(f)
        f.seek(_USER_VERSION.start)
        f.write(crc.to_bytes(4, "big"))
        f.flush()
        os.fsync(f.fileno())


def _check_file(path: str) -> None:
    """:class:`SegmentNotReady` unless the file's bytes match the CRC in its header."""
    try:
        with open(path, "rb") as f:
            stored = f.read(100)[_USER_VERSION]
            f.seek(0)
            crc = _file_crc(f)
    except OSError as exc:
        raise SegmentNotReady(f"{path}: cannot be read now ({exc})") from None
    if len(stored) != 4 or int.from_bytes(stored, "big") != crc:
        raise SegmentNotReady(f"{path}: its bytes do not match its checksum (torn or not "
                              "fully visible yet)")


def _uri(path: str) -> str:
    return os.path.abspath(path).replace("?", "%3f").replace("#", "%23")


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


def _digest_v1(rows: dict) -> str:
    """The checksum of format 1 segments (rows rendered by Python), still read."""
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
            header = verified_header(conn, "main", path)
            rows = {name: conn.execute(f"SELECT {cols} FROM {name} ORDER BY "
                                       f"{_ORDER[name]}").fetchall()
                    for name, cols in _COLUMNS.items()}
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise SegmentNotReady(f"{path}: cannot be read now ({exc})") from None
    return header, rows


_ORDER = {"meta": "key", "experiments": "id", "calls": "seq", "chunks": "id",
          "blobs": "rowid", "blob_parts": "rowid"}


def verified_header(conn: sqlite3.Connection, schema: str, path: str) -> dict[str, str]:
    """The header of the segment open as ``schema``, once its rows are checked against it
    (count, seq range, checksum, each chunk's sha256); :class:`SegmentNotReady` if not."""
    try:
        if conn.execute(f"PRAGMA {schema}.application_id").fetchone()[0] != \
                SEGMENT_APPLICATION_ID:
            raise SegmentNotReady(f"{path}: not a sealed segment (yet)")
        header = dict(conn.execute(f"SELECT key, value FROM {schema}.segment").fetchall())
        first, last, count, version = (int(header["first_seq"]), int(header["last_seq"]),
                                       int(header["rows"]), int(header["format"]))
        if version > SEGMENT_FORMAT:
            raise SegmentNotReady(f"{path}: segment format {version} is newer than this "
                                  f"comet-journal reads ({SEGMENT_FORMAT})")
        m = _NAME.match(os.path.basename(path))
        if m and (int(m[1]), int(m[2])) != (first, last):
            raise SegmentNotReady(f"{path}: header says seqs {first}-{last}")
        n, low, high = conn.execute(f"SELECT count(*), min(seq), max(seq) FROM "
                                    f"{schema}.calls").fetchone()
        if n and (low < first or high > last):
            raise SegmentNotReady(f"{path}: calls outside seqs {first}-{last}")
        if version >= 2:
            _check_file(path)
            digest = FILE_CHECKSUM
        else:
            digest = _digest_v1({name: conn.execute(
                f"SELECT {cols} FROM {schema}.{name} ORDER BY {_ORDER[name]}").fetchall()
                for name, cols in _COLUMNS.items()})
        if n != count or digest != header["checksum"]:
            raise SegmentNotReady(f"{path}: rows do not match the header's count or checksum")
        for sha, data in conn.execute(f"SELECT sha256, data FROM {schema}.chunks"):
            if hashlib.sha256(data).hexdigest() != sha:
                raise SegmentNotReady(f"{path}: a chunk does not match its sha256")
    except (KeyError, ValueError):
        raise SegmentNotReady(f"{path}: incomplete header") from None
    except sqlite3.Error as exc:
        raise SegmentNotReady(f"{path}: cannot be read now ({exc})") from None
    return header


def watermark_of(header: dict[str, str]) -> Watermark:
    """The sealing watermark a segment's header records (where the next one starts)."""
    return Watermark(int(header["last_seq"]), int(header.get("chunk_id", 0)),
                     int(header.get("blob_rowid", 0)), int(header.get("part_rowid", 0)))


# --- compaction -------------------------------------------------------------------------------

def merge(parts: list[SegmentInfo], level: int = 1, writer: str = "",
          trusted: bool = False) -> str:
    """Replace consecutive segments by one covering their range, of compaction ``level``
    (renamed in before the parts are removed: a reader sees the parts or the whole). Each
    part is verified first unless ``trusted`` (this process sealed them); overlapping parts
    (two writers of one journal) are fine. Returns the merged path."""
    if len(parts) < 2:
        raise ValueError("merge needs at least two consecutive segments")
    path = os.path.join(os.path.dirname(parts[0].path),
                        segment_name(parts[0].first, parts[-1].last, writer))
    with _Staged(os.path.dirname(path)) as staged:
        conn = staged.conn
        _create_tables(conn)
        conn.execute("BEGIN")
        for part in parts:
            try:
                conn.execute("ATTACH DATABASE ? AS p", (f"file:{_uri(part.path)}?mode=ro"
                                                         "&immutable=1",))
            except sqlite3.Error as exc:  # gone: merged by another writer of this journal
                raise SegmentNotReady(f"{part.path}: cannot be read now ({exc})") from None
            try:
                header = dict(conn.execute("SELECT key, value FROM p.segment").fetchall()) \
                    if trusted else verified_header(conn, "p", part.path)
                for name, cols in _COLUMNS.items():
                    if name in ("meta", "experiments"):  # whole tables: the last part's
                        conn.execute(f"DELETE FROM main.{name}")
                    conn.execute(f"INSERT OR IGNORE INTO main.{name} ({cols}) SELECT {cols} "
                                 f"FROM p.{name} ORDER BY {_ORDER[name]}")
            finally:
                conn.execute("COMMIT")  # DETACH is refused inside a transaction
                conn.execute("DETACH DATABASE p")
                conn.execute("BEGIN")
        staged.finish(path, parts[0].first, parts[-1].last, watermark_of(header), level)
    for part in parts:
        if part.path != path:
            try:
                os.remove(part.path)
            except FileNotFoundError:
                pass
    return path
