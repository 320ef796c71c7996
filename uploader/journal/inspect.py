"""What a journal holds: experiments, calls per endpoint, asset bytes, time span, format.

Read-only: opening a journal here never writes to it (not even a migration).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field

from sqlalchemy import func, select

from comet_journal.schema.catalogue import ENDPOINTS
from comet_journal.schema import tables
from comet_journal.schema.journal import Journal


@dataclass
class ExperimentSummary:
    key: str
    workspace: str | None
    project: str | None
    name: str | None
    calls: int
    calls_per_endpoint: dict[str, int]
    first_ms: int | None
    last_ms: int | None
    ended: bool


@dataclass
class JournalSummary:
    path: str
    format_version: int
    journal_id: str | None
    file_bytes: int
    calls: int
    calls_per_endpoint: dict[str, int]
    first_ms: int | None
    last_ms: int | None
    asset_blobs: int
    asset_bytes: int  # distinct bytes stored (deduplicated)
    experiments: list[ExperimentSummary] = field(default_factory=list)
    project_calls: int = 0
    # journals imported from an OfflineExperiment archive: where from, and what no
    # documented endpoint carries (kept in the journal, not sent), by message type
    imported: dict | None = None
    # calls only the official SDK's routes carry (sent where the server offers them)
    sdk_only_calls: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def inspect_journal(path: str | os.PathLike) -> JournalSummary:
    """Summarise a journal. Raises :class:`comet_journal.schema.errors.JournalError` naming the file."""
    path = os.fspath(path)
    with Journal.open(path, readonly=True) as journal:
        meta = journal.meta()
        c = tables.calls.c
        with journal.engine.connect() as conn:
            per_endpoint_rows = conn.execute(
                select(c.experiment_id, c.endpoint, func.count(), func.min(c.ts_ms),
                       func.max(c.ts_ms)).group_by(c.experiment_id, c.endpoint)).all()
            exps = conn.execute(select(tables.experiments).order_by(tables.experiments.c.id)).all()
            blob_count, blob_bytes = conn.execute(
                select(func.count(), func.coalesce(func.sum(tables.blobs.c.size), 0))).one()
            ended_ids = set(conn.execute(
                select(c.experiment_id).where(c.endpoint == "experiment_start_end_time")
                .where(c.payload.like('%"endTimeMillis"%'))).scalars())
        version = journal.format_version()
    totals: dict[str, int] = {}
    per_exp: dict[int | None, dict] = {}
    for exp_id, endpoint, count, first, last in per_endpoint_rows:
        totals[endpoint] = totals.get(endpoint, 0) + count
        entry = per_exp.setdefault(exp_id, {"calls": {}, "first": first, "last": last})
        entry["calls"][endpoint] = count
        entry["first"] = min(entry["first"], first)
        entry["last"] = max(entry["last"], last)
    firsts = [e["first"] for e in per_exp.values()]
    lasts = [e["last"] for e in per_exp.values()]
    summary = JournalSummary(
        path=path, format_version=version, journal_id=meta.get("journal_id"),
        file_bytes=_size_with_wal(path), calls=sum(totals.values()),
        calls_per_endpoint=dict(sorted(totals.items())),
        first_ms=min(firsts) if firsts else None, last_ms=max(lasts) if lasts else None,
        asset_blobs=blob_count, asset_bytes=int(blob_bytes),
        project_calls=sum(per_exp.get(None, {}).get("calls", {}).values()),
        imported=_import_facts(meta),
        sdk_only_calls={e: n for e, n in sorted(totals.items()) if e in ENDPOINTS
                        and not ENDPOINTS[e].documented})
    for exp in exps:
        entry = per_exp.get(exp.id, {"calls": {}, "first": None, "last": None})
        summary.experiments.append(ExperimentSummary(
            key=exp.key, workspace=exp.workspace, project=exp.project, name=exp.name,
            calls=sum(entry["calls"].values()), calls_per_endpoint=dict(sorted(
                entry["calls"].items())), first_ms=entry["first"], last_ms=entry["last"],
            ended=exp.id in ended_ids))
    return summary


def _import_facts(meta: dict[str, str]) -> dict | None:
    """What the importer recorded in the journal's meta (``uploader.importer``)."""
    if "import.source" not in meta:
        return None
    report = json.loads(meta.get("import.report") or "{}")
    return {"source": meta["import.source"], "kind": meta.get("import.kind"),
            "run_ended": meta.get("import.run_ended") == "true",
            "not_sent": report.get("not_sendable") or {},
            "skipped": report.get("skipped") or [],
            "dropped_fields": report.get("dropped_fields") or {},
            "orphan_files": report.get("orphan_files", 0)}


def _size_with_wal(path: str) -> int:
    total = 0
    for p in (path, path + "-wal"):
        try:
            total += os.path.getsize(p)
        except OSError:
            pass
    return total
