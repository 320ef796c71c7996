"""Opening journal files: recognise them, refuse what is not one, create and migrate.

A journal is an SQLite file stamped with ``PRAGMA application_id`` = ``APPLICATION_ID`` and
``PRAGMA user_version`` = its format version. :func:`read_header` recognises a journal from the
first 100 bytes alone (the watch daemon relies on that to tell journals from other ``*.db``
files), without opening it with SQLite and without writing anything.

Example::

    from comet_journal.schema.journal import Journal
    with Journal.open("run.db", create=True) as journal:   # creates and migrates
        with journal.engine.connect() as conn: ...
    Journal.open("run.db", readonly=True)                   # never writes, never migrates
"""

from __future__ import annotations

import os
import socket
import sqlite3
import struct
import tempfile
import time
import uuid
from dataclasses import dataclass
from typing import Final

from sqlalchemy import create_engine, event, select
from sqlalchemy.engine import Engine

from comet_journal.schema import migrations, tables
from comet_journal.schema.wal import pages_in_wal
from comet_journal.schema.errors import (CorruptJournalError, JournalError, JournalLockedError,
                           JournalNotFoundError, NewerFormatError, NotAJournalError,
                           TruncatedJournalError)

APPLICATION_ID: Final = 0x434A524E  # "CJRN" in the SQLite header: this file is a journal
SQLITE_MAGIC: Final = b"SQLite format 3\x00"
HEADER_SIZE: Final = 100
BUSY_TIMEOUT_S: Final = 30.0
UPGRADE_HINT: Final = "upgrade with: pip install -U comet-journal"


@dataclass(frozen=True)
class Header:
    """What the first 100 bytes of an SQLite file say."""

    page_size: int
    page_count: int
    page_count_valid: bool
    user_version: int
    application_id: int
    file_size: int


def read_header(path: str | os.PathLike) -> Header:
    """Read and check an SQLite header; raise a :class:`JournalError` naming the problem.

    Reads bytes only: never opens the file with SQLite, never writes.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(HEADER_SIZE)
            size = os.fstat(fh.fileno()).st_size
    except FileNotFoundError:
        raise JournalNotFoundError(path, "no such file") from None
    except IsADirectoryError:
        raise NotAJournalError(path, "is a directory, not a journal file") from None
    except OSError as exc:
        raise JournalError(path, f"cannot read: {exc.strerror or exc}") from None
    if size == 0:
        raise NotAJournalError(path, "is empty (0 bytes), not a journal")
    if not head.startswith(SQLITE_MAGIC):
        if len(head) < len(SQLITE_MAGIC) and SQLITE_MAGIC.startswith(head):
            raise TruncatedJournalError(path, f"is only {size} bytes: truncated",
                                        "copy the journal again")
        raise NotAJournalError(path, "is not an SQLite file, so not a journal")
    if len(head) < HEADER_SIZE:
        raise TruncatedJournalError(path, f"is only {size} bytes, shorter than its header: "
                                          "truncated", "copy the journal again")
    page_size = struct.unpack(">H", head[16:18])[0]
    page_size = 65536 if page_size == 1 else page_size
    change_counter, page_count = struct.unpack(">II", head[24:32])
    valid_for = struct.unpack(">I", head[92:96])[0]
    user_version, application_id = struct.unpack(">iI", head[60:64] + head[68:72])
    header = Header(page_size, page_count, change_counter == valid_for, user_version,
                    application_id, size)
    if header.application_id != APPLICATION_ID:
        raise NotAJournalError(path, "is an SQLite database but not a comet-journal journal "
                                     f"(application_id {application_id:#x})")
    if page_size < 512 or page_size & (page_size - 1):
        raise CorruptJournalError(path, f"has an invalid page size {page_size}")
    if (header.page_count_valid and size < page_count * page_size
            and not _missing_pages_in_wal(path, size, page_count, page_size)):
        raise TruncatedJournalError(
            path, f"is {size} bytes but its header says {page_count * page_size}: truncated",
            "copy the journal again")
    if size % page_size and not _missing_pages_in_wal(path, size, size // page_size + 1,
                                                       page_size):
        raise TruncatedJournalError(path, f"is {size} bytes, not a whole number of "
                                          f"{page_size}-byte pages: truncated",
                                    "copy the journal again")
    if user_version > migrations.format_version():
        raise NewerFormatError(path, f"has journal format {user_version}; this comet-journal "
                                     f"reads formats up to {migrations.format_version()}",
                               UPGRADE_HINT)
    return header


def _missing_pages_in_wal(path: str, size: int, page_count: int, page_size: int) -> bool:
    """True when every page past the main file's whole pages is in the WAL: a checkpoint
    that ran out of disk space, not a truncated copy."""
    pages, _db_pages = pages_in_wal(path, page_size)
    return all(n in pages for n in range(size // page_size + 1, page_count + 1))


def is_journal(path: str | os.PathLike) -> bool:
    """True when the file's header says it is a journal (cheap; for directory scans)."""
    try:
        read_header(path)
    except JournalError:
        return False
    return True


