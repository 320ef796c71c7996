"""Per endpoint: did the server already apply these calls? Decided through the read API.

Each check compares the server's current state with what the journal says should be there
*before* the calls (:class:`~comet_journal.uploader.journal.history.History`), so a call is
"found" only if its effect is present one more time than earlier journal calls explain:

* metric points (and system samples that read as metrics): the number of points with the
  same name, value, step, epoch, context and timestamp (samples: step and timestamp of the
  probe metric), against the number of identical earlier journal calls (identical calls are
  serialised by the replay, so the count decides); series are read as :mod:`.series` says;
* parameters and others: the server keeps a summary per name; their streams are ordered, so
  the current value and timestamp tell how far a run of same-name calls got;
* output: lines are sent in order per experiment, so the length of the server's output text
  (counted as it streams in, never held: :mod:`.output_length`) against the journal's
  earlier lines says which were applied;
* html: same, by length (appends) or equality (override);
* tags, code, graph, git metadata, system details, start/end time, archive: the server's
  value equals the call's (these are set-style, resending them would be harmless anyway);
* assets, git patch, text samples: the asset list, by file name, size, step and type;
* experiment delete/restore, projects: existence checks.

``CHECKS`` has one decision for every catalogue endpoint (a test fails when one is missing):
a check, or ``None`` ("cannot tell": the call is resent, which is safe for those endpoints).
A check takes the read-back (``read(path, **params)``, ``history``, ``overrides``,
``project_id(workspace, project)``), the calls of one stream in order and the server's
experiment key, and returns one verdict per call.
"""

from __future__ import annotations

import bisect
import json
from typing import Any, Callable

from comet_journal.schema.catalogue import ENDPOINTS
from comet_journal.uploader.journal.calls import Call
from comet_journal.uploader.journal.history import LOOKBACK
from comet_journal.uploader.send.signatures import call_metric_sig, norm_value, series_point

Check = Callable[[Any, list[Call], Any], list]
ReadBack = Any  # what a check is given (see the module docstring)


def _metrics(rb: "ReadBack", calls: list[Call], key: str) -> list[bool]:
    """A point is on the server if the server has more copies of it than earlier journal
    calls explain. Series are read through ``rb.series`` (:mod:`.series`): once per run for
    calls an earlier run may have sent, in shared passes for calls this run left in doubt
    (parked ones: the passes they were parked into); one journal query for all the calls."""
    sigs = [call_metric_sig(c) for c in calls]
    on_server = _series_counts(rb, rb.series, "metrics", key,
                               [(s[0], hash(s), s[5]) for s in sigs], rb.doubt)
    earlier: dict[tuple, list[int]] = {}  # sig -> seqs of identical journal calls
    present = {s for s, have in zip(sigs, on_server) if have}  # only these need counting
    if present:
        last = calls[-1]
        for seq, t, text in rb.history.rows_before(
                last, "log_metric", *_candidates(present),
                lookback=last.seq - calls[0].seq + LOOKBACK):
            sig = call_metric_sig(Call(0, "log_metric", None, t, text))
            if sig in present:
                earlier.setdefault(sig, []).append(seq)
    verdicts = [have > bisect.bisect_left(earlier.get(sig, ()), call.seq)
                for call, sig, have in zip(calls, sigs, on_server)]
    if rb.fresh:  # applied by this run's request: what a snapshot must learn
        rb.note_sent([c for c, v in zip(calls, verdicts) if v], key)
    return verdicts


def _candidates(sigs: set[tuple]) -> tuple[str, tuple]:
    """The SQL that keeps the journal rows that may have one of these signatures: same
    timestamp (the call's time, or one in its payload) and, when every step is an integer
    or none, same step (a burst of points in one millisecond stays a few rows)."""
    times = sorted({s[5] for s in sigs if isinstance(s[5], int)})
    sql = ("AND (ts_ms IN (SELECT value FROM json_each(?)) OR "
           "instr(payload, '\"timestamp\":') > 0)")
    args: tuple = (json.dumps(times),)
    steps = {s[2] for s in sigs}
    if all(step is None or type(step) is int for step in steps):
        sql += (" AND (json_extract(payload, '$.step') IS NULL OR json_extract(payload, "
                "'$.step') IN (SELECT value FROM json_each(?)))")
        args += (json.dumps(sorted(step for step in steps if step is not None)),)
    return sql, args


