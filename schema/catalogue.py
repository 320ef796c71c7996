"""The one catalogue of Comet's REST v2 write endpoints.

Everything that knows about an endpoint reads it from here: the recorder validates a call
with it before journaling, the uploader builds the HTTP request from it, and the emulator
validates incoming requests with it. Source: Comet's documented REST v2 write endpoints (see
``docs/comet-api.md``), with their errata (CPU path, symlink's ``experimentKey``, multipart
uploads, update-project path).

A journal row stores the *payload* of a call: the wire fields by their wire names, minus
``experimentKey`` (the uploader adds the server's key, which is unknown when recording).
Fields marked ``blob`` hold large bytes; in the journal their value is a blob reference
``{"$blob": "<sha256>", "size": N}`` resolved by the uploader (see ``schema.blobs``).

Example::

    from comet_journal.schema.catalogue import ENDPOINTS, validate
    ep = ENDPOINTS["log_metric"]
    ep.method, ep.path            # ('POST', '/api/rest/v2/write/experiment/metric')
    validate(ep, {"metricName": "loss", "metricValue": 0.5, "experimentKey": "k" * 32})
"""

from __future__ import annotations

from typing import Any, Final, Iterable

from comet_journal.schema.endpoint_model import (  # noqa: F401  (re-exported)
    BODY,
    BOOL,
    CatalogueError,
    EXPERIMENT,
    Endpoint,
    FILE,
    Field,
    INT,
    JSON_OBJECT,
    KEY_FIELDS,
    METRIC_VALUE,
    NUMBER,
    NUMBER_LIST,
    OBJECT_LIST,
    PARAM_VALUE,
    PART,
    PROJECT,
    QUERY,
    REST_PREFIX,
    SCALAR,
    SPECIAL_FLOATS,
    STR,
    STR_LIST,
    VIZ_INSTANCE,
    check_type,
    is_project_ref,
    project_ref,
    validate)


# --- helpers to keep the table below readable -------------------------------------------

_KEY = Field("experimentKey", STR, required=True)
_KEY_Q = Field("experimentKey", STR, required=True, location=QUERY)


def _exp(name, method, path, *fields, positioned=False, response=None, **kw) -> Endpoint:
    return Endpoint(name, method, REST_PREFIX + path, EXPERIMENT, tuple(fields),
                    response=response or {"msg": "Saved"}, positioned=positioned, **kw)


_SAMPLE_POSITION = (
    Field("context", STR), Field("epoch", INT), Field("step", INT), Field("timestamp", INT),
)

