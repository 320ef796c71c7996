"""Import an OfflineExperiment source into a journal: the whole of it, once.

The journal keeps the archive's experiment key as its client key and lives at
``<state dir>/imported/<key>.db`` unless told otherwise, so importing the same archive twice,
or an archive and later the rescued directory of the same run, finds the journal already
there and makes no second experiment.

Example::

    result = import_source("offline/6a76a031b354476d9a0dd4ba5b333b14.zip")
    result.journal      # ~/.local/state/comet-journal/imported/6a76....db
    result.imported     # False when it was already imported
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Final

from comet_journal.uploader.importer.convert import Converter, ImportReport, MessageProblem
from comet_journal.uploader.importer.journal_out import ImportJournal, existing_import, now_ms
from comet_journal.uploader.importer.source import (EXPERIMENT_FILE, MESSAGES_FILE,
                                                    ArchiveError, OfflineSource)
from comet_journal.uploader.state_home import default_state_dir

IMPORTED_DIR: Final = "imported"


@dataclass
class ImportResult:
    source: str
    kind: str  # "archive", "unpacked archive" or "rescued run"
    key: str
    journal: str
    imported: bool  # False: the journal already held this experiment (nothing written)
    ended: bool  # False: the run was killed before end() (rescued from its directory)
    calls: int = 0
    report: ImportReport | None = None

    def as_dict(self) -> dict:
        out = {"source": self.source, "kind": self.kind, "key": self.key,
               "journal": self.journal, "imported": self.imported, "ended": self.ended,
               "calls": self.calls}
        if self.report is not None:
            out.update(self.report.as_dict())
        return out


def imported_journal_path(key: str, state_dir: str | None = None) -> str:
    """Where the journal of an imported experiment lives by default."""
    return os.path.join(default_state_dir(state_dir), IMPORTED_DIR, f"{key}.db")


def import_source(source: str | os.PathLike, *, journal: str | os.PathLike | None = None,
                  state_dir: str | None = None, placeholder: str | None = None,
                  partial: bool = False, workspace: str | None = None,
                  project: str | None = None) -> ImportResult:
    """Import one archive, unpacked archive or rescued run directory. Idempotent.

    :param journal: the journal file to create, or an existing directory to create
        ``<key>.db`` in (default: :func:`imported_journal_path`).
    :param placeholder: a rescued run's placeholder ``<key>.zip`` (its key).
    :param partial: import what can be imported and list what was skipped, instead of
        refusing the whole source at its first problem.
    :param workspace, project: for a source that does not name them (a rescued run's
        experiment.json is lost; default ``$COMET_WORKSPACE``/``$COMET_PROJECT_NAME``).
    Raises :class:`ArchiveError` naming the source, the line and the problem.
    """
    with OfflineSource(source, placeholder) as src:
        info = src.info
        info.workspace = info.workspace or workspace or os.environ.get("COMET_WORKSPACE")
        info.project = info.project or project or os.environ.get("COMET_PROJECT_NAME")
        path = _journal_path(journal, info.key, state_dir)
        result = ImportResult(src.path, src.kind, info.key, path, imported=False,
                              ended=info.ended)
        if existing_import(path, info.key):
            return result
        if os.path.exists(path):
            raise ArchiveError(src.path, f"the journal {path} exists and holds other "
                               "experiments", hint="choose another --journal path")
        if not (info.workspace and info.project):
            raise ArchiveError(src.path, "names no workspace and project (a run killed before "
                               "end() loses them with its experiment.json)",
                               hint="give --workspace and --project-name")
        if src.unsafe_members and not partial:
            raise ArchiveError(src.path, f"the path {src.unsafe_members[0]!r} escapes the "
                               "archive's directory", hint="the archive was altered; "
                               "--partial imports the rest")
        out = ImportJournal(path)
        try:
            report = _fill(src, out, partial)
            result.calls = out.calls
            result.imported = out.commit_to_final()
        except BaseException:
            out.discard()
            raise
        result.report = report
        if not result.imported:  # another import of the same run linked its journal first
            result.calls = 0
        return result


def _journal_path(journal, key: str, state_dir: str | None) -> str:
    if journal is None:
        return imported_journal_path(key, state_dir)
    journal = os.path.abspath(os.fspath(journal))
    return os.path.join(journal, f"{key}.db") if os.path.isdir(journal) else journal


def _fill(src: OfflineSource, out: ImportJournal, partial: bool) -> ImportReport:
    info = src.info
    report = ImportReport()
    for name in src.unsafe_members:
        report.skipped.append((None, f"the path {name!r} escapes the archive's directory"))
    start = info.start_ms or now_ms()
    out.add_experiment(info.key, info.workspace, info.project, start)
    create = {"projectName": info.project, "workspaceName": info.workspace}
    out.call("experiment_create", {k: v for k, v in create.items() if v}, start)
    if info.tags:
        out.call("add_tags", {"addedTags": info.tags}, start)
    converter = Converter(out, src.open_member, report, start)
    for line, raw in src.lines():
        try:
            msg_type, payload = _parse(raw)
            converter.message(line, msg_type, payload)
        except MessageProblem as exc:
            if not partial:
                raise ArchiveError(src.path, str(exc), line,
                                   hint="--partial imports the rest and lists what it "
                                        "skipped") from None
            report.skipped.append((line, str(exc)))
    converter.finish()
    first = info.start_ms if info.ended else converter.first_ts
    last = info.stop_ms if info.ended else converter.last_ts
    times = {"startTimeMillis": first or start, "endTimeMillis": last}
    out.call("experiment_start_end_time", {k: v for k, v in times.items() if v},
             last or start)
    report.orphans = len(src.members - {EXPERIMENT_FILE, MESSAGES_FILE} - report.referenced)
    _record_meta(out, src, report)
    return report


def _parse(raw: bytes) -> tuple:
    try:
        message = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MessageProblem(f"the line is not valid JSON ({exc})") from None
    if not isinstance(message, dict) or "type" not in message:
        raise MessageProblem('the line is not a message ({"type": ..., "payload": ...})')
    return message["type"], message.get("payload")


def _record_meta(out: ImportJournal, src: OfflineSource, report: ImportReport) -> None:
    """What the journal came from and what it could not carry, for status and inspect."""
    info = src.info
    out.set_meta("import.source", src.path)
    out.set_meta("import.kind", src.kind)
    out.set_meta("import.run_ended", "true" if info.ended else "false")
    out.set_meta("import.report", json.dumps(report.as_dict(), sort_keys=True))
    if report.not_sendable:
        out.set_meta("import.not_sendable", json.dumps(report.not_sendable, sort_keys=True))


def import_for_upload(path: str | os.PathLike, state_dir: str | None = None) -> str:
    """The journal of an archive (imported now unless it already was), for uploading it.

    For ``comet-upload ARCHIVE.zip`` and the watch daemon: the journal goes into the
    uploader's state directory, never beside the archive.
    """
    return import_source(path, state_dir=state_dir).journal
