"""Readable views folded from the applied log: what an experiment and a project hold now.

The read endpoints (:mod:`comet_journal.emulator.reads`) and the state dump (``GET /emulator/state``) both
use these folds, so what a client reads back is exactly what the log says was applied. A
documented endpoint and its SDK twin (``log_metric`` and ``batch_metrics``, ...) fold into the
same series. Points without a timestamp get the time the emulator applied them, as Comet does.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
from typing import Any, Final, Iterable

from comet_journal.emulator.points import comet_text, points_of
from comet_journal.emulator.store import RUNNING, Store, now_ms

METRIC_ENDPOINTS: Final = ("log_metric", "batch_metrics")
# What the metric reads show: metrics, and system samples as their sys.* metrics.
METRIC_READ_ENDPOINTS: Final = METRIC_ENDPOINTS + ("cpu_metrics", "gpu_metrics", "ram_metrics",
                                                   "load_metrics")
PARAMETER_ENDPOINTS: Final = ("log_parameter", "batch_parameters", "delete_parameter")
OTHER_ENDPOINTS: Final = ("log_other",)
OUTPUT_ENDPOINTS: Final = ("log_output", "batch_output")
HTML_ENDPOINTS: Final = ("log_html",)
TAG_ENDPOINTS: Final = ("add_tags", "clientlib_add_tags", "delete_tags")
SYSTEM_DETAIL_ENDPOINTS: Final = ("system_details", "clientlib_system_details")
GIT_ENDPOINTS: Final = ("git_metadata",)
SYSTEM_METRIC_KINDS: Final = {"cpu_metrics": "cpu", "gpu_metrics": "gpu", "ram_metrics": "ram",
                              "load_metrics": "load"}
_DROPPED_FIELDS: Final = frozenset(("experimentKey", "apiKey", "api_key"))

# What Comet's system-details read returns; the SDK indexes it by these names. Lists are
# empty rather than null until something is logged.
SYSTEM_DETAIL_LISTS: Final = ("gpuStaticInfoList", "logAdditionalSystemInfoList",
                              "networkInterfaceIps", "osPackages", "installedPackages")
SYSTEM_DETAIL_KEYS: Final = (
    "user", "pythonVersion", "pythonVersionVerbose", "pid", "osType", "os", "osRelease", "ip",
    "hostname", "gpuStaticInfoList", "logAdditionalSystemInfoList", "systemMetricNames",
    "maxTotalMemory", "networkInterfaceIps", "command", "executable", "osPackages",
    "installedPackages", "totalRam", "machine", "processor", "env")


def _fields(row: sqlite3.Row) -> dict:
    return json.loads(row["fields"])


# --- series -------------------------------------------------------------------------------

def metric_points(rows: Iterable[sqlite3.Row]) -> list[dict]:
    """``{metricName, metricValue, step, epoch, context, timestamp}`` in apply order, folded
    from applied rows; system samples appear as their ``sys.*`` metrics
    (:func:`~comet_journal.emulator.points.system_sample_metrics`)."""
    return [p for row in rows for p in points_of(row["endpoint"], _fields(row), row["at_ms"])]


def parameter_points(rows: Iterable[sqlite3.Row]) -> list[dict]:
    """``{parameterName, parameterValue, step, timestamp, source, context}``; a
    ``delete_parameter`` removes every earlier point of its name."""
    points: list[dict] = []
    for row in rows:
        fields = _fields(row)
        if row["endpoint"] == "delete_parameter":
            points = [p for p in points if p["parameterName"] != fields["parameterName"]]
            continue
        items = fields["values"] if row["endpoint"] == "batch_parameters" else (fields,)
        for item in items:
            points.append({
                "parameterName": item["parameterName"],
                "parameterValue": item["parameterValue"], "step": item.get("step"),
                "timestamp": item.get("timestamp") or row["at_ms"],
                "source": item.get("source"), "context": item.get("context")})
    return points


def other_points(rows: Iterable[sqlite3.Row]) -> list[dict]:
    return [{"key": f["key"], "value": f["value"], "timestamp": f.get("timestamp") or r["at_ms"]}
            for r in rows for f in (_fields(r),)]


def output_lines(rows: Iterable[sqlite3.Row]) -> list[dict]:
    """``{output, stderr, offset, localTimestamp, context}`` in apply order."""
    lines = []
    for row in rows:
        fields = _fields(row)
        context = fields.get("runContext", fields.get("context"))
        for line in fields["outputLines"]:
            lines.append({"output": line["output"], "stderr": bool(line.get("stderr")),
                          "offset": line.get("offset"),
                          "localTimestamp": line.get("localTimestamp"), "context": context})
    return lines


def html_text(rows: Iterable[sqlite3.Row]) -> str:
    html = ""
    for row in rows:
        fields = _fields(row)
        html = fields["html"] if fields.get("override") else html + fields["html"]
    return html


def tags(rows: Iterable[sqlite3.Row]) -> list[str]:
    """Tags are a set in Comet: first-added order, deletions applied."""
    current: dict[str, None] = {}
    for row in rows:
        fields = _fields(row)
        if row["endpoint"] == "delete_tags":
            for tag in fields["tags"]:
                current.pop(tag, None)
        else:
            current.update(dict.fromkeys(fields.get("addedTags") or ()))
    return list(current)


def merged_fields(rows: Iterable[sqlite3.Row]) -> dict:
    """The fields of all rows merged, later values winning (system details, git, ...)."""
    merged: dict = {}
    for row in rows:
        merged.update({k: v for k, v in _fields(row).items() if k not in _DROPPED_FIELDS})
    return merged


def last_value(rows: Iterable[sqlite3.Row], name: str) -> Any:
    value = None
    for row in rows:
        value = _fields(row).get(name, value)
    return value


def system_metrics(rows: Iterable[sqlite3.Row]) -> dict[str, list]:
    samples: dict[str, list] = {kind: [] for kind in SYSTEM_METRIC_KINDS.values()}
    for row in rows:
        fields = {k: v for k, v in _fields(row).items() if k not in _DROPPED_FIELDS}
        fields.setdefault("timestamp", row["at_ms"])
        samples[SYSTEM_METRIC_KINDS[row["endpoint"]]].append(fields)
    return samples


# --- summaries (Comet's ``values`` rows) -----------------------------------------------------

def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def summaries(points: list[dict], name_key: str, value_key: str,
              with_steps: bool = True) -> list[dict]:
    """One summary per name: current (last logged), max and min with their time and step."""
    by_name: dict[str, list[dict]] = {}
    for point in points:
        by_name.setdefault(point[name_key], []).append(point)
    result = []
    for name, series in by_name.items():
        current = series[-1]
        numeric = [p for p in series if _number(p[value_key]) is not None
                   and not math.isnan(_number(p[value_key]))]
        high = max(numeric, key=lambda p: _number(p[value_key]), default=current)
        low = min(numeric, key=lambda p: _number(p[value_key]), default=current)
        summary = {"name": name,
                   "valueMax": comet_text(high[value_key]),
                   "valueMin": comet_text(low[value_key]),
                   "valueCurrent": comet_text(current[value_key]),
                   "timestampMax": high.get("timestamp"),
                   "timestampMin": low.get("timestamp"),
                   "timestampCurrent": current.get("timestamp")}
        if with_steps:
            summary.update(stepMax=high.get("step"), stepMin=low.get("step"),
                           stepCurrent=current.get("step"))
        result.append(summary)
    return result


# --- whole objects ------------------------------------------------------------------------------

def experiment_metadata(row: sqlite3.Row) -> dict:
    """Comet's ``experiment/metadata`` JSON for one experiments row."""
    start, end = row["start_ms"], row["end_ms"]
    running = row["state"] == RUNNING and end is None
    duration = ((end if end is not None else now_ms()) - start) if start is not None else 0
    file_path = row["file_path"]
    return {
        "experimentKey": row["key"], "experimentName": row["name"],
        "optimizationId": None, "projectId": row["project_id"],
        "projectName": row["project_name"], "workspaceName": row["workspace"],
        "durationMillis": max(duration, 0), "startTimeMillis": start, "endTimeMillis": end,
        "archived": bool(row["archived"]), "running": running, "hasCrashed": False,
        "filePath": file_path, "fileName": os.path.basename(file_path) if file_path else None,
        "throttle": False, "throttleMessage": None, "throttleReasons": [],
    }


