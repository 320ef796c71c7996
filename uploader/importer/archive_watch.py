"""For the watch daemon: OfflineExperiment archives (``*.zip``) appearing in a watched
directory become journals in the uploader's state directory, once each, and are uploaded
like any journal. The archive itself is only read (its directory may be read-only)."""

from __future__ import annotations

import os
import time
from typing import Callable, Final

from comet_journal.uploader.journal.discovery import iter_matching
from comet_journal.uploader.importer.importing import import_source
from comet_journal.uploader.importer.source import ArchiveError, is_placeholder

ARCHIVE_PATTERN: Final = "*.zip"
SETTLE_S: Final = 2.0  # an archive changed this recently may still be being written


class ArchiveImports:
    """Remembers each archive's (size, mtime) so it is imported (or reported) once.

    :param log: the daemon's event log (``log(kind, message, level=..., **fields)``).
    """

    def __init__(self, state_dir: str | None, log: Callable[..., None]):
        self.state_dir = state_dir
        self.log = log
        self._seen: dict[str, tuple] = {}
        self._journals: dict[str, str] = {}

    def journals(self, roots: list[str]) -> list[str]:
        """The journal of every archive under ``roots``, importing new ones now."""
        out = []
        for path in iter_matching(roots, ARCHIVE_PATTERN):
            journal = self._journal_of(path)
            if journal:
                out.append(journal)
        return out

    def _journal_of(self, path: str) -> str | None:
        try:
            st = os.stat(path)
        except OSError:
            return None
        signature = (st.st_size, st.st_mtime_ns)
        if self._seen.get(path) == signature:
            return self._journals.get(path)
        if time.time() - st.st_mtime < SETTLE_S or is_placeholder(path):
            return None  # being written, or a run still going (end() fills its placeholder)
        self._seen[path] = signature
        try:
            result = import_source(path, state_dir=self.state_dir)
        except ArchiveError as exc:
            self.log("error", f"{exc}; not imported", level="error", journal=path)
            return None
        if result.imported:
            self.log("imported", f"archive {path} -> journal {result.journal}",
                     journal=result.journal)
        self._journals[path] = result.journal
        return result.journal