def _series_counts(rb: "ReadBack", reads: Any, kind: str, key: str,
                   points: list[tuple[str, int, Any]], doubts: list | None) -> list[int]:
    """How many copies of each point (name, hash, time) the server has: from the pass each
    was parked into (``doubts``: per point, its unit's passes), a fresh pass, or the run's
    snapshot of the series."""
    if doubts is not None:
        read: dict[int, Any] = {}
        copies = []
        for (name, h, _), passes in zip(points, doubts):
            this = passes.get((kind, name))
            if this is None:  # (never parked: cannot tell; counted as absent, so resent)
                copies.append(0)
                continue
            if id(this) not in read:
                read[id(this)] = reads.settle(key, name, this)
            copies.append(read[id(this)][h])
        return copies
    counts: dict[str, Any] = {}
    for name in dict.fromkeys(p[0] for p in points):
        if rb.fresh:
            mine = [p for p in points if p[0] == name]
            counts[name] = reads.fresh(key, name, {p[1] for p in mine}, {p[2] for p in mine})
        else:
            counts[name] = reads.snapshot(key, name)
    return [counts[name][h] for name, h, _ in points]


def _samples(rb: "ReadBack", calls: list[Call], key: str) -> list[bool | None]:
    """System samples (CPU/RAM/load/GPU) show up on Comet as ``sys.*`` metrics. A sample
    is on the server if its probe metric has more points at the sample's (step,
    timestamp) than earlier journal samples of the same endpoint there explain. The probe
    series are read like metric series (``rb.samples``: streamed, hashes, snapshot, passes)."""
    where = [series_point(c) for c in calls]
    doubts = None if rb.doubt is None else [d for d, w in zip(rb.doubt, where) if w is not None]
    copies = iter(_series_counts(rb, rb.samples, "samples", key,
                                 [(w[1], hash(w[2]), w[2][1]) for w in where if w is not None],
                                 doubts))
    verdicts: list[bool | None] = []
    for call, point in zip(calls, where):
        if point is None:
            verdicts.append(None)
            continue
        earlier = sum(1 for _seq, t, text in rb.history.rows_before(call, call.endpoint)
                      if series_point(Call(0, call.endpoint, None, t, text)) == point)
        verdicts.append(next(copies) > earlier)
    if rb.fresh:
        rb.note_sent([c for c, v in zip(calls, verdicts) if v], key)
    return verdicts


def _summaries(path: str, name_field: str, value_field: str):
    def check(rb: "ReadBack", calls: list[Call], key: str) -> list[bool]:
        data = rb.read(path, experimentKey=key) or {}
        current = {v.get("name"): v for v in data.get("values") or []}
        by_name: dict[str, list[int]] = {}
        for i, call in enumerate(calls):
            by_name.setdefault(call.payload[name_field], []).append(i)
        verdicts = [False] * len(calls)

        def is_current(c: Call, summary: dict) -> bool:
            ts = c.payload.get("timestamp", c.ts_ms)
            return norm_value(c.payload.get(value_field)) == norm_value(
                summary.get("valueCurrent")) and summary.get("timestampCurrent") in (
                None, ts)

        for name, idxs in by_name.items():
            summary = current.get(name)
            if summary is None:
                continue
            # the stream is ordered: the last call matching the server's current value
            # and time is where the run of calls stopped
            for i in reversed(idxs):
                if is_current(calls[i], summary):
                    for j in idxs:
                        if j <= i:
                            verdicts[j] = True
                    break
            else:
                # An earlier run may have sent this stream further than these calls (a
                # crashed run's batch, re-batched differently now): if the current value
                # is a later call's of that run, every call here was applied before it.
                last = calls[idxs[-1]]
                if any(is_current(rb.wire_times.stamp(c), summary)
                       for c in rb.history.sent_later(last, name_field, name)):
                    for j in idxs:
                        verdicts[j] = True
        return verdicts
    return check


