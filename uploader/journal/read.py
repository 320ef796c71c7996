"""Reading what a run recorded, for people: runs, metric series, parameters, output, assets.

The viewer (``comet-upload view``) and ``comet-upload export`` read journals only through this
module. Every connection is a read-only open (``schema.journal``): nothing here writes, not
even a migration, so it works on read-only media and on journals a recorder is writing (each
query is its own short read transaction, so the writer is never held up).

A *run* is one experiment key; its calls may be spread over several journal files (ranks,
segments), so each query reads every file holding that key, in order.

Example::

    from comet_journal.uploader.journal.read import RunIndex
    index = RunIndex(["runs/"])
    for run in index.runs():
        print(run.key, run.name, index.params(run.key))
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import socket
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator

from comet_journal.schema.blobs import iter_chunks
from comet_journal.schema.errors import JournalError
from comet_journal.schema.journal import Journal, sqlite_connect, translate_error
from comet_journal.uploader.journal.progress_store import open_progress_view
from comet_journal.uploader.journal.discovery import iter_journals
from comet_journal.uploader.journal.liveness import (DEFAULT_STALE_AFTER_S, ENDED, LIVE, STALE,
                                             last_change)

SHA256_RE = re.compile(r"[0-9a-f]{64}")
# Endpoints whose points are drawn as charts; the value fields of the system samples.
METRIC = "log_metric"
SYSTEM_ENDPOINTS = ("cpu_metrics", "ram_metrics", "load_metrics", "gpu_metrics")
_SINGLE_ITEMS = ("git_metadata", "system_details")
_BLOB_ITEMS = {"set_code": "code", "upload_git_patch": "file", "log_graph": "graph"}


@dataclass(frozen=True)
class Place:
    """Where some of a run lives: one journal file and the experiment's id inside it."""

    path: str
    experiment_id: int


@dataclass
class RunSummary:
    """One row of the runs table."""

    key: str
    name: str | None
    workspace: str | None
    project: str | None
    status: str  # live | ended | stale
    start_ms: int | None
    end_ms: int | None
    last_ms: int | None
    last_step: int | None
    tags: list[str]
    journals: list[str]
    uploads: list[dict] = field(default_factory=list)  # per server: acked, pending

    def as_dict(self) -> dict:
        return asdict(self)


# One metric point as journaled: (seq, name, context, step, epoch, timestamp_ms, value);
# plain tuples because a run may have millions (``value`` may be text: not drawn).
MetricPoint = tuple
METRIC_COLUMNS = ("seq", "name", "context", "step", "epoch", "timestamp_ms", "value")
PAGE_ROWS = 20000
UPLOADS_TTL_S = 10.0
# How far each journal of a run has been read: journal path -> seq read through. Sequence
# numbers are per file, so a run spread over several journals keeps one per file.
Cursor = dict


@contextlib.contextmanager
def read_only(path: str) -> Iterator[sqlite3.Connection]:
    """A read-only connection to a journal; SQLite errors become a JournalError naming it."""
    conn = sqlite_connect(path, readonly=True, timeout=5.0)
    try:
        yield conn
    except sqlite3.Error as exc:
        raise translate_error(path, exc) from None
    finally:
        conn.close()


@contextlib.contextmanager
def progress_view(path: str) -> Iterator[sqlite3.Connection]:
    """The journal with its upload progress (the uploader's state database), read-only."""
    try:
        conn = open_progress_view(path, timeout=5.0)
    except sqlite3.Error as exc:
        raise translate_error(path, exc) from None
    try:
        yield conn
    except sqlite3.Error as exc:
        raise translate_error(path, exc) from None
    finally:
        conn.close()