def project_json(store: Store, conn: sqlite3.Connection, row: sqlite3.Row) -> dict:
    """Comet's project JSON (``projects`` and ``project`` reads)."""
    experiments = [e for e in store.experiments(conn, row["id"]) if not e["deleted"]]
    return {
        "projectId": row["id"], "projectName": row["name"], "workspaceName": row["workspace"],
        "workspaceId": row["workspace"], "ownerUserName": "emulator",
        "projectDescription": row["description"], "isPublic": bool(row["is_public"]),
        "numberOfExperiments": len(experiments), "lastUpdated": row["updated_ms"],
    }


def asset_json(row: sqlite3.Row, base_url: str) -> dict:
    """One entry of Comet's ``experiment/asset/list`` (no download command: it would hold
    the API key)."""
    link = (f"{base_url}/api/rest/v2/experiment/asset/get-asset?"
            f"experimentKey={row['experiment_key']}&assetId={row['asset_id']}")
    asset_type = row["type"] or "asset"
    return {
        "assetId": row["asset_id"], "fileName": row["file_name"], "fileSize": row["size"],
        "type": asset_type, "runContext": row["context"], "step": row["step"],
        "epoch": row["epoch"], "remote": row["link"] is not None,
        "link": row["link"] or link, "compressedAssetLink": link, "s3Link": None,
        "createdAt": row["created_ms"], "dir": "assets", "canView": False,
        "audio": asset_type == "audio", "video": asset_type == "video",
        "histogram": asset_type.startswith("histogram"), "image": asset_type == "image",
        "metadata": None if row["metadata"] is None else json.loads(row["metadata"]),
        "tags": [], "experimentKey": row["experiment_key"], "items": [], "etag": None,
    }


