"""Appliers and probes for the official SDK's own routes (``/clientlib/...``).

These are what ``Experiment`` and ``comet upload`` really use (comet-wire.md sections 0, 2.2,
3 and 5.2): creation with the client's own key (``logger/add/run``, answering 90999 "already
exists" for a key the server has), heartbeats whose answer the SDK requires, bulk metric and
parameter batches, multipart asset uploads, and a few probes. The routes themselves are
catalogue entries (``schema.catalogue.SDK_ENDPOINTS``, all ``documented=False``); an
emulator started with ``clientlib=False`` answers 404 to all of them.
"""

from __future__ import annotations

import json
from typing import Any, Final

from comet_journal.emulator import errors
from comet_journal.emulator.errors import ApiError, bad_request, unknown_experiment
from comet_journal.emulator.store import ENDED, new_id, now_ms
from comet_journal.emulator.views import OUTPUT_ENDPOINTS, output_lines
from comet_journal.emulator.writes import WriteContext, applier, project_for, store_upload

# Reported by isAlive/ver. High enough for every REST v2 feature the SDK's API reads use
# (get-all metrics needs 3.20.60), low enough that the SDK skips routes the emulator does not
# serve (mark-not-throttled from 4.7.416, asset get-by-name is preferred from 4.3.385).
BACKEND_VERSION: Final = "3.40.0"
DEFAULT_PROJECT: Final = "general"  # Comet's project for experiments created without one

# Probes answer without touching the state, and are not recorded as applied writes.
PROBES: Final = {
    "clientlib_is_alive": lambda: {"version": BACKEND_VERSION},
    "clientlib_health_ping": dict,
    "clientlib_3d_limits": dict,
    "clientlib_notification": dict,
    "clientlib_notify_event": dict,
}
# Probes any client may call without an API key (as on Comet).
OPEN_PROBES: Final = frozenset(("clientlib_is_alive", "clientlib_health_ping"))


def _valid_client_key(key: str) -> bool:
    """Comet's rule for a client-chosen experiment key (comet-wire.md section 4)."""
    return key.isalnum() and 32 <= len(key) <= 50


def _handshake(ctx: WriteContext, key: str) -> dict:
    row = ctx.store.experiment(ctx.conn, key)
    last_offset = max((line["offset"] or 0 for line in output_lines(
        ctx.store.applied_rows(ctx.conn, key, OUTPUT_ENDPOINTS))), default=-1) + 1
    return ctx.response(
        runId=row["run_id"], project_id=row["project_id"], experimentKey=key,
        # the SDK appends the key to focusUrl itself
        focusUrl=ctx.link(row["workspace"], row["project_name"], ""), lastOffset=last_offset,
        name=row["name"], githubEnabled=False)


@applier("clientlib_add_run")
def _add_run(ctx: WriteContext) -> dict:
    key = ctx.values["experimentKey"]
    if not _valid_client_key(key):
        raise bad_request(f"invalid experiment key {key!r}: it must be 32 to 50 letters and "
                          "digits")
    existing = ctx.store.experiment(ctx.conn, key)
    if existing is not None:
        if ctx.values.get("getOrCreateEnabled"):
            ctx.experiment = existing
            return _handshake(ctx, key)
        raise bad_request(f"experiment {key} already exists",
                          errors.EXPERIMENT_ALREADY_EXISTS)
    project_id = project_for(ctx, ctx.values.get("teamName"),
                             ctx.values.get("projectName") or DEFAULT_PROJECT)
    ctx.store.create_experiment(ctx.conn, key, project_id, None, ctx.endpoint.name,
                                offline=bool(ctx.values.get("offline")))
    return _handshake(ctx, key)


@applier("clientlib_get_run", recorded=False)
def _get_run(ctx: WriteContext) -> dict:
    # _check_experiment already refused an unknown ``previousExperiment`` with 90210
    return _handshake(ctx, ctx.experiment_key)


def _end(ctx: WriteContext) -> dict:
    return {"state": ENDED, "end_ms": ctx.experiment["end_ms"] or now_ms()}


@applier("status_report_update")
def _status_report_update(ctx: WriteContext) -> dict:
    changes: dict[str, Any] = {"last_heartbeat_ms": now_ms()}
    if ctx.values.get("is_alive") is False:
        changes.update(_end(ctx))
    if ctx.values.get("offline"):
        changes["offline"] = 1
    ctx.store.update_experiment(ctx.conn, ctx.experiment_key, **changes)
    return ctx.response()


@applier("status_report_offline_metadata")
def _offline_metadata(ctx: WriteContext) -> dict:
    changes: dict[str, Any] = {}
    if ctx.values.get("startTimestamp") is not None:
        changes["start_ms"] = ctx.values["startTimestamp"]
    if ctx.values.get("endTimestamp") is not None:
        changes["end_ms"] = ctx.values["endTimestamp"]
        changes["state"] = ENDED
    if changes:
        ctx.store.update_experiment(ctx.conn, ctx.experiment_key, **changes)
    return ctx.response()


