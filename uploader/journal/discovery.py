"""Finding journals under directories, and telling which file systems can deliver events.

A file is a journal when its header says so (``schema.journal.is_journal``), never by its name
alone: the pattern only narrows what is looked at. Shared file systems (NFS, Lustre, GPFS, ...)
do not deliver inotify events for writes made on other hosts, so the watch daemon polls there.
"""

from __future__ import annotations

import fnmatch
import os
from typing import Final, Iterator

from comet_journal.schema.errors import JournalError, NotAJournalError
from comet_journal.schema.journal import is_journal, read_header
from comet_journal.schema.segments import SEGMENTS_SUFFIX

DEFAULT_PATTERN: Final = "*.db"

# File system types whose writes from other hosts never reach inotify (from /proc/mounts).
NETWORK_FS_TYPES: Final = frozenset({
    "nfs", "nfs4", "lustre", "gpfs", "cifs", "smb3", "smbfs", "fuse.sshfs", "beegfs",
    "ceph", "fuse.ceph", "glusterfs", "fuse.glusterfs", "afs", "9p", "panfs", "wekafs",
    "fuse.juicefs", "virtiofs",
})


def iter_matching(roots: list[str], pattern: str = DEFAULT_PATTERN) -> Iterator[str]:
    """Every file under ``roots`` (recursively; a root may be a file) matching ``pattern``."""
    for root in roots:
        if os.path.isfile(root):
            yield os.path.abspath(root)
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames  # a run's segments hold no journals
                                 if not d.startswith(".") and not d.endswith(SEGMENTS_SUFFIX))
            for name in sorted(filenames):
                if matches(name, pattern):
                    yield os.path.abspath(os.path.join(dirpath, name))


def classify(path: str) -> JournalError | None:
    """None for a journal; the error for a *broken* journal (truncated, newer format,
    damaged, locked); raises NotAJournalError for a file that is no journal at all."""
    try:
        read_header(path)
    except NotAJournalError:
        raise
    except JournalError as exc:
        return exc
    return None


def iter_journals(roots: list[str], pattern: str = DEFAULT_PATTERN) -> Iterator[str]:
    """Every journal under ``roots`` (recursively) whose name matches ``pattern``."""
    for path in iter_matching(roots, pattern):
        if is_journal(path):
            yield path


def matches(name: str, pattern: str) -> bool:
    """Does a file name match the journal pattern? SQLite's side files never do."""
    if name.endswith(("-wal", "-shm", "-journal")) or name.startswith("."):
        return False
    return fnmatch.fnmatch(name, pattern)


def journal_of(path: str, pattern: str = DEFAULT_PATTERN) -> str | None:
    """The journal a changed path belongs to (``run.db-wal`` -> ``run.db``), or None."""
    for suffix in ("-wal", "-shm"):
        if path.endswith(suffix):
            path = path[: -len(suffix)]
            break
    name = os.path.basename(path)
    return os.path.abspath(path) if matches(name, pattern) else None


def mount_fs_type(path: str, mounts_file: str = "/proc/mounts") -> str | None:
    """The file system type of the mount holding ``path`` (Linux), or None if unknown."""
    try:
        with open(mounts_file, encoding="utf-8") as fh:
            mounts = [line.split() for line in fh]
    except OSError:
        return None
    path = os.path.realpath(path)
    best, best_type = "", None
    for fields in mounts:
        if len(fields) < 3:
            continue
        mount_point = fields[1].replace("\\040", " ")
        if (path == mount_point or path.startswith(mount_point.rstrip("/") + "/")) \
                and len(mount_point) >= len(best):
            best, best_type = mount_point, fields[2]
    return best_type


def needs_polling(path: str, mounts_file: str = "/proc/mounts") -> bool:
    """True where native file events cannot see every write (network file systems)."""
    fs_type = mount_fs_type(path, mounts_file)
    return fs_type is not None and (fs_type in NETWORK_FS_TYPES or fs_type.startswith("nfs"))
