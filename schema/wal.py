"""Reading an SQLite write-ahead log's frame headers (bytes only, never through SQLite).

A journal in WAL mode keeps its newest pages in ``<journal>-wal`` until a checkpoint copies
them into the main file. When the disk fills during a checkpoint, the main file's header
may already count pages that only the WAL holds: the file looks truncated but is whole.
:func:`pages_in_wal` lists the pages the WAL holds, so the header check can tell the two
apart (SQLite itself verifies the frames' checksums when it opens the journal).

Layout (sqlite.org/fileformat2.html#walformat): a 32-byte header (magic, version, page
size, checkpoint sequence, two salts, checksum), then frames of a 24-byte header (page
number, database size in pages for a commit frame, the two salts, checksum) and one page.
"""

from __future__ import annotations

import os
import struct
from typing import Final

WAL_MAGICS: Final = (0x377F0682, 0x377F0683)
WAL_HEADER_SIZE: Final = 32
FRAME_HEADER_SIZE: Final = 24


def pages_in_wal(db_path: str, page_size: int) -> tuple[set[int], int]:
    """The page numbers committed in ``db_path``'s WAL and the database size (in pages)
    after its last commit; ``(set(), 0)`` when there is no usable WAL."""
    try:
        with open(db_path + "-wal", "rb") as fh:
            head = fh.read(WAL_HEADER_SIZE)
            if len(head) < WAL_HEADER_SIZE:
                return set(), 0
            magic, _version, wal_page_size, _seq, salt1, salt2 = struct.unpack(">6I", head[:24])
            if magic not in WAL_MAGICS or wal_page_size != page_size:
                return set(), 0
            return _committed_pages(fh, page_size, (salt1, salt2))
    except OSError:
        return set(), 0


def _committed_pages(fh, page_size: int, salts: tuple[int, int]) -> tuple[set[int], int]:
    committed: set[int] = set()
    pending: set[int] = set()
    db_pages = 0
    offset = WAL_HEADER_SIZE
    size = os.fstat(fh.fileno()).st_size
    while offset + FRAME_HEADER_SIZE + page_size <= size:
        fh.seek(offset)
        page, commit_size, salt1, salt2 = struct.unpack(">4I", fh.read(16))
        if (salt1, salt2) != salts or page == 0:
            break  # frames of an older generation of the WAL: not part of the database
        pending.add(page)
        if commit_size:
            committed |= pending
            pending.clear()
            db_pages = commit_size
        offset += FRAME_HEADER_SIZE + page_size
    return committed, db_pages