@applier("experiment_update_status")
def _update_status(ctx: WriteContext) -> dict:
    if ctx.values.get("isAlive") is False:
        ctx.store.update_experiment(ctx.conn, ctx.experiment_key, **_end(ctx))
    return ctx.response()


@applier("experiment_file_path")
def _file_path(ctx: WriteContext) -> dict:
    ctx.store.update_experiment(ctx.conn, ctx.experiment_key, file_path=ctx.values["filePath"])
    return ctx.response()


# --- uploads ----------------------------------------------------------------------------------

_UPLOAD_TYPES: Final = {"clientlib_git_patch_upload": "git-patch",
                        "clientlib_visualization_upload": "visualization"}


@applier("clientlib_asset_upload", "clientlib_git_patch_upload", "clientlib_visualization_upload")
def _asset_upload(ctx: WriteContext) -> dict:
    file = ctx.files.get("file")
    link = ctx.values.get("link")
    if file is None and not isinstance(link, str):
        raise bad_request(f"{ctx.endpoint.name}: a 'file' part (or a 'link' part for a remote "
                          "asset) is required")
    asset_type = ctx.values.get("type") or _UPLOAD_TYPES.get(ctx.endpoint.name)
    asset_id = store_upload(ctx, data=file.data if file else None,
                            asset_id=ctx.values.get("assetId"), asset_type=asset_type,
                            link=None if file else link)
    link_to = f"{ctx.base_url}/api/rest/v2/experiment/asset/get-asset?" \
              f"experimentKey={ctx.experiment_key}&assetId={asset_id}"
    return {"assetId": asset_id, "web": link_to, "api": link_to}


@applier("clientlib_asset_3d")
def _asset_3d(ctx: WriteContext) -> dict:
    """A 3D point cloud's container: an asset of its own, filled by the two routes below."""
    asset_id = store_upload(ctx, data=None, asset_id=new_id(),
                            file_name=ctx.values.get("userFileName"),
                            asset_type=ctx.values.get("assetType") or "3d-image")
    return ctx.response(assetId=asset_id)


@applier("clientlib_asset_item", "clientlib_asset_thumbnail")
def _asset_item(ctx: WriteContext) -> dict:
    """The experiment travels inside the ``requestParams`` part (JSON); the container's id
    too for an item (in the path for a thumbnail). Stored as a row of the container's id."""
    try:
        params = json.loads(ctx.values["requestParams"])
    except ValueError:
        raise bad_request(f"{ctx.endpoint.name}: requestParams is not JSON") from None
    params = params if isinstance(params, dict) else {}
    key = params.get("experimentKey")
    if key is not None:
        row = ctx.store.experiment(ctx.conn, key)
        if row is None or row["deleted"]:
            raise unknown_experiment(key)
        ctx.experiment_key = key
    asset_id = ctx.values.get("assetId") or params.get("assetId")
    if ctx.experiment_key is None or not isinstance(asset_id, str):
        return ctx.response()  # nothing to attach it to (the SDK's probes of the route)
    if not any(a["asset_id"] == asset_id and a["endpoint"] == "clientlib_asset_3d"
               for a in ctx.store.assets(ctx.conn, ctx.experiment_key)):
        raise bad_request(f"{ctx.endpoint.name}: no 3D asset {asset_id!r} in experiment "
                          f"{ctx.experiment_key}")
    thumbnail = ctx.endpoint.name == "clientlib_asset_thumbnail"
    file = ctx.files.get("thumbnail" if thumbnail else "assetItemContent")
    store_upload(ctx, data=file.data if file else None, asset_id=asset_id,
                 file_name="thumbnail" + (params.get("thumbnailExtension") or "")
                 if thumbnail else params.get("userFileName"),
                 asset_type="3d-thumbnail" if thumbnail else params.get("assetItemType"))
    return ctx.response()


_MODEL_UPLOADS: Final = ("upload_asset", "clientlib_asset_upload")


@applier("registry_model_item_create")
def _register_model(ctx: WriteContext) -> dict:
    """A model is registered from the experiment's own model (its files' ``groupingName``),
    as on Comet: one not logged (yet) is a 400."""
    name = ctx.values["experimentModelName"]
    rows = ctx.store.applied_rows(ctx.conn, ctx.experiment_key, _MODEL_UPLOADS)
    if not any(json.loads(r["fields"]).get("groupingName") == name for r in rows):
        raise bad_request(f"the experiment {ctx.experiment_key} has no model named {name!r}")
    return ctx.response(registryModelId=new_id(), registryModelItemId=new_id())


def probe_response(name: str) -> dict:
    try:
        return PROBES[name]()
    except KeyError:
        raise ApiError(404, f"no probe {name}") from None