_ENDPOINT_LIST: tuple[Endpoint, ...] = (
    # --- the experiment's life ---------------------------------------------------------
    Endpoint(
        "experiment_create", "POST", REST_PREFIX + "write/experiment/create", EXPERIMENT,
        (Field("experimentName", STR), Field("projectName", STR, required=True),
         Field("workspaceName", STR, required=True)),
        response={"experimentKey": "", "link": "", "projectName": "", "workspaceName": ""},
    ),
    _exp("experiment_stop", "GET", "write/experiment/stop", _KEY_Q,
         response={"msg": "Stop Requested"}),
    _exp("experiment_archive", "GET", "write/experiment/archive", _KEY_Q,
         response={"msg": "Archived"}),
    _exp("experiment_delete", "GET", "write/experiment/delete", _KEY_Q,
         response={"msg": "Deleted"}),
    _exp("experiment_restore", "GET", "write/experiment/restore", _KEY_Q,
         response={"msg": "Restore"}),
    _exp("experiment_keepalive", "GET", "write/experiment/set-status", _KEY_Q,
         response={"cpuMonitorIntervalMillis": 68000, "gpuMonitorIntervalMillis": 60000,
                   "isAliveBeatDurationMillis": 10000}),
    _exp("experiment_start_end_time", "POST", "write/experiment/set-start-end-time", _KEY,
         Field("startTimeMillis", INT), Field("endTimeMillis", INT)),
    # --- values ------------------------------------------------------------------------
    _exp("log_metric", "POST", "write/experiment/metric", _KEY,
         Field("metricName", STR, required=True), Field("metricValue", METRIC_VALUE, required=True),
         *_SAMPLE_POSITION, positioned=True),
    _exp("log_parameter", "POST", "write/experiment/parameter", _KEY,
         Field("parameterName", STR, required=True),
         Field("parameterValue", PARAM_VALUE, required=True),
         Field("step", INT), Field("timestamp", INT)),
    _exp("log_other", "POST", "write/experiment/log-other", _KEY,
         Field("key", STR, required=True), Field("value", SCALAR, required=True),
         Field("timestamp", INT)),
    _exp("log_html", "POST", "write/experiment/html", _KEY,
         Field("html", STR, required=True), Field("override", BOOL), Field("timestamp", INT)),
    _exp("add_tags", "POST", "write/experiment/tags", _KEY, Field("addedTags", STR_LIST)),
    _exp("log_output", "POST", "write/experiment/output", _KEY, Field("context", STR),
         Field("outputLines", OBJECT_LIST, required=True, items=(
             Field("output", STR, required=True), Field("stderr", BOOL),
             Field("localTimestamp", INT), Field("offset", INT))),
         positioned=True),
    _exp("log_graph", "POST", "write/experiment/graph", _KEY,
         Field("graph", STR, required=True, blob=True)),
    _exp("set_code", "POST", "write/experiment/code", _KEY,
         Field("code", STR, required=True, blob=True)),
    # --- files -------------------------------------------------------------------------
    _exp("upload_asset", "POST", "write/experiment/upload-asset", _KEY_Q,
         Field("fileName", STR, location=QUERY), Field("extension", STR, location=QUERY),
         Field("step", INT, location=QUERY), Field("overwrite", BOOL, location=QUERY),
         Field("context", STR, location=QUERY), Field("type", STR, location=QUERY),
         # not in the endpoint's documented example; the SDK sends it with every asset
         Field("epoch", INT, location=QUERY),
         # the SDK's grouping of a model's files (log_model's name); also not in the example
         Field("groupingName", STR, location=QUERY),
         Field("file", FILE, required=True, location=PART, blob=True),
         Field("metadata", JSON_OBJECT, location=PART)),
    _exp("upload_text_sample", "POST", "write/experiment/upload-text-sample", _KEY,
         Field("content", STR, required=True, blob=True), Field("context", STR),
         Field("step", INT), Field("metadata", STR)),
    _exp("upload_git_patch", "POST", "write/experiment/git/patch", _KEY_Q,
         Field("file", FILE, required=True, location=PART, blob=True)),
    _exp("git_metadata", "POST", "write/experiment/git/metadata", _KEY,
         *(Field(n, STR, required=True) for n in ("branch", "origin", "parent", "root", "user"))),
    _exp("system_details", "POST", "write/experiment/system-details", _KEY,
         Field("command", STR_LIST), Field("executable", STR),
         Field("gpuStaticInfoList", OBJECT_LIST, items=(
             Field("gpuIndex", INT, required=True), Field("name", STR, required=True),
             Field("powerLimit", INT, required=True), Field("totalMemory", INT, required=True),
             Field("uuid", STR, required=True))),
         Field("hostname", STR), Field("installedPackages", STR_LIST), Field("ip", STR),
         Field("logAdditionalSystemInfoList", OBJECT_LIST, items=(
             Field("key", STR, required=True), Field("value", STR, required=True))),
         Field("networkInterfaceIps", STR_LIST), Field("os", STR),
         Field("osPackages", STR_LIST), Field("osType", STR), Field("pid", INT),
         Field("pythonVersion", STR), Field("pythonVersionVerbose", STR), Field("user", STR)),
    # --- system samples ----------------------------------------------------------------
    _exp("gpu_metrics", "POST", "write/experiment/gpu-metrics", _KEY, *_SAMPLE_POSITION,
         Field("gpus", OBJECT_LIST, required=True, items=(
             Field("freeMemory", INT, required=True), Field("gpuId", INT, required=True),
             Field("gpuUtilization", INT, required=True), Field("totalMemory", INT, required=True),
             Field("usedMemory", INT, required=True))),
         positioned=True),
    _exp("ram_metrics", "POST", "write/experiment/ram-metrics", _KEY, *_SAMPLE_POSITION,
         Field("totalRam", INT, required=True), Field("usedRam", INT, required=True),
         positioned=True),
    _exp("cpu_metrics", "POST", "write/experiment/cpu-metrics", _KEY, *_SAMPLE_POSITION,
         Field("cpuPercentUtilization", NUMBER_LIST, required=True), positioned=True),
    _exp("load_metrics", "POST", "write/experiment/load-metrics", _KEY, *_SAMPLE_POSITION,
         Field("loadAverage", NUMBER, required=True), positioned=True),
    # --- projects ----------------------------------------------------------------------
    Endpoint("project_create", "POST", REST_PREFIX + "write/project/create", PROJECT,
             (Field("isPublic", BOOL, required=True),
              Field("projectDescription", STR, required=True),
              Field("projectName", STR, required=True),
              Field("workspaceName", STR, required=True)),
             response={"projectId": ""}),
    Endpoint("project_delete", "POST", REST_PREFIX + "write/project/delete", PROJECT,
             (Field("deleteAllExperiments", BOOL, required=True),
              Field("projectName", STR, required=True),
              Field("workspaceName", STR, required=True)),
             response={"msg": "Deleted"}),
    Endpoint("project_symlink", "GET", REST_PREFIX + "write/project/symlink", EXPERIMENT,
             (_KEY_Q, Field("projectName", STR, required=True, location=QUERY)),
             response={"link": ""}),
    Endpoint("project_notes", "POST", REST_PREFIX + "write/project/notes", PROJECT,
             (Field("notes", STR, required=True), Field("projectId", STR, required=True)),
             response={"msg": "Saved"}),
    Endpoint("project_update", "POST", REST_PREFIX + "write/project/update", PROJECT,
             (Field("projectId", STR, location=QUERY),
              Field("workspaceName", STR, location=QUERY),
              Field("projectName", STR, location=QUERY),
              Field("isPublic", BOOL), Field("newProjectDescription", STR),
              Field("newProjectName", STR)),
             response={"msg": "Updated"},
             one_of=(("projectId",), ("workspaceName", "projectName"))),
    # --- viz instances -----------------------------------------------------------------
    Endpoint("viz_store_save", "POST", REST_PREFIX + "write/viz-instance/store/save",
             VIZ_INSTANCE,
             (Field("instanceId", STR, required=True), Field("projectId", STR, required=True),
              Field("store", STR, required=True)),
             response={"msg": "Stored"}),
)