_busy_timeout_s = BUSY_TIMEOUT_S


def set_busy_timeout(seconds: float) -> None:
    """How long connections opened from now on (without an explicit ``timeout``) wait for a
    lock another process holds, before failing with "database is locked". Process-wide: the
    uploader's ``--busy-timeout``."""
    global _busy_timeout_s
    if not seconds >= 0:
        raise ValueError(f"busy timeout must be >= 0 seconds, got {seconds!r}")
    _busy_timeout_s = float(seconds)


def busy_timeout() -> float:
    """The current default of :func:`set_busy_timeout` (30 s unless changed)."""
    return _busy_timeout_s


def sqlite_connect(path: str, *, readonly: bool = False,
                   timeout: float | None = None) -> sqlite3.Connection:
    """A raw sqlite3 connection with the journal's settings, in autocommit mode.

    Transactions are explicit (``BEGIN`` ... ``COMMIT``), which is what SQLAlchemy needs for
    transactional DDL and what the recorder's writer needs for batched commits.
    ``timeout``: seconds to wait for another process's lock (default :func:`busy_timeout`).
    """
    if timeout is None:
        timeout = _busy_timeout_s
    if readonly:
        conn = sqlite3.connect(readonly_uri(path), uri=True, timeout=timeout,
                               isolation_level=None, check_same_thread=False)
    else:
        conn = sqlite3.connect(path, timeout=timeout, isolation_level=None,
                               check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a commit survives the process being killed; only an OS crash
        # or power loss can take the last transactions (FULL is offered as an option).
        conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def readonly_uri(path: str) -> str:
    """The SQLite URI that opens a journal read-only (immutable on read-only media), for
    ``sqlite3.connect(..., uri=True)`` or ``ATTACH`` on a connection opened with ``uri=True``."""
    uri = f"file:{_uri_path(path)}?mode=ro"
    if _nobody_writing(path):
        uri += "&immutable=1"
    return uri


def _nobody_writing(path: str) -> bool:
    """A WAL-mode journal without a -wal file (its writers have closed it), or any journal
    without one in a directory nobody here can write (read-only media).

    SQLite cannot open a WAL-mode file read-only unless it can create the -wal and -shm
    files or is told the file is immutable; and a read-only connection that creates them
    cannot remove them, so a reader would leave files in the journal's directory. Without a
    -wal file, immutable reads exactly what the file holds; each read-only connection decides
    again, so a writer appearing later is seen by the next connection. (A rollback-journal
    file is read with its locks: there a writer's exclusive lock must hold readers back.)
    """
    if os.path.exists(path + "-wal"):
        return False
    directory = os.path.dirname(os.path.abspath(path))
    return _is_wal_mode(path) or not os.access(directory, os.W_OK)


def _is_wal_mode(path: str) -> bool:
    """The SQLite header's read/write versions say WAL (bytes 18 and 19 are 2)."""
    try:
        with open(path, "rb") as f:
            head = f.read(20)
    except OSError:
        return False
    return len(head) == 20 and head[18] == 2 and head[19] == 2


def _uri_path(path: str) -> str:
    return os.path.abspath(path).replace("?", "%3f").replace("#", "%23")


def translate_error(path: str, exc: sqlite3.Error) -> JournalError:
    """The :class:`JournalError` (naming the file) for an SQLite error met reading it."""
    return _translate(path, exc)


def _translate(path: str, exc: sqlite3.Error) -> JournalError:
    text = str(exc)
    if "locked" in text or "busy" in text:
        return JournalLockedError(path, f"is locked by another process ({text})",
                                  "wait for it to finish, or stop it")
    if "not a database" in text or "malformed" in text or "corrupt" in text:
        return CorruptJournalError(path, f"is damaged: {text}")
    return JournalError(path, f"SQLite error: {text}")


class Journal:
    """An open journal file: an SQLAlchemy engine plus what the file says about itself."""

    def __init__(self, path: str, engine: Engine, readonly: bool):
        self.path = path
        self.engine = engine
        self.readonly = readonly

    @classmethod
    def open(cls, path: str | os.PathLike, *, create: bool = False,
             readonly: bool = False) -> "Journal":
        """Open (and with ``create``, create) a journal.

        Writable opens apply pending migrations. Read-only opens never write: a journal of an
        older format is read as it is. Raises a :class:`JournalError` naming the file.
        """
        path = os.fspath(path)
        if create and not os.path.exists(path):
            _create_file(path)
        read_header(path)  # refuse anything that is not a journal before SQLite touches it
        engine = _engine(path, readonly)
        journal = cls(path, engine, readonly)
        try:
            journal._check_and_migrate()
        except BaseException:
            engine.dispose()
            raise
        return journal

    def _check_and_migrate(self) -> None:
        try:
            with self.engine.connect() as conn:
                version = conn.exec_driver_sql("PRAGMA user_version").scalar()
                if version > migrations.format_version():
                    raise NewerFormatError(self.path, f"has journal format {version}; this "
                                           "comet-journal reads formats up to "
                                           f"{migrations.format_version()}", UPGRADE_HINT)
                if not self.readonly and migrations.pending(conn):
                    migrations.apply_pending(conn)
                if not migrations.has_table(conn, "calls"):
                    raise NotAJournalError(self.path, "is stamped as a journal but has no "
                                                      "calls table (never initialised)")
        except sqlite3.Error as exc:
            raise _translate(self.path, exc) from None
        except Exception as exc:  # SQLAlchemy wraps driver errors
            orig = getattr(exc, "orig", None)
            if isinstance(orig, sqlite3.Error):
                raise _translate(self.path, orig) from None
            raise

    def meta(self) -> dict[str, str]:
        with self.engine.connect() as conn:
            return dict(conn.execute(select(tables.meta.c.key, tables.meta.c.value)).all())

    def format_version(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.exec_driver_sql("PRAGMA user_version").scalar())

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> "Journal":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def create_for_recording(path: str) -> None:
    """Create (or open) and migrate the journal a recorder writes; when that fails on the
    file system, say which directory and why, instead of SQLite's "unable to open"."""
    try:
        Journal.open(path, create=True).close()
    except JournalError:
        raise  # already names the file and the problem
    except (OSError, sqlite3.Error) as exc:
        directory = os.path.dirname(path)
        raise JournalError(directory, f"cannot create or write the journal "
                           f"{os.path.basename(path)!r} in this directory: "
                           f"{_write_problem(directory) or exc}",
                           "choose a writable directory with journal=... or $COMET_JOURNAL"
                           ) from None


def _write_problem(directory: str) -> str | None:
    """Why files cannot be created in ``directory`` (the OS's words), or None."""
    if not os.path.isdir(directory):
        return "no such directory"
    try:
        with tempfile.TemporaryFile(dir=directory):
            return None
    except OSError as exc:
        return exc.strerror or str(exc)


def _engine(path: str, readonly: bool) -> Engine:
    engine = create_engine("sqlite://", creator=lambda: sqlite_connect(path, readonly=readonly))

    @event.listens_for(engine, "begin")
    def _begin(conn):  # explicit BEGIN: pysqlite would otherwise skip it for DDL
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.info.get("begin_immediate")
                             else "BEGIN")

    return engine


def _create_file(path: str) -> None:
    """Create a new, empty journal at ``path``, stamped before anything else is written.

    The stamp (application id, format 0) goes into the main file's header in rollback mode,
    so the header identifies the file as a journal even while later pages live in the WAL.
    The file is built under a temporary name and renamed, so a crash never leaves a half-made
    journal under the real name.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp")
    conn = sqlite3.connect(tmp, isolation_level=None)
    try:
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute("PRAGMA page_size = 4096")
        conn.execute("CREATE TABLE meta (key VARCHAR NOT NULL PRIMARY KEY, value TEXT NOT NULL)")
        now = str(int(time.time() * 1000))
        conn.executemany("INSERT INTO meta VALUES (?, ?)", [
            ("journal_id", uuid.uuid4().hex), ("created_ms", now),
            ("created_by", f"comet-journal on {socket.gethostname()} pid {os.getpid()}"),
            ("format_version", "0")])
    finally:
        conn.close()
    try:
        os.link(tmp, path)  # fails if another process created the journal meanwhile
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)
