"""Does the server hold exactly what the journals hold? (For tests, the chaos soak, users.)

Both sides are reduced to *items*: one per metric point, parameter value, output line and
other call, keyed by the experiment's key on the server (the uploader records it in the
journal). Comparing two multisets of items says what is missing and what is duplicated;
comparing the order of the *ordered* items (everything but metric points, output lines and
system samples, which carry their own position) per experiment says what was applied out of
order. The server side is the emulator's ``state()["applied"]``, in apply order.

Example::

    report = compare([journal_path], emulator.state())
    assert report.ok, report.describe()
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from comet_journal.schema.blobs import is_blob_ref, read_blob
from comet_journal.schema.catalogue import ENDPOINTS, POINTS_3D, POINTS_3D_ITEMS
from comet_journal.schema.ordering import BARRIER, ORDERING
from comet_journal.schema.wire_times import STAMPED, StreamClock

# What a journal call or an applied request becomes (endpoint -> kind of item).
POSITIONED_KINDS = frozenset({"metric", "output", "cpu_metrics", "ram_metrics", "load_metrics",
                              "gpu_metrics", "experiment_keepalive"})
_ASSETS = ("upload_asset", "upload_git_patch", "upload_text_sample")
_POINTS_3D_PARTS = ("clientlib_asset_item", "clientlib_asset_thumbnail")
_IGNORED_FIELDS = {"experimentKey", "experimentId", "apiKey"}  # (the server key)
_TIMESTAMPED = frozenset(e.name for e in ENDPOINTS.values()
                         if any(f.name == "timestamp" for f in e.fields))


def _canon(value) -> str:
    return json.dumps(value, sort_keys=True)


def _metric(key, p, ts):
    return (key, "metric", p["metricName"], _canon(p["metricValue"]), p.get("step"),
            p.get("epoch"), p.get("context"), p.get("timestamp", ts))


def _param(key, p, ts):
    return (key, "param", p["parameterName"], _canon(p["parameterValue"]), p.get("step"),
            p.get("timestamp", ts))


def _line(key, line):
    return (key, "output", line["output"], bool(line.get("stderr")), line.get("offset"),
            line.get("localTimestamp"))


def server_keys(conn: sqlite3.Connection) -> dict[int, str]:
    """Journal experiment id -> its key on the server (its first upload target)."""
    try:
        return dict(conn.execute("SELECT experiment_id, server_key FROM upload_experiments "
                                 "WHERE server_key IS NOT NULL ORDER BY target_id DESC"))
    except sqlite3.OperationalError:
        return {}


def journal_item_list(path: str, state_dir: str | None = None) -> list[tuple]:
    """The items of one journal, in journal order (server keys from the uploader's state
    database in ``state_dir``, default ``default_state_dir()``)."""
    from comet_journal.uploader.journal.dir_status import uploaded_path
    from comet_journal.uploader.journal.progress_store import open_progress_view
    conn = open_progress_view(path, state_dir)
    out: list[tuple] = []
    try:
        keys = server_keys(conn)
        uploaded = uploaded_path(path, state_dir)  # a sealed run: its private copy's keys
        if uploaded != path:
            view = open_progress_view(uploaded, state_dir)
            try:
                keys = {**keys, **server_keys(view)}
            finally:
                view.close()
        clocks: dict[tuple, StreamClock] = {}  # the uploader's wire times (schema.wire_times)
        for _seq, endpoint, exp_id, ts, text in conn.execute(
                "SELECT seq, endpoint, experiment_id, ts_ms, payload FROM calls ORDER BY seq"):
            p = json.loads(text)
            key = keys.get(exp_id)
            if endpoint in STAMPED:
                clock = clocks.setdefault((exp_id, endpoint), StreamClock(STAMPED[endpoint]))
                ts = clock.next(p, ts)
                if "timestamp" in p:
                    p["timestamp"] = ts
            if endpoint == "experiment_create":
                out.append((key, "create"))
                if p.get("experimentName"):
                    out.append((key, "name", p["experimentName"]))
            elif endpoint == "log_metric":
                out.append(_metric(key, p, ts))
            elif endpoint == POINTS_3D:
                out.extend(_journal_cloud(key, p))
            elif endpoint == "log_parameter":
                out.append(_param(key, p, ts))
            elif endpoint == "log_output":
                out.extend(_line(key, line) for line in p["outputLines"])
            elif endpoint in _ASSETS:
                ref = p.get("file") or p.get("content")
                out.append((key, endpoint, p.get("fileName"), p.get("step"), ref["size"]))
            else:
                fields = {k: (read_blob(conn, v["$blob"]).decode() if is_blob_ref(v) else v)
                          for k, v in p.items()}
                if endpoint in _TIMESTAMPED and "timestamp" not in fields:
                    fields["timestamp"] = ts  # the uploader sends the call's journal time
                if endpoint in ("log_other", "log_html"):
                    fields.pop("timestamp", None)
                out.append((key, endpoint, _canon({k: v for k, v in fields.items()
                                                   if not isinstance(v, dict)})))
    finally:
        conn.close()
    return out


def applied_item_list(state: dict) -> list[tuple]:
    """The items the server applied, in apply order (the daemon's own keep-alive beats,
    which carry no Idempotency-Key and belong to no journal, are left out)."""
    out: list[tuple] = []
    clouds: Counter = Counter()  # 3D assets met so far, per experiment
    for a in state["applied"]:
        ep, key, f = a["endpoint"], a["experimentKey"], dict(a["fields"])
        if ep == "experiment_keepalive" and a.get("idempotencyKey") is None:
            continue
        if ep in ("experiment_create", "clientlib_add_run"):
            out.append((key, "create"))
            if f.get("experimentName"):
                out.append((key, "name", f["experimentName"]))
        elif ep == "log_other" and f.get("key") == "Name":
            out.append((key, "name", f["value"]))
        elif ep == "log_other" and f.get("key") == "comet-journal client key":
            continue  # the uploader's adoption mark (uploader/send/create.py), no call's
        elif ep == "log_metric":
            out.append(_metric(key, f, None))
        elif ep == "batch_metrics":
            out.extend(_metric(key, v, None) for v in f["values"])
        elif ep == "log_parameter":
            out.append(_param(key, f, None))
        elif ep == "batch_parameters":
            out.extend(_param(key, v, None) for v in f["values"])
        elif ep in ("log_output", "batch_output"):
            out.extend(_line(key, line) for line in f["outputLines"])
        elif ep == "clientlib_asset_3d":
            out.extend(_server_cloud(key, f, state, clouds))
        elif ep in _POINTS_3D_PARTS:
            continue  # compared through the cloud's parts (the state's view)
        elif ep in _ASSETS:
            size = f["file"]["size"] if "file" in f else len(f["content"].encode())
            out.append((key, ep, f.get("fileName"), f.get("step"), size))
        else:
            rest = {k: v for k, v in f.items()
                    if k not in _IGNORED_FIELDS and not isinstance(v, dict)}
            if ep in ("log_other", "log_html"):
                rest.pop("timestamp", None)
            out.append((key, ep, _canon(rest)))
    return out


def _journal_cloud(key, p: dict) -> list[tuple]:
    """A 3D point cloud: its container, then each part (thumbnail, items) by size."""
    parts = [(key, "points3d_part", p["userFileName"], p.get("step"), name, p[field]["size"])
             for field, name in (("thumbnail", "thumbnail"), *POINTS_3D_ITEMS.items())
             if is_blob_ref(p.get(field))]
    return [(key, "points3d", p["userFileName"], p.get("step"),
             _canon(p.get("metadata")))] + parts


def _server_cloud(key, f: dict, state: dict, clouds: Counter) -> list[tuple]:
    """An applied container and the parts the server holds in it (a resent part replaces
    its earlier upload: one part each)."""
    index = clouds[key]
    clouds[key] += 1
    out = [(key, "points3d", f.get("userFileName"), f.get("step"), _canon(f.get("metadata")))]
    views = (state.get("experiments", {}).get(key) or {}).get("points3d") or []
    if index < len(views):
        cloud = views[index]
        parts = [("thumbnail", cloud["thumbnail"])] if cloud["thumbnail"] else []
        parts += list(cloud["items"].items())
        out += [(key, "points3d_part", cloud["name"], cloud["step"], name, part["size"])
                for name, part in parts]
    return out


def _kind(item: tuple) -> str:
    return item[1] if len(item) > 1 else ""


@dataclass
class Comparison:
    journaled: int = 0
    on_server: int = 0
    missing: Counter = field(default_factory=Counter)
    duplicated: Counter = field(default_factory=Counter)
    out_of_order: int = 0
    out_of_order_examples: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missing and not self.duplicated and not self.out_of_order

    def describe(self, limit: int = 5) -> str:
        return (f"{self.journaled} journaled, {self.on_server} on the server, "
                f"{sum(self.missing.values())} missing {list(self.missing)[:limit]}, "
                f"{sum(self.duplicated.values())} duplicated {list(self.duplicated)[:limit]}, "
                f"{self.out_of_order} out of order {self.out_of_order_examples[:limit]}")


# Calls with set semantics, compared by their effect: adding a tag the experiment already has,
# or one more keep-alive, changes nothing on the server, so a repeated one is no duplicate,
# and a read-back cannot (and need not) tell one such call from an identical earlier one.
SET_SEMANTICS = frozenset({"add_tags", "experiment_keepalive"})


def _effects(items) -> Counter:
    out: Counter = Counter()
    for item in items:
        kind = _kind(item)
        if kind == "add_tags":
            for tag in json.loads(item[2]).get("addedTags", []):
                out[(item[0], "tag", tag)] = 1
        elif kind in SET_SEMANTICS:
            out[(item[0], kind)] = 1
        else:
            out[item] += 1
    return out


def compare(journal_paths: list[str], state: dict) -> Comparison:
    """Compare journals with the server's applied log: missing, duplicated, out of order."""
    journal_lists = [journal_item_list(str(p)) for p in journal_paths]
    want = _effects(item for items in journal_lists for item in items)
    applied = applied_item_list(state)
    have = _effects(applied)
    result = Comparison(journaled=sum(want.values()), on_server=sum(have.values()),
                        missing=want - have, duplicated=have - want)
    _check_order(journal_lists, applied, result)
    return result