# --- the official SDK's own routes (``documented=False``, in ``SDK_ENDPOINTS``) -------------
# Not in write-endpoints.md: the clientlib endpoints that ``Experiment`` and ``comet upload``
# use (bulk metric/parameter batches, idempotent creation with a client key, heartbeats,
# multipart asset uploads, probes) and the REST v2 writes only the SDK sends. Source:
# comet-wire.md sections 2, 3 and 5.2. ``experimentId`` (not ``experimentKey``) names the
# experiment in an upload's query; an asset item's travels inside its ``requestParams`` part.

CLIENTLIB_PREFIX: Final = "/clientlib/"
CLIENTLIB_REST_PREFIX: Final = CLIENTLIB_PREFIX + "rest/v2/"  # the SDK's "alternate" REST base
SERVER: Final = "server"  # probes and notifications that concern no experiment

_API_KEY_BODY = Field("apiKey", STR)
_RUN_ID = Field("runId", STR)
_HANDSHAKE = {"runId": "", "project_id": "", "focusUrl": "", "lastOffset": 0,
              "s3DirectAccessEnabled": False, "featureToggles": [], "experimentKey": ""}
_HEARTBEAT = {"is_alive_beat_duration_millis": 10000, "gpu_monitor_interval_millis": 60000,
              "cpu_monitor_interval_millis": 68000,
              "parameter_update_interval_millis": 60000, "pending_rpcs": False}