def _output(rb: "ReadBack", calls: list[Call], key: str) -> list[bool]:
    have = rb.output_length(key)
    verdicts = []
    total = rb.history.output_length_before(calls[0])
    for call in calls:
        total += sum(len(line["output"]) for line in call.payload["outputLines"])
        verdicts.append(have >= total)
    return verdicts


def _html(rb: "ReadBack", calls: list[Call], key: str) -> list[bool]:
    data = rb.read("experiment/html", experimentKey=key) or {}
    server = data.get("html") or ""
    length = 0
    for _seq, _ts, text in rb.history.rows_before(calls[0], "log_html", lookback=None):
        p = json.loads(text)
        length = len(p["html"]) if p.get("override") else length + len(p["html"])
    verdicts = []
    for call in calls:
        p = call.payload
        if p.get("override"):
            length = len(p["html"])
            verdicts.append(server == p["html"])
        else:
            length += len(p["html"])
            verdicts.append(len(server) >= length)
    return verdicts


def _tags(rb: "ReadBack", calls: list[Call], key: str) -> list[bool]:
    data = rb.read("experiment/tags", experimentKey=key) or {}
    have = set(data.get("tags") or [])
    return [set(c.payload.get("addedTags") or []) <= have for c in calls]


def _blob_text(field: str):
    def check(rb: "ReadBack", calls: list[Call], key: str) -> list[bool]:
        data = rb.read(f"experiment/{'code' if field == 'code' else 'graph'}",
                        experimentKey=key) or {}
        text = rb.history.text_of(calls[-1].payload.get(field))
        return [data.get(field) == text] * len(calls)
    return check


def _fields_equal(path: str):
    def check(rb: "ReadBack", calls: list[Call], key: str) -> list[bool]:
        data = rb.read(path, experimentKey=key) or {}
        return [all(norm_value(data.get(k)) == norm_value(v)
                    for k, v in c.payload.items()) for c in calls]
    return check


def _metadata(predicate: Callable[[dict | None, dict], bool]):
    def check(rb: "ReadBack", calls: list[Call], key: str) -> list[bool]:
        data = rb.read("experiment/metadata", experimentKey=key)
        return [predicate(data, c.payload) for c in calls]
    return check


def _assets(rb: "ReadBack", calls: list[Call], key: str) -> list[bool]:
    data = rb.read("experiment/asset/list", experimentKey=key, type="all") or {}
    assets = data.get("assets") or []
    verdicts = []
    for call in calls:
        match = _asset_matcher(call)
        on_server = sum(1 for a in assets if match(a))
        before = 0
        for _seq, ts, text in rb.history.rows_before(call, call.endpoint, lookback=None):
            earlier = Call(0, call.endpoint, None, ts, text)
            if earlier.payload.get("overwrite") and earlier.payload.get("fileName") == \
                    call.payload.get("fileName"):
                before = 0  # an overwrite hides the earlier uploads of its name
            if _same_asset(earlier, call):
                before += 1
        if call.payload.get("overwrite"):
            verdicts.append(on_server >= 1)
        else:
            verdicts.append(on_server > before)
    return verdicts


def _asset_ids(rb: "ReadBack", calls: list[Call], key: str) -> list[bool | None]:
    """Calls that carry an ``assetId`` (made by the client) are found by it; others cannot
    be told apart (None: resent)."""
    data = rb.read("experiment/asset/list", experimentKey=key, type="all") or {}
    ids = {a.get("assetId") for a in data.get("assets") or []}
    return [None if not c.payload.get("assetId") else c.payload["assetId"] in ids
            for c in calls]


def _project(rb: "ReadBack", calls: list[Call], key: str | None) -> list[bool | None]:
    overrides = rb.overrides
    verdicts: list[bool | None] = []
    for call in calls:
        p = overrides.apply(ENDPOINTS[call.endpoint], call.payload)
        if call.endpoint == "project_create":
            verdicts.append(rb.project_id(p["workspaceName"], p["projectName"])
                            is not None)
        elif call.endpoint == "project_delete":
            verdicts.append(rb.project_id(p["workspaceName"], p["projectName"]) is None)
        elif call.endpoint == "project_update" and p.get("newProjectName") and \
                p.get("workspaceName"):
            verdicts.append(rb.project_id(p["workspaceName"], p["newProjectName"])
                            is not None)
        else:
            verdicts.append(None)
    return verdicts