class RunIndex:
    """The runs found in the journals given (files or directories), addressed by key.

    Only these journals are ever read: a key that is not in them is unknown (``KeyError``).
    ``refresh()`` looks again for new journals and experiments (live directories).
    """

    def __init__(self, roots: list[str]):
        self.roots = [os.path.abspath(r) for r in roots]
        self.places: dict[str, list[Place]] = {}
        self.problems: dict[str, str] = {}  # journal path -> why it cannot be read
        self._calls: dict[Place, tuple[int, list]] = {}  # see _calls_of
        self._uploads: dict[str, tuple[float, list]] = {}  # see uploads
        self._lock = threading.Lock()
        self.refresh()

    def refresh(self) -> None:
        places: dict[str, list[Place]] = {}
        for path in iter_journals(self.roots):
            try:  # the full read-only open: header, format and tables checked
                with Journal.open(path, readonly=True) as journal, \
                        journal.engine.connect() as conn:
                    rows = conn.exec_driver_sql(
                        "SELECT id, key FROM experiments ORDER BY id").all()
            except JournalError as exc:
                self.problems[path] = str(exc)
                continue
            self.problems.pop(path, None)
            for exp_id, key in rows:
                places.setdefault(key, []).append(Place(path, exp_id))
        self.places = places

    def keys(self) -> list[str]:
        return list(self.places)

    def places_of(self, key: str) -> list[Place]:
        try:
            return self.places[key]
        except KeyError:
            raise KeyError(f"no run with key {key!r} in the journals served") from None

    def _rows(self, key: str, sql: str, args: tuple = ()) -> Iterator[tuple]:
        """``sql`` (with ``experiment_id=?`` as its first parameter) over every place of a run."""
        for place in self.places_of(key):
            with read_only(place.path) as conn:
                cursor = conn.execute(sql, (place.experiment_id, *args))
                while rows := cursor.fetchmany(PAGE_ROWS):
                    yield from rows

    def _payloads(self, key: str, endpoint: str) -> Iterator[tuple]:
        """``(seq, ts_ms, payload dict)`` of one endpoint's calls of a run, in journal order."""
        for _ep, seq, ts_ms, payload in self._payloads_since(key, (endpoint,), {}):
            yield seq, ts_ms, payload

    def _payloads_since(self, key: str, endpoints: tuple[str, ...],
                        since: Cursor) -> Iterator[tuple]:
        """``(endpoint, seq, ts_ms, payload)`` of a run's calls to ``endpoints`` not yet read:
        ``since`` (journal path -> seq read through) is advanced as the calls are read."""
        for place in self.places_of(key):
            after = since.get(place.path, 0)
            read_through, calls = self._calls_of(place)
            for seq, ep, ts_ms, text in calls:
                if seq > after and ep in endpoints:
                    yield ep, seq, ts_ms, json.loads(text)
            since[place.path] = max(after, read_through)

    def _calls_of(self, place: Place) -> tuple[int, list[tuple]]:
        """A run's calls other than metric points, kept in memory and read incrementally:
        without an index on ``endpoint``, each page view would otherwise scan every metric
        point of a big run several times."""
        with self._lock:
            read_through, calls = self._calls.get(place, (0, []))
            with read_only(place.path) as conn:
                end = conn.execute("SELECT coalesce(max(seq), 0) FROM calls").fetchone()[0]
                if end > read_through:
                    calls = calls + conn.execute(
                        "SELECT seq, endpoint, ts_ms, payload FROM calls WHERE experiment_id=? "
                        "AND seq>? AND seq<=? AND endpoint!=? ORDER BY seq",
                        (place.experiment_id, read_through, end, METRIC)).fetchall()
            self._calls[place] = (max(end, read_through), calls)
            return self._calls[place]

    # --- the runs table ---------------------------------------------------------------
    def runs(self) -> list[RunSummary]:
        return [self.summary(key) for key in self.places]

    def summary(self, key: str) -> RunSummary:
        places = self.places_of(key)
        first = places[0]
        with read_only(first.path) as conn:
            name, workspace, project, created, host, pid = conn.execute(
                "SELECT name, workspace, project, created_ms, host, pid FROM experiments "
                "WHERE id=?",
                (first.experiment_id,)).fetchone()
        start, end = created, None
        for _seq, _ts, p in self._payloads(key, "experiment_start_end_time"):
            start = p.get("startTimeMillis", start)
            end = p.get("endTimeMillis", end)
        last_ms, last_step = None, None
        for ts_ms, in self._rows(key, "SELECT ts_ms FROM calls WHERE experiment_id=? "
                                      "ORDER BY seq DESC LIMIT 1"):
            last_ms = max(ts_ms, last_ms or ts_ms)
        for text, in self._rows(key, "SELECT payload FROM calls WHERE experiment_id=? AND "
                                     "endpoint=? ORDER BY seq DESC LIMIT 1", (METRIC,)):
            step = json.loads(text).get("step")
            last_step = step if last_step is None or (step or 0) > last_step else last_step
        status = ENDED if end is not None else _run_status(places, host, pid)
        return RunSummary(key, name, workspace, project, status, start, end, last_ms,
                          last_step, self.tags(key), [p.path for p in places],
                          self.uploads(key))

    def tags(self, key: str) -> list[str]:
        tags: list[str] = []
        for _seq, _ts, p in self._payloads(key, "add_tags"):
            tags.extend(t for t in p.get("addedTags") or [] if t not in tags)
        return tags

    def uploads(self, key: str) -> list[dict]:
        """Per upload target (server): calls of this run still pending. Counting them scans
        the run's calls past the watermark, so a result is reused for UPLOADS_TTL_S."""
        cached = self._uploads.get(key)
        if cached and time.monotonic() - cached[0] < UPLOADS_TTL_S:
            return cached[1]
        out = self._count_pending(key)
        self._uploads[key] = (time.monotonic(), out)
        return out

    def _count_pending(self, key: str) -> list[dict]:
        out = []
        for place in self.places_of(key):
            with progress_view(place.path) as conn:
                for target, server, acked_through in conn.execute(
                        "SELECT id, server, acked_through FROM upload_targets").fetchall():
                    pending = conn.execute(
                        "SELECT count(*) FROM calls WHERE experiment_id=? AND seq>? AND seq "
                        "NOT IN (SELECT seq FROM upload_state WHERE target_id=? AND "
                        "state='acked')", (place.experiment_id, acked_through, target)
                    ).fetchone()[0]
                    out.append({"server": server, "journal": place.path, "pending": pending})
        return out

    # --- values -----------------------------------------------------------------------
    def metric_rows(self, key: str, since: Cursor | None = None) -> Iterator[MetricPoint]:
        """Every metric point of a run not yet read (``since``, advanced as rows are read;
        default: all), in journal order, decoded in SQL."""
        sql = ("SELECT seq, json_extract(payload, '$.metricName'), "
               "json_extract(payload, '$.context'), json_extract(payload, '$.step'), "
               "json_extract(payload, '$.epoch'), "
               "coalesce(json_extract(payload, '$.timestamp'), ts_ms), "
               "json_extract(payload, '$.metricValue') FROM calls "
               "WHERE experiment_id=? AND endpoint='log_metric' AND seq>? ORDER BY seq")
        since = {} if since is None else since
        for place in self.places_of(key):
            with read_only(place.path) as conn:
                cursor = conn.execute(sql, (place.experiment_id, since.get(place.path, 0)))
                while rows := cursor.fetchmany(PAGE_ROWS):
                    since[place.path] = rows[-1][0]
                    yield from rows

    def system_rows(self, key: str, since: Cursor | None = None) -> Iterator[MetricPoint]:
        """CPU, RAM, load and GPU samples as metric points named ``sys/...``."""
        since = {} if since is None else since
        for endpoint, seq, ts_ms, p in self._payloads_since(key, SYSTEM_ENDPOINTS, since):
            position = (p.get("step"), p.get("epoch"), p.get("timestamp") or ts_ms)
            for name, value in _system_values(endpoint, p):
                yield (seq, name, p.get("context"), *position, value)

    def params(self, key: str) -> dict[str, Any]:
        """The latest value of each parameter."""
        return {p["parameterName"]: p.get("parameterValue")
                for _s, _t, p in self._payloads(key, "log_parameter")}

    def others(self, key: str) -> dict[str, Any]:
        return {p["key"]: p.get("value") for _s, _t, p in self._payloads(key, "log_other")}

    def output(self, key: str, since: Cursor | None = None, limit: int = 20000) -> list[dict]:
        """Output lines (``stderr`` marked) not yet read (``since``, advanced), at most
        ``limit`` (the last); lines of several journals are merged by time."""
        lines: list[dict] = []
        since = {} if since is None else since
        for _ep, seq, ts_ms, p in self._payloads_since(key, ("log_output",), since):
            for line in p.get("outputLines") or []:
                lines.append({"seq": seq, "ts": line.get("localTimestamp") or ts_ms,
                              "stderr": bool(line.get("stderr")),
                              "text": str(line.get("output", ""))})
        if len(self.places_of(key)) > 1:
            lines.sort(key=lambda line: line["ts"])
        return lines[-limit:]

    def html(self, key: str) -> str:
        """The run's html as Comet shows it: appended, or replaced by an ``override`` call."""
        parts: list[str] = []
        for _seq, _ts, p in self._payloads(key, "log_html"):
            if p.get("override"):
                parts = []
            parts.append(str(p.get("html", "")))
        return "".join(parts)

    def items(self, key: str) -> dict[str, Any]:
        """Everything else a run page shows, without blob bytes (those are read on demand)."""
        out: dict[str, Any] = {"text_samples": [], "assets": []}
        for endpoint in _SINGLE_ITEMS:
            for _seq, _ts, p in self._payloads(key, endpoint):
                out[endpoint] = p
        for endpoint, field_name in _BLOB_ITEMS.items():
            for _seq, _ts, p in self._payloads(key, endpoint):
                out[endpoint] = p.get(field_name)
        for seq, _ts, p in self._payloads(key, "upload_text_sample"):
            out["text_samples"].append({"seq": seq, "step": p.get("step"),
                                        "context": p.get("context"),
                                        "metadata": p.get("metadata"), "blob": p.get("content")})
        assets: dict[str, dict] = {}
        for seq, _ts, p in self._payloads(key, "upload_asset"):
            name = p.get("fileName") or "asset"
            assets[name] = {"seq": seq, "name": name, "type": p.get("type"),
                            "step": p.get("step"), "blob": p.get("file")}
        out["assets"] = list(assets.values())
        return out

    # --- bytes ------------------------------------------------------------------------
    def blob_chunks(self, key: str, sha256: str) -> Iterator[bytes]:
        """The bytes of a blob this run refers to; ``KeyError`` for any other blob."""
        if not SHA256_RE.fullmatch(sha256):
            raise KeyError(f"not a blob id: {sha256!r} (64 lowercase hex digits)")
        needle = f'%"$blob":"{sha256}"%'
        for place in self.places_of(key):
            with read_only(place.path) as conn:
                found = conn.execute("SELECT 1 FROM calls WHERE experiment_id=? AND payload "
                                     "LIKE ? LIMIT 1", (place.experiment_id, needle)).fetchone()
                if found:
                    yield from iter_chunks(conn, sha256)
                    return
        raise KeyError(f"run {key!r} has no blob {sha256}")

    def blob_text(self, key: str, sha256: str, limit: int = 1 << 20) -> str:
        data = bytearray()
        for chunk in self.blob_chunks(key, sha256):
            data += chunk
            if len(data) >= limit:
                break
        return bytes(data[:limit]).decode("utf-8", "replace")