_UPLOAD_QUERY = (
    Field("experimentId", STR, required=True, location=QUERY),
    Field("projectId", STR, location=QUERY), Field("assetId", STR, location=QUERY),
    Field("fileName", STR, location=QUERY), Field("extension", STR, location=QUERY),
    Field("step", INT, location=QUERY), Field("epoch", INT, location=QUERY),
    Field("overwrite", BOOL, location=QUERY), Field("context", STR, location=QUERY),
    Field("type", STR, location=QUERY), Field("groupingName", STR, location=QUERY),
    Field("runId", STR, location=QUERY),
    # a file upload carries ``file``; a remote asset carries ``link`` instead
    Field("file", FILE, location=PART, blob=True), Field("link", STR, location=PART),
    Field("metadata", JSON_OBJECT, location=PART),
)


def _clientlib(name, method, path, entity, *fields, response=None, **kw) -> Endpoint:
    return Endpoint(name, method, CLIENTLIB_PREFIX + path, entity, tuple(fields),
                    response={} if response is None else response, documented=False, **kw)


def _sdk_rest(name, method, path, *fields, **kw) -> Endpoint:
    return Endpoint(name, method, REST_PREFIX + path, EXPERIMENT, tuple(fields),
                    response={}, documented=False, **kw)


_SDK_ENDPOINT_LIST: tuple[Endpoint, ...] = (
    # --- creation with a client-generated key, and the experiment's life ---------------
    _clientlib("clientlib_add_run", "POST", "logger/add/run", EXPERIMENT, _KEY,
               Field("projectName", STR), Field("teamName", STR), Field("offline", BOOL),
               Field("getOrCreateEnabled", BOOL), Field("local_timestamp", INT),
               Field("libVersion", STR), _API_KEY_BODY, response=_HANDSHAKE),
    _clientlib("status_report_update", "POST", "status-report/update", EXPERIMENT, _KEY,
               _RUN_ID, Field("projectId", STR), Field("is_alive", BOOL),
               Field("local_timestamp", INT), Field("offline", BOOL), _API_KEY_BODY,
               response=_HEARTBEAT),
    _clientlib("status_report_offline_metadata", "POST", "status-report/offline-metadata",
               EXPERIMENT, _KEY, _RUN_ID, Field("startTimestamp", INT),
               Field("endTimestamp", INT), _API_KEY_BODY),
    _clientlib("clientlib_add_tags", "POST", "tags/add-tags-to-experiment", EXPERIMENT, _KEY,
               Field("addedTags", STR_LIST, required=True), _API_KEY_BODY),
    # --- bulk values (gzip JSON bodies) ------------------------------------------------
    _clientlib("batch_metrics", "POST", "batch/logger/experiment/metric", EXPERIMENT, _KEY,
               Field("values", OBJECT_LIST, required=True, items=(
                   Field("metricName", STR, required=True),
                   Field("metricValue", METRIC_VALUE, required=True),
                   *_SAMPLE_POSITION)),
               positioned=True),
    _clientlib("batch_parameters", "POST", "batch/logger/experiment/parameter", EXPERIMENT,
               _KEY, Field("values", OBJECT_LIST, required=True, items=(
                   Field("parameterName", STR, required=True),
                   Field("parameterValue", PARAM_VALUE, required=True),
                   Field("step", INT), Field("source", STR), Field("context", STR),
                   Field("timestamp", INT)))),
    _clientlib("batch_output", "POST", "rest/v2/write/experiment/output", EXPERIMENT, _KEY,
               Field("runContext", STR),
               Field("outputLines", OBJECT_LIST, required=True, items=(
                   Field("output", STR, required=True), Field("stderr", BOOL),
                   Field("localTimestamp", INT), Field("offset", INT))),
               positioned=True),
    # ``command`` (a string or a list) and ``env`` (an object) are left untyped here
    _clientlib("clientlib_system_details", "POST", "rest/v2/write/experiment/system-details",
               EXPERIMENT, _KEY, Field("executable", STR), Field("hostname", STR),
               Field("installedPackages", STR_LIST), Field("ip", STR), Field("machine", STR),
               Field("networkInterfaceIps", STR_LIST), Field("os", STR),
               Field("osPackages", STR_LIST), Field("osRelease", STR), Field("osType", STR),
               Field("pid", INT), Field("processor", STR), Field("pythonVersion", STR),
               Field("pythonVersionVerbose", STR), Field("user", STR),
               Field("gpuStaticInfoList", OBJECT_LIST),
               Field("logAdditionalSystemInfoList", OBJECT_LIST)),
    _clientlib("clientlib_asset_3d", "POST", "asset", EXPERIMENT, _KEY,
               Field("userFileName", STR), Field("assetType", STR), Field("step", INT),
               Field("metadata", JSON_OBJECT), _API_KEY_BODY, response={"assetId": ""}),
    _clientlib("clientlib_log_remote_model", "POST", "asset/log-remote-model", EXPERIMENT,
               _KEY, Field("modelName", STR, required=True),
               Field("remoteEntities", OBJECT_LIST), _API_KEY_BODY),
    # --- REST v2 writes that only the SDK sends ----------------------------------------
    _sdk_rest("experiment_file_path", "POST", "write/experiment/file-path", _KEY,
              Field("filePath", STR, required=True)),
    _sdk_rest("experiment_dependencies", "PUT", "write/experiment/dependencies", _KEY,
              Field("timestamp", INT), Field("logDependencies", OBJECT_LIST, required=True,
                                             items=(Field("name", STR, required=True),
                                                    Field("version", STR)))),
    _sdk_rest("experiment_cloud_details", "POST", "write/experiment/cloud-details", _KEY,
              Field("provider", STR), Field("metadata", JSON_OBJECT)),
    _sdk_rest("experiment_update_status", "POST", "write/experiment/update-status", _KEY,
              Field("isAlive", BOOL), Field("error", STR), Field("hasCrashed", BOOL)),
    _sdk_rest("delete_tags", "POST", "write/experiment/tags/delete", _KEY,
              Field("tags", STR_LIST, required=True)),
    _sdk_rest("delete_parameter", "POST", "write/experiment/parameter/delete", _KEY,
              Field("parameterName", STR, required=True)),
    # The official SDK's ``register_model`` (backends that have the one-request route; its
    # ``metadata`` and status configuration are later updates by the item's id).
    _sdk_rest("registry_model_item_create", "POST", "write/registry-model/item/create", _KEY,
              Field("experimentModelName", STR, required=True),
              Field("registryModelName", STR), Field("registryModelDescription", STR),
              Field("version", STR), Field("versionComment", STR), Field("tags", STR_LIST),
              Field("status", STR), Field("publicModel", BOOL)),
    # --- looking up an existing run ----------------------------------------------------
    _clientlib("clientlib_get_run", "POST", "logger/get/run", EXPERIMENT,
               Field("previousExperiment", STR, required=True), Field("local_timestamp", INT),
               Field("libVersion", STR), _API_KEY_BODY, response=_HANDSHAKE),
    # --- files (multipart) ---------------------------------------------------------------
    _clientlib("clientlib_asset_upload", "POST", "asset/upload", EXPERIMENT, *_UPLOAD_QUERY),
    _clientlib("clientlib_git_patch_upload", "POST", "git-patch/upload", EXPERIMENT,
               *_UPLOAD_QUERY),
    _clientlib("clientlib_visualization_upload", "POST", "visualizations/upload", EXPERIMENT,
               *_UPLOAD_QUERY),
    _clientlib("clientlib_asset_item", "POST", "asset/asset-item", EXPERIMENT,
               Field("requestParams", STR, required=True, location=PART),
               Field("assetItemContent", FILE, required=True, location=PART, blob=True)),
    _clientlib("clientlib_asset_thumbnail", "PUT", "asset/{assetId}/thumbnail", EXPERIMENT,
               Field("requestParams", STR, required=True, location=PART),
               Field("thumbnail", FILE, required=True, location=PART, blob=True)),
    # --- probes and notifications ------------------------------------------------------
    _clientlib("clientlib_is_alive", "GET", "isAlive/ver", SERVER, response={"version": ""}),
    _clientlib("clientlib_health_ping", "GET", "health/ping", SERVER),
    _clientlib("clientlib_3d_limits", "POST", "asset/3d-limits", SERVER, _API_KEY_BODY),
    _clientlib("clientlib_notification", "POST", "notification/experiment", SERVER,
               Field("experiment_key", STR), Field("status", STR), Field("title", STR)),
    _clientlib("clientlib_notify_event", "POST", "notify/event", SERVER,
               Field("event_name", STR), Field("experiment_key", STR)),
)

