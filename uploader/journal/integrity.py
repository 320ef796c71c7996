"""Checking a journal before an upload sends or writes anything.

A journal that is damaged is refused as a whole, with exit status 1, before the upload takes
its lock file, migrates the file, records progress or sends a request; so a damaged journal is
left byte for byte as it was, and nothing of it reaches the server. Why refuse the whole file
rather than reject the damaged calls one by one (exit 3): the recorder checks every call
against the endpoint catalogue before journaling it and rows are never updated, so a row that
no longer fits means the file was altered or damaged after it was written, and then its other
rows are suspect too; a half-uploaded experiment is also harder to repair on the server than
a journal restored from a copy. The check covers the calls still to upload:

* the endpoint is one of the catalogue's (else: altered, or written by a newer
  comet-journal);
* the payload is a JSON object that fits the endpoint (``schema.catalogue.validate`` in its
  journal form: required fields, types, no unknown fields, blob references);
* the call belongs to an experiment of the journal (experiment endpoints) or to none (project
  and viz-store calls);
* every blob a call refers to is whole: its row, its parts and its chunk rows
  (``schema.blobs.check_blob``; the bytes' hashes are checked as they are streamed);
* the file can be read (another process blocking readers for longer than the busy timeout
  is refused with a clear "locked" error).

Speed: one pass of SQLite's JSON functions over the pending rows, generated from the
catalogue, picks the rows that are not *obviously* fine (a strict filter: any doubt picks
the row); only those are parsed and validated in Python, which decides. About 1-2 us per
pending row; rows already uploaded are not read.

Example::

    from comet_journal.uploader.journal.integrity import verify_journal
    verify_journal("run.db", identity)   # raises schema.errors.JournalError when damaged
"""

from __future__ import annotations

import functools
import json
import os
import sqlite3
import time

from comet_journal.schema import blobs as blob_store
from comet_journal.schema.catalogue import (BOOL, ENDPOINTS, EXPERIMENT, INT, METRIC_VALUE, NUMBER,
                              PARAM_VALUE, SCALAR, STR, CatalogueError, Endpoint, validate)
from comet_journal.schema.errors import CorruptJournalError, JournalError, JournalLockedError
from comet_journal.schema.journal import busy_timeout, translate_error
from comet_journal.uploader.journal.progress_store import open_progress_view

MAX_LISTED = 5  # damaged calls named in the message (the count says how many in all)
DAMAGED_HINT = ("the journal was altered or damaged after it was written; nothing was sent "
                "and the file was not changed: upload an intact copy (a backup) instead")

# JSON types (as SQLite's json_type names them) that certainly fit a catalogue field type.
# Types missing here (arrays, objects, special-float strings of numbers) are not refused: the
# row goes to the authoritative Python check.
_SURE_TYPES = {
    STR: ("text",), INT: ("integer",), NUMBER: ("integer", "real"), BOOL: ("true", "false"),
    SCALAR: ("text", "integer", "real", "true", "false"),
    PARAM_VALUE: ("text", "integer", "real", "true", "false"),
    METRIC_VALUE: ("integer", "real", "text"),
}


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _surely_fine_sql(endpoint: Endpoint) -> str:
    """An SQL condition, true only for payloads (valid JSON objects) that certainly fit."""
    if endpoint.one_of:
        return "0"
    terms = []
    paths = []
    for f in endpoint.fields:
        if f.name == "experimentKey":
            continue  # never journaled: the uploader adds it
        path = _sql_str(f'$."{f.name}"')
        paths.append(path)
        sure = _SURE_TYPES.get(f.type, ()) if not f.blob else ()
        allowed = list(sure) + ([] if f.required else ["null"])
        listed = ",".join(_sql_str(t) for t in allowed) or "''"
        terms.append(f"coalesce(json_type(payload,{path}),'null') IN ({listed})")
    # nothing but the endpoint's fields (removing them all leaves an empty object)
    terms.append(f"json_remove(payload,{','.join(paths)})='{{}}'" if paths
                 else "payload='{}'")
    entity = ("experiment_id IN (SELECT id FROM experiments)" if endpoint.entity == EXPERIMENT
              else "experiment_id IS NULL")
    return "(" + " AND ".join([entity, *terms]) + ")"


# The most frequent endpoints first: CASE tries its branches in order.
_FREQUENT = ("log_metric", "log_output", "log_parameter", "cpu_metrics", "ram_metrics",
             "load_metrics", "gpu_metrics", "experiment_keepalive", "log_other")


@functools.lru_cache(maxsize=2)
def _filter_sql(guarded: bool) -> str:
    """True for rows that certainly fit (false or NULL: look closer). Unguarded, SQLite raises "malformed JSON" on a row
    that is not JSON (and the check runs again guarded, which is slower: it parses each
    payload once more to test it first); a JSON array or scalar fails the field checks."""
    names = [n for n in _FREQUENT if n in ENDPOINTS] + sorted(set(ENDPOINTS) - set(_FREQUENT))
    branches = " ".join(f"WHEN {_sql_str(name)} THEN {_surely_fine_sql(ENDPOINTS[name])}"
                        for name in names)
    check = f"CASE endpoint {branches} ELSE 0 END"
    if guarded:
        check = f"CASE WHEN json_valid(payload) THEN {check} ELSE 0 END"
    return f"CASE WHEN typeof(payload)='text' THEN {check} ELSE 0 END"