_BARRIERS = frozenset(name for name, order in ORDERING.items() if order.kind == BARRIER)


def _stream(item: tuple):
    """The ordered stream an item belongs to (None: it carries its own position).

    Order matters within a stream: the values of one parameter or 'other', the html
    appends, the tag additions, code, graph, ... Independent streams may interleave.
    """
    kind = _kind(item)
    if kind in POSITIONED_KINDS or kind in SET_SEMANTICS or kind in ("create", "name"):
        return None
    if kind == "param":
        return (item[0], kind, item[2])
    if kind == "log_other":
        return (item[0], kind, json.loads(item[2]).get("key"))
    if kind in _ASSETS or kind == "points3d":
        return (item[0], kind, item[2])
    if kind == "points3d_part":
        return None
    return (item[0], kind)


def _check_order(journal_lists: list[list[tuple]], applied: list[tuple],
                 result: Comparison) -> None:
    """Per stream, the server applied items in journal order; an experiment's creation came
    first; a lifecycle barrier (stop/archive/delete/restore) came after everything journaled
    before it and before everything journaled after it."""
    journal_index: dict[tuple, list[int]] = defaultdict(list)
    for items in journal_lists:
        for index, item in enumerate(items):
            journal_index[item].append(index)
    seen: Counter = Counter()
    placed: list[tuple[int, tuple]] = []  # (journal index, item) in apply order
    for item in applied:
        occurrence = seen[item]
        seen[item] += 1
        indices = journal_index.get(item)
        if indices and occurrence < len(indices):
            placed.append((indices[occurrence], item))

    def flag(before, after):
        result.out_of_order += 1
        result.out_of_order_examples.append((before, after))

    last_in_stream: dict = {}
    created: set = set()
    for index, item in placed:
        key = item[0]
        if _kind(item) == "create":
            created.add(key)
        elif key not in created and _kind(item) != "name":
            flag(("create", key), item)
            created.add(key)  # report once per experiment
        stream = _stream(item)
        if stream is None:
            continue
        previous = last_in_stream.get(stream)
        if previous is not None and index < previous[0]:
            flag(previous[1], item)
        last_in_stream[stream] = (max(index, previous[0]) if previous else index, item)
    apply_pos = {}
    for pos, (index, item) in enumerate(placed):
        apply_pos.setdefault((item[0], index), pos)
    for pos, (index, item) in enumerate(placed):
        if _kind(item) not in _BARRIERS:
            continue
        for other_pos, (other_index, other) in enumerate(placed):
            if other[0] != item[0] or other is item:
                continue
            if (other_index < index) != (other_pos < pos):
                flag(item, other)
                break