# A 3D point cloud (``log_points_3d``), journaled as one compound call: the uploader sends it
# as the SDK does, in three steps through the routes above (``clientlib_asset_3d`` makes the
# container and answers its ``assetId``; ``clientlib_asset_thumbnail`` and
# ``clientlib_asset_item`` fill it), finding a container an earlier attempt made before
# making one (``uploader/send/points3d.py``). Its path is the first step's.
POINTS_3D: Final = "clientlib_points_3d"
POINTS_3D_ITEMS: Final = {"points": "points.jsonl", "boxes": "boxes.jsonl"}  # field -> item name
_POINTS_3D_ENDPOINT = _clientlib(
    POINTS_3D, "POST", "asset", EXPERIMENT, _KEY, Field("userFileName", STR, required=True),
    Field("step", INT), Field("metadata", JSON_OBJECT),
    Field("thumbnail", FILE, location=PART, blob=True),
    *(Field(name, FILE, location=PART, blob=True) for name in POINTS_3D_ITEMS))

# SDK routes whose calls a journal holds: the items no documented endpoint carries (remote
# assets and models, model registration, dependencies, the script's file name, cloud
# details, the host's machine/OS release/processor). The recorder and the importer journal
# them; the uploader sends them only to a server that offers the SDK's routes
# (``uploader/wire/capabilities.py``) and otherwise keeps them pending and says so.
JOURNALED_SDK_ROUTES: Final = ("clientlib_asset_upload", "clientlib_log_remote_model",
                               "registry_model_item_create", "experiment_dependencies",
                               "experiment_file_path", "experiment_cloud_details",
                               "clientlib_system_details", POINTS_3D)