def _pending_sql(conn: sqlite3.Connection, identity: str | None) -> tuple[str, tuple]:
    """The calls an upload to ``identity`` may still send."""
    has_tables = conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND "
                              "name='upload_targets'").fetchone() is not None
    row = None
    if has_tables and identity is not None:
        row = conn.execute("SELECT id, acked_through FROM upload_targets WHERE identity=?",
                           (identity,)).fetchone()
    if row is None:
        return "1", ()
    target_id, acked = row
    # One IN over a UNION, not "seq > ? OR seq IN (...)": SQLite answers the OR by scanning
    # every call, the UNION by rowid lookups (a fully uploaded journal costs nothing).
    return ("seq IN (SELECT seq FROM calls WHERE seq > ? UNION SELECT seq FROM upload_state "
            "WHERE target_id=? AND state != 'acked')", (acked, target_id))


def _problem(conn: sqlite3.Connection, endpoint: str, experiment_id, text,
             experiments: set[int]) -> str | None:
    """What is wrong with one call row, or None when it is fine after all."""
    ep = ENDPOINTS.get(endpoint)
    if ep is None:
        return (f"unknown endpoint {endpoint!r} (not in this comet-journal's catalogue; "
                "altered, or written by a newer comet-journal)")
    if not isinstance(text, str):
        return f"payload is not text but {type(text).__name__}"
    try:
        payload = json.loads(text)
    except ValueError as exc:
        return f"payload is not valid JSON ({exc.msg}, character {exc.pos}): {text[:60]!r}"
    if not isinstance(payload, dict):
        return f"payload is not a JSON object: {text[:60]!r}"
    if ep.entity == EXPERIMENT and experiment_id not in experiments:
        return (f"belongs to experiment id {experiment_id!r}, which is not in the journal"
                if experiment_id is not None else "belongs to no experiment")
    if ep.entity != EXPERIMENT and experiment_id is not None:
        return f"is a {ep.entity} call but belongs to experiment id {experiment_id!r}"
    try:
        validate(ep, payload, journal_form=True)
    except CatalogueError as exc:
        return f"payload does not fit the catalogue: {exc}"
    for f in ep.fields:
        value = payload.get(f.name)
        if f.blob and blob_store.is_blob_ref(value):
            try:
                blob_store.check_blob(conn, value["$blob"])
            except blob_store.MissingBlobError as exc:
                return f"MissingBlobError: {exc}"
    return None


def verify_journal(path: str | os.PathLike, identity: str | None = None,
                   state_dir: str | None = None) -> None:
    """Raise a :class:`JournalError` naming the file (and the damaged calls by seq) when the
    journal cannot be uploaded; never writes to it or its directory.

    :param identity: the upload target (:attr:`UploadConfig.identity`): only its pending
        calls are checked (progress from the state database in ``state_dir``). None: every
        call.

    The journal is only read: a writer holding its write lock does not stop an upload; one
    that blocks readers past the busy timeout
    (:func:`comet_journal.schema.journal.busy_timeout`) does, with a clear error.
    """
    path = os.fspath(path)
    started = time.monotonic()
    try:
        conn = open_progress_view(path, state_dir, timeout=busy_timeout())
        try:
            _check_rows(conn, path, identity)
        finally:
            conn.close()
    except JournalError:
        raise
    except sqlite3.Error as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            raise JournalLockedError(
                path, f"is locked by another process (still locked after waiting "
                      f"{time.monotonic() - started:.1f} s)",
                "run the upload again when that process is done, or pass "
                "--busy-timeout SECONDS to wait longer") from None
        raise translate_error(path, exc) from None


def _check_rows(conn: sqlite3.Connection, path: str, identity: str | None) -> None:
    where, args = _pending_sql(conn, identity)

    def flagged_rows(guarded: bool) -> list[tuple]:
        return conn.execute(
            f"SELECT seq, endpoint, experiment_id, payload FROM calls WHERE {where} AND NOT "
            f"coalesce({_filter_sql(guarded)}, 0) ORDER BY seq", args).fetchall()

    try:
        flagged = flagged_rows(guarded=False)
    except sqlite3.OperationalError as exc:
        if "JSON" not in str(exc):
            raise
        flagged = flagged_rows(guarded=True)
    experiments = {r[0] for r in conn.execute("SELECT id FROM experiments")}
    damaged: list[str] = []
    count = 0
    for seq, endpoint, experiment_id, text in flagged:
        problem = _problem(conn, endpoint, experiment_id, text, experiments)
        if problem is None:
            continue  # the filter's doubt; the full check says it is fine
        count += 1
        if len(damaged) < MAX_LISTED:
            damaged.append(f"call {seq} ({endpoint}): {problem}")
    if count:
        more = f"; and {count - len(damaged)} more" if count > len(damaged) else ""
        what = "1 damaged call" if count == 1 else f"{count} damaged calls"
        raise CorruptJournalError(path, f"{what}: " + "; ".join(damaged) + more, DAMAGED_HINT)