def _run_status(places: list[Place], host: str | None, pid: int | None,
                now: float | None = None) -> str:
    """live or stale, by the daemon's rule (ended is decided by the run's own end record):
    live while a journal of the run grew within the stale delay, or its writer still runs
    here. No query: liveness's own check scans every call, too slow for a polled page."""
    now = time.time() if now is None else now
    newest = max(last_change(p.path) for p in places)
    if now - newest < DEFAULT_STALE_AFTER_S:
        return LIVE
    if host == socket.gethostname() and pid:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return STALE
        except PermissionError:
            pass
        return LIVE
    return STALE


def _system_values(endpoint: str, p: dict) -> Iterator[tuple[str, Any]]:
    if endpoint == "cpu_metrics":
        cpus = p.get("cpuPercentUtilization") or []
        if cpus:
            yield "sys/cpu.percent.avg", sum(cpus) / len(cpus)
    elif endpoint == "ram_metrics":
        yield "sys/ram.used", p.get("usedRam")
        yield "sys/ram.total", p.get("totalRam")
    elif endpoint == "load_metrics":
        yield "sys/load.avg", p.get("loadAverage")
    else:
        for gpu in p.get("gpus") or []:
            gid = gpu.get("gpuId")
            yield f"sys/gpu.{gid}.utilization", gpu.get("gpuUtilization")
            yield f"sys/gpu.{gid}.memory.used", gpu.get("usedMemory")


def as_number(value: Any) -> float | None:
    """A metric value as a finite float, or None (text metrics, NaN and infinities)."""
    if isinstance(value, bool):
        return float(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