# What the recorder journals and every replay starts from: the documented endpoints and the
# journaled SDK routes (``documented=False``).
ENDPOINTS: Final[dict[str, Endpoint]] = {e.name: e for e in _ENDPOINT_LIST}
BY_ROUTE: Final[dict[tuple[str, str], Endpoint]] = {(e.method, e.path): e for e in _ENDPOINT_LIST}
# The official SDK's own routes, apart: nothing journals them, the emulator serves them, the
# uploader may send through them.
SDK_ENDPOINTS: Final[dict[str, Endpoint]] = {e.name: e for e in _SDK_ENDPOINT_LIST}
SDK_BY_ROUTE: Final[dict[tuple[str, str], Endpoint]] = {
    (e.method, e.path): e for e in _SDK_ENDPOINT_LIST}
ENDPOINTS.update((name, SDK_ENDPOINTS[name]) for name in JOURNALED_SDK_ROUTES
                 if name != POINTS_3D)
ENDPOINTS[POINTS_3D] = _POINTS_3D_ENDPOINT  # journal-only: no route of its own


def documented_endpoints() -> Iterable[Endpoint]:
    """The endpoints of write-endpoints.md, in the catalogue's order."""
    return (e for e in _ENDPOINT_LIST if e.documented)


def blob_fields() -> frozenset[str]:
    """Names of the fields that hold a blob reference in the journal (any endpoint)."""
    return frozenset(f.name for e in ENDPOINTS.values() for f in e.fields if f.blob)


def endpoint_named(name: str) -> Endpoint:
    """A documented endpoint (``ENDPOINTS``) or one of the SDK's routes (``SDK_ENDPOINTS``)."""
    found = ENDPOINTS.get(name) or SDK_ENDPOINTS.get(name)
    if found is None:
        raise KeyError(f"no endpoint named {name!r} in the catalogue")
    return found
