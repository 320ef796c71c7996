"""``comet-upload status DIR``: every journal under some directories, in one word each.

uploaded  the run ended and every call is on the server (the watch daemon marked it)
live      the run is still being written (pending calls are uploaded as it grows)
pending   the run ended, some calls are not on the server yet
stale     the writer died without ending the run: no growth and no live writer
failed    the journal cannot be read, or the server rejected some of its calls

Read-only, like ``status JOURNAL``.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import asdict, dataclass

from comet_journal.schema.errors import JournalError, NotAJournalError
from comet_journal.uploader.journal.discovery import DEFAULT_PATTERN, iter_matching
from comet_journal.schema.segments import segments_dir
from comet_journal.uploader.journal.mirror import mirror_path
from comet_journal.uploader.journal.private_copy import PrivateCopy, copy_path
from comet_journal.uploader.journal.liveness import DEFAULT_STALE_AFTER_S, ENDED, LIVE, journal_liveness
from comet_journal.uploader.journal.progress_store import open_progress_view
from comet_journal.uploader.journal.status import pending_report, upload_targets

STATES = ("uploaded", "live", "pending", "stale", "failed")


@dataclass
class JournalStatus:
    journal: str
    state: str
    detail: str = ""
    total_calls: int = 0
    pending: int = 0
    rejected: int = 0
    idle_s: float | None = None
    experiments: int = 0
    server: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def journal_status(path: str, identity: str | None, server: str,
                   stale_after_s: float = DEFAULT_STALE_AFTER_S,
                   state_dir: str | None = None) -> JournalStatus:
    """One journal's state; raises NotAJournalError for files that are not journals at all.

    ``identity`` None: the target the journal was uploaded to (the one with the least
    pending, when several), else ``server``'s default target. Progress comes from
    ``state_dir`` (of the private copy the daemon uploads, for a run sealed in segments)."""
    try:
        uploaded_as = uploaded_path(path, state_dir)
        report = _best_report(uploaded_as, identity, server, state_dir)
        report.journal = path
        liveness = journal_liveness(path, stale_after_s)
        completed = _completed(uploaded_as, report.identity, state_dir)
    except NotAJournalError:
        raise
    except JournalError as exc:
        return JournalStatus(path, "failed", str(exc))
    except sqlite3.Error as exc:
        return JournalStatus(path, "failed", f"{path}: cannot be read: {exc}")
    status = JournalStatus(path, "", total_calls=report.total_calls, pending=report.pending,
                           rejected=report.rejected, idle_s=round(liveness.idle_s, 1),
                           experiments=liveness.experiments, server=report.server)
    if report.rejected:
        status.state = "failed"
        status.detail = f"{report.rejected} calls rejected by the server"
    elif completed or (liveness.state == ENDED and report.pending == 0):
        status.state = "uploaded"
    elif liveness.state == ENDED:
        status.state = "pending"
    elif liveness.state == LIVE:
        status.state = "live"
    else:
        status.state = "stale"
        status.detail = f"no growth for {liveness.idle_s:.0f}s and no live writer"
    if report.last_error and status.state != "uploaded":
        status.detail = (status.detail + "; " if status.detail else "") + \
            f"last error: {report.last_error}"
    return status


def directory_status(roots: list[str], identity: str | None, server: str,
                     pattern: str = DEFAULT_PATTERN,
                     stale_after_s: float = DEFAULT_STALE_AFTER_S,
                     state_dir: str | None = None) -> list[JournalStatus]:
    out = []
    for path in iter_matching(roots, pattern):
        try:
            out.append(journal_status(path, identity, server, stale_after_s, state_dir))
        except NotAJournalError:
            continue  # another program's file that happens to match the pattern
    return out


def _best_report(path: str, identity: str | None, server: str, state_dir: str | None):
    if identity is not None:
        return pending_report(path, identity, server, state_dir)
    reports = [pending_report(path, ident, srv, state_dir)
               for ident, srv in upload_targets(path, state_dir)]
    if not reports:
        return pending_report(path, f"{server}|ws=|project=", server, state_dir)
    return min(reports, key=lambda r: (not r.acknowledged, r.pending + r.rejected))


def _completed(path: str, identity: str, state_dir: str | None = None) -> bool:
    try:
        conn = open_progress_view(path, state_dir)
    except sqlite3.Error:  # unreadable now: not known to be uploaded
        return False
    try:
        row = conn.execute("SELECT completed_ms FROM upload_targets WHERE identity=?",
                           (identity,)).fetchone()
    finally:
        conn.close()
    return bool(row and row[0])


def uploaded_path(path: str, state_dir: str | None = None) -> str:
    """The file the daemon uploads for ``path``: the private copy assembled from its
    segments when it seals some and a copy exists, the private copy of a dead writer's
    journal when one is up to date, else the journal itself."""
    directory = segments_dir(path)
    mirror = mirror_path(directory, state_dir)
    if os.path.isdir(directory) and os.path.exists(mirror):
        return mirror
    copy = PrivateCopy(path, copy_path(path, state_dir))
    return copy.path if copy.current() else path


__all__ = ["STATES", "JournalStatus", "directory_status", "journal_status", "uploaded_path"]