# A 3D asset's parts: rows of the container's id, listed inside it, not as assets.
POINTS_3D_PARTS = ("clientlib_asset_item", "clientlib_asset_thumbnail")


def listed_assets(rows: list[sqlite3.Row]) -> list[sqlite3.Row]:
    """The rows ``experiment/asset/list`` shows: all but a 3D asset's thumbnail and items."""
    return [r for r in rows if r["endpoint"] not in POINTS_3D_PARTS]


def points_3d(rows: list[sqlite3.Row]) -> list[dict]:
    """Each 3D asset with its thumbnail and items (the last upload of each item name wins,
    as a resend replaces it; ``uploads`` counts them)."""
    clouds = {r["asset_id"]: {"assetId": r["asset_id"], "name": r["file_name"],
                              "step": r["step"], "metadata": _json(r["metadata"]),
                              "thumbnail": None, "thumbnailUploads": 0, "items": {}}
              for r in rows if r["endpoint"] == "clientlib_asset_3d"}
    for r in rows:
        cloud = clouds.get(r["asset_id"])
        if cloud is None or r["endpoint"] not in POINTS_3D_PARTS:
            continue
        part = {"sha256": r["sha256"], "size": r["size"]}
        if r["endpoint"] == "clientlib_asset_thumbnail":
            cloud["thumbnail"] = part
            cloud["thumbnailUploads"] += 1
        else:
            uploads = cloud["items"].get(r["file_name"], {}).get("uploads", 0)
            cloud["items"][r["file_name"]] = {"type": r["type"], **part,
                                              "uploads": uploads + 1}
    return list(clouds.values())


def _json(text: str | None):
    return None if text is None else json.loads(text)


def visible_assets(rows: list[sqlite3.Row]) -> list[sqlite3.Row]:
    """Uploads minus those a later ``overwrite`` upload of the same file name replaced."""
    visible: list[sqlite3.Row] = []
    for row in rows:
        if row["overwrite"]:
            visible = [v for v in visible if v["file_name"] != row["file_name"]]
        visible.append(row)
    return visible


def _by_name(points: list[dict], name_key: str, keep: tuple[str, ...]) -> dict[str, list]:
    grouped: dict[str, list] = {}
    for p in points:
        grouped.setdefault(p[name_key], []).append({k: p[k] for k in keep})
    return grouped