def _same_asset(a: Call, b: Call) -> bool:
    pa, pb = a.payload, b.payload
    return (pa.get("fileName"), pa.get("step"), _blob_size(pa), pa.get("type")) == \
        (pb.get("fileName"), pb.get("step"), _blob_size(pb), pb.get("type"))


def _blob_size(p: dict) -> int | None:
    for field in ("file", "content"):
        ref = p.get(field)
        if isinstance(ref, dict) and "size" in ref:
            return int(ref["size"])
    return None


def _asset_matcher(call: Call) -> Callable[[dict], bool]:
    p = call.payload
    size = _blob_size(p)
    step = p.get("step")
    if call.endpoint == "upload_git_patch":
        return lambda a: a.get("type") == "git-patch" and a.get("fileSize") == size
    if call.endpoint == "upload_text_sample":
        return lambda a: (a.get("type") == "text-sample" and a.get("fileSize") == size
                          and a.get("step") == step)
    name = p.get("fileName")
    kind = p.get("type") or "asset"
    return lambda a: (a.get("fileName") == name and a.get("fileSize") == size
                      and a.get("step") == step and (a.get("type") or "asset") == kind)


def _times_match(data: dict | None, p: dict) -> bool:
    if not data:
        return False
    return all(data.get(k) == v for k, v in p.items() if k in ("startTimeMillis",
                                                                "endTimeMillis"))


NEEDS_NO_EXPERIMENT = frozenset({"project_create", "project_delete", "project_update"})


CHECKS: dict[str, Check | None] = {
    "log_metric": _metrics,
    "cpu_metrics": _samples,
    "ram_metrics": _samples,
    "load_metrics": _samples,
    "gpu_metrics": _samples,
    "log_parameter": _summaries("experiment/parameters", "parameterName",
                                         "parameterValue"),
    "log_other": _summaries("experiment/log-other", "key", "value"),
    "log_output": _output,
    "log_html": _html,
    "add_tags": _tags,
    "set_code": _blob_text("code"),
    "log_graph": _blob_text("graph"),
    "git_metadata": _fields_equal("experiment/git/metadata"),
    "system_details": _fields_equal("experiment/system-details"),
    "experiment_start_end_time": _metadata(_times_match),
    "experiment_archive": _metadata(lambda d, p: bool(d and d.get("archived"))),
    "experiment_delete": _metadata(lambda d, p: d is None),
    "experiment_restore": _metadata(
        lambda d, p: bool(d) and not d.get("archived")),
    "upload_asset": _assets,
    "upload_git_patch": _assets,
    "upload_text_sample": _assets,
    "project_create": _project,
    "project_delete": _project,
    "project_update": _project,
    # No read endpoint tells these apart; resending is harmless (the call is idempotent by
    # nature) and the stable Idempotency-Key covers servers that deduplicate.
    "experiment_stop": None,
    "experiment_keepalive": None,
    "project_symlink": None,
    "project_notes": None,
    "viz_store_save": None,
    # Decided by the sender itself (creation by client key, or a search of the project).
    "experiment_create": None,
    # A remote asset carries its client-made assetId: on the server's asset list or not.
    "clientlib_asset_upload": _asset_ids,
    # Set-style (the server keeps the last value or the set of them): resending is harmless.
    "experiment_dependencies": None,
    "experiment_file_path": None,
    "experiment_cloud_details": None,
    "clientlib_system_details": _fields_equal("experiment/system-details"),
    # No read endpoint lists remote models or registrations by their call; the SDK's
    # client-made assetIds make a remote model's resend land on the same assets.
    "clientlib_log_remote_model": None,
    "registry_model_item_create": None,
    # A 3D point cloud reads itself back, step by step (``points3d.Points3DSender``).
    "clientlib_points_3d": None,
}
