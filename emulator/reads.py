"""REST v2 read endpoints: enough for a client to read back what it wrote.

Same paths and response shapes as Comet's (as the official ``comet_ml`` ``API`` and
``APIExperiment`` read them: ``comet_ml/api.py`` and ``connection/connection_api.py``):
experiment metadata, metrics (one, all, summaries), parameters, others, output, html, code,
graph, tags, system details, git metadata and patch, assets (list and bytes), and the
workspace/project/experiment listings. Values read back as Comet shows them: metric and
parameter values as text. An unknown or deleted experiment is a 404, as on newer Comets.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any, Callable, Final, Iterable

from comet_journal.emulator import views
from comet_journal.emulator.errors import EXPERIMENT_NOT_FOUND, bad_request, not_found
from comet_journal.emulator.store import Store
from comet_journal.emulator.wire import BINARY_TYPE, JSON_TYPE, Response

READ_PREFIX: Final = "read:"  # read routes are named "read:<path after /api/rest/v2/>"


@dataclass
class ReadContext:
    store: Store
    conn: sqlite3.Connection
    query: dict[str, str]
    base_url: str
    default_workspace: str

    def param(self, name: str) -> str:
        value = self.query.get(name)
        if not value:
            raise bad_request(f"query parameter {name} is required")
        return value

    def experiment(self) -> sqlite3.Row:
        key = self.param("experimentKey")
        row = self.store.experiment(self.conn, key)
        if row is None or row["deleted"]:
            raise not_found(f"unknown experiment key {key!r}", EXPERIMENT_NOT_FOUND)
        return row

    def rows(self, endpoints) -> list[sqlite3.Row]:
        return self.store.applied_rows(self.conn, self.experiment()["key"], endpoints)

    def project(self) -> sqlite3.Row:
        if self.query.get("projectId"):
            row = self.store.project(self.conn, self.query["projectId"])
        else:
            row = self.store.project_named(
                self.conn, self.query.get("workspaceName") or self.default_workspace,
                self.param("projectName"))
        if row is None:
            raise not_found("unknown project")
        return row


Reader = Callable[[ReadContext], Any]
READERS: dict[str, Reader] = {}


def reader(path: str) -> Callable[[Reader], Reader]:
    def register(fn: Reader) -> Reader:
        READERS[path] = fn
        return fn
    return register


# --- account, workspaces, projects --------------------------------------------------------

@reader("account-details")
def _account(ctx: ReadContext) -> dict:
    return {"userName": "emulator", "defaultWorkspaceName": ctx.default_workspace}


@reader("workspaces")
def _workspaces(ctx: ReadContext) -> dict:
    names = {ctx.default_workspace} | {p["workspace"] for p in ctx.store.projects(ctx.conn)}
    return {"workspaceNames": sorted(names)}


@reader("projects")
def _projects(ctx: ReadContext) -> dict:
    workspace = ctx.query.get("workspaceName") or ctx.default_workspace
    return {"projects": [views.project_json(ctx.store, ctx.conn, row)
                         for row in ctx.store.projects(ctx.conn, workspace)]}


@reader("project")
def _project(ctx: ReadContext) -> dict:
    return views.project_json(ctx.store, ctx.conn, ctx.project())


@reader("project/notes")
def _project_notes(ctx: ReadContext) -> dict:
    return {"notes": ctx.project()["notes"]}


@reader("experiments")
def _experiments(ctx: ReadContext) -> dict:
    archived = (ctx.query.get("archived") or "false").lower() == "true"
    rows = ctx.store.experiments(ctx.conn, ctx.project()["id"])
    return {"experiments": [views.experiment_metadata(r) for r in rows
                            if not r["deleted"] and bool(r["archived"]) == archived]}


# --- one experiment ---------------------------------------------------------------------------

@reader("experiment/metadata")
def _metadata(ctx: ReadContext) -> dict:
    return views.experiment_metadata(ctx.experiment())


def _metric_json(points: Iterable[dict]) -> list[dict]:
    return [{"metricName": p["metricName"], "metricValue": views.comet_text(p["metricValue"]),
             "timestamp": p["timestamp"], "step": p["step"], "epoch": p["epoch"],
             "runContext": p["context"], "offset": offset}
            for offset, p in enumerate(points)]


@reader("experiment/metrics/get-metric")
def _metric(ctx: ReadContext) -> Response:
    name = ctx.param("metricName")
    key = ctx.experiment()["key"]
    # streamed: the answer is written a page at a time, never held whole (a 10M-point
    # series is about 1.5 GB of JSON)
    return Response(200, content_type=JSON_TYPE, stream=ctx.store.series_pieces(key, name))


@reader("experiment/metrics/get-all")
def _all_metrics(ctx: ReadContext) -> dict:
    key = ctx.experiment()["key"]
    return {"experimentKey": key,
            "metrics": _metric_json(ctx.store.metric_points(ctx.conn, key))}


@reader("experiment/metrics/summary")
def _metrics_summary(ctx: ReadContext) -> dict:
    points = list(ctx.store.metric_points(ctx.conn, ctx.experiment()["key"]))
    return {"values": views.summaries(points, "metricName", "metricValue")}


@reader("experiment/parameters")
def _parameters(ctx: ReadContext) -> dict:
    points = views.parameter_points(ctx.rows(views.PARAMETER_ENDPOINTS))
    values = views.summaries(points, "parameterName", "parameterValue")
    for summary in values:
        summary["editable"] = False
    return {"values": values}


@reader("experiment/log-other")
def _others(ctx: ReadContext) -> dict:
    points = views.other_points(ctx.rows(views.OTHER_ENDPOINTS))
    return {"values": views.summaries(points, "key", "value", with_steps=False)}


@reader("experiment/output")
def _output(ctx: ReadContext) -> dict:
    lines = views.output_lines(ctx.rows(views.OUTPUT_ENDPOINTS))
    return {"output": "".join(line["output"] for line in lines)}


@reader("experiment/html")
def _html(ctx: ReadContext) -> dict:
    return {"html": views.html_text(ctx.rows(views.HTML_ENDPOINTS))}


@reader("experiment/code")
def _code(ctx: ReadContext) -> dict:
    return {"code": views.last_value(ctx.rows(("set_code",)), "code")}


@reader("experiment/graph")
def _graph(ctx: ReadContext) -> dict:
    return {"graph": views.last_value(ctx.rows(("log_graph",)), "graph")}


@reader("experiment/tags")
def _tags(ctx: ReadContext) -> dict:
    return {"tags": views.tags(ctx.rows(views.TAG_ENDPOINTS))}


@reader("experiment/system-details")
def _system_details(ctx: ReadContext) -> dict:
    key = ctx.experiment()["key"]
    merged = views.merged_fields(ctx.rows(views.SYSTEM_DETAIL_ENDPOINTS))
    details: dict[str, Any] = {name: [] if name in views.SYSTEM_DETAIL_LISTS else None
                               for name in views.SYSTEM_DETAIL_KEYS}
    details.update(merged)
    details["experimentKey"] = key
    details["systemMetricNames"] = sorted(
        name for name in ctx.store.metric_counts(ctx.conn, key) if name.startswith("sys."))
    return details


@reader("experiment/git/metadata")
def _git_metadata(ctx: ReadContext) -> dict:
    merged = views.merged_fields(ctx.rows(views.GIT_ENDPOINTS))
    return {name: merged.get(name) for name in ("user", "root", "branch", "parent", "origin")}


@reader("experiment/git/patch")
def _git_patch(ctx: ReadContext) -> Any:
    patches = [a for a in ctx.store.assets(ctx.conn, ctx.experiment()["key"])
               if a["type"] == "git-patch"]
    data = ctx.store.asset_data(ctx.conn, patches[-1]["sha256"]) if patches else None
    if data is None:  # the SDK reads a JSON "msg" body as "no patch"
        return {"msg": "No git patch for this experiment"}
    return Response(200, data, BINARY_TYPE)


# --- assets ------------------------------------------------------------------------------------

def _asset_rows(ctx: ReadContext) -> list[sqlite3.Row]:
    rows = views.visible_assets(views.listed_assets(
        ctx.store.assets(ctx.conn, ctx.experiment()["key"])))
    wanted = ctx.query.get("type")
    if wanted and wanted != "all":
        rows = [r for r in rows if (r["type"] or "asset") == wanted]
    return rows


@reader("experiment/asset/list")
def _asset_list(ctx: ReadContext) -> dict:
    return {"assets": [views.asset_json(r, ctx.base_url) for r in _asset_rows(ctx)]}


@reader("experiment/asset/get-by-name")
def _asset_by_name(ctx: ReadContext) -> dict:
    name = ctx.param("assetName")
    return {"assets": [views.asset_json(r, ctx.base_url) for r in _asset_rows(ctx)
                       if r["file_name"] == name]}


@reader("experiment/asset/get-asset")
def _asset_bytes(ctx: ReadContext) -> Response:
    asset_id = ctx.param("assetId")
    rows = [r for r in ctx.store.assets(ctx.conn, ctx.experiment()["key"])
            if r["asset_id"] == asset_id]
    if not rows:
        raise not_found(f"unknown assetId {asset_id!r}")
    data = ctx.store.asset_data(ctx.conn, rows[-1]["sha256"]) if rows[-1]["sha256"] else None
    if data is None:
        raise not_found(f"asset {asset_id} has no stored bytes (the emulator keeps only "
                        "hashes, or it is a remote asset)")
    return Response(200, data, BINARY_TYPE)


def handle_read(path: str, ctx: ReadContext) -> Response | Any:
    return READERS[path](ctx)