def experiment_view(store: Store, conn: sqlite3.Connection, row: sqlite3.Row) -> dict:
    """Everything one experiment holds, for humans and tests (the state dump)."""
    rows = store.applied_rows(conn, row["key"])
    by_endpoint: dict[str, list] = {}
    for r in rows:
        by_endpoint.setdefault(r["endpoint"], []).append(r)

    def of(names: Iterable[str]) -> list:
        return sorted((r for n in names for r in by_endpoint.get(n, ())), key=lambda r: r["id"])

    metrics = metric_points(of(METRIC_ENDPOINTS))
    parameters = parameter_points(of(PARAMETER_ENDPOINTS))
    others = [{"key": p["key"], "value": p["value"], "timestamp": p["timestamp"]}
              for p in other_points(of(OTHER_ENDPOINTS))]
    status_reports = merged_fields(of(("experiment_update_status",)))
    return {
        "experimentKey": row["key"], "workspace": row["workspace"],
        "project": row["project_name"], "projectId": row["project_id"], "name": row["name"],
        "state": row["state"], "archived": bool(row["archived"]),
        "deleted": bool(row["deleted"]), "offline": bool(row["offline"]),
        "createdBy": row["created_by"], "runId": row["run_id"],
        "createdMs": row["created_ms"], "startTimeMillis": row["start_ms"],
        "endTimeMillis": row["end_ms"], "lastHeartbeatMs": row["last_heartbeat_ms"],
        "filePath": row["file_path"],
        "metrics": _by_name(metrics, "metricName",
                            ("metricValue", "step", "epoch", "context", "timestamp")),
        "parameters": _by_name(parameters, "parameterName",
                               ("parameterValue", "step", "timestamp", "source", "context")),
        "others": _by_name(others, "key", ("value", "timestamp")),
        "html": html_text(of(HTML_ENDPOINTS)),
        "code": last_value(of(("set_code",)), "code"),
        "graph": last_value(of(("log_graph",)), "graph"),
        "tags": tags(of(TAG_ENDPOINTS)),
        "output": output_lines(of(OUTPUT_ENDPOINTS)),
        "systemDetails": merged_fields(of(SYSTEM_DETAIL_ENDPOINTS)),
        "git": merged_fields(of(GIT_ENDPOINTS)) or None,
        "systemMetrics": system_metrics(of(SYSTEM_METRIC_KINDS)),
        "dependencies": [d for r in of(("experiment_dependencies",))
                         for d in _fields(r)["logDependencies"]],
        "cloudDetails": merged_fields(of(("experiment_cloud_details",))) or None,
        "remoteModels": [{"modelName": f["modelName"], "remoteEntities": f.get(
            "remoteEntities") or []} for f in map(_fields, of(("clientlib_log_remote_model",)))],
        "registeredModels": [_fields(r) for r in of(("registry_model_item_create",))],
        "statusReport": status_reports or None,
        "symlinks": [_fields(r)["projectName"] for r in of(("project_symlink",))],
        "assets": [_asset_view(a) for a in store.assets(conn, row["key"])],
        "points3d": points_3d(store.assets(conn, row["key"])),
    }


def _asset_view(row: sqlite3.Row) -> dict:
    return {
        "assetId": row["asset_id"], "endpoint": row["endpoint"], "fileName": row["file_name"],
        "extension": row["extension"], "type": row["type"], "step": row["step"],
        "epoch": row["epoch"], "context": row["context"],
        "overwrite": None if row["overwrite"] is None else bool(row["overwrite"]),
        "metadata": None if row["metadata"] is None else json.loads(row["metadata"]),
        "sha256": row["sha256"], "size": row["size"], "link": row["link"],
    }


def project_view(store: Store, conn: sqlite3.Connection, row: sqlite3.Row) -> dict:
    stores = {}
    for r in store.applied_rows(conn, None, ("viz_store_save",)):
        fields = _fields(r)
        if fields["projectId"] == row["id"]:
            stores[fields["instanceId"]] = fields["store"]
    return {
        "projectId": row["id"], "workspace": row["workspace"], "projectName": row["name"],
        "description": row["description"], "isPublic": bool(row["is_public"]),
        "notes": row["notes"], "deleted": bool(row["deleted"]),
        "createdMs": row["created_ms"], "vizStores": stores,
        "experiments": [e["key"] for e in store.experiments(conn, row["id"])],
    }


def state_summary(store: Store, conn: sqlite3.Connection) -> dict:
    """Counts instead of contents (``GET /emulator/state?summary=1``): usable whatever the
    size of the server. Per experiment: its lifecycle, metric points per name, and applied
    requests per endpoint; in all: applied requests per endpoint."""
    by_experiment: dict[str | None, dict[str, int]] = {}
    for key, endpoint, n in conn.execute("SELECT experiment_key, endpoint, count(*) FROM "
                                         "applied GROUP BY experiment_key, endpoint"):
        by_experiment.setdefault(key, {})[endpoint] = n
    experiments = {}
    for row in store.experiments(conn):
        experiments[row["key"]] = {
            "name": row["name"], "project": row["project_name"], "state": row["state"],
            "archived": bool(row["archived"]), "deleted": bool(row["deleted"]),
            "metricPoints": store.metric_counts(conn, row["key"]),
            "applied": by_experiment.get(row["key"], {})}
    totals: dict[str, int] = {}
    for counts in by_experiment.values():
        for endpoint, n in counts.items():
            totals[endpoint] = totals.get(endpoint, 0) + n
    return {"summary": True, "applied": totals, "experiments": experiments}
