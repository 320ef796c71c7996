"""Applying write requests: validate with the catalogue, check the target, apply, record.

Every write goes through :func:`handle_write`:

1. its fields (query, body, parts) are validated with :func:`comet_journal.schema.catalogue.validate`; a
   missing required field or a wrong type is a 400 and nothing is applied;
2. an ``Idempotency-Key`` that an applied request already carried is counted as a replay;
   with ``dedupe`` on, the stored response is sent back and nothing is applied again;
3. the experiment (or project) it names must exist: otherwise a 400;
4. the endpoint's *applier* updates the lookup tables (experiments, projects, assets) and
   returns the response body; endpoints that only add data (metrics, output...) have none:
   recording them in the applied log is all it takes (see :mod:`comet_journal.emulator.store`);
5. the request is recorded in the applied log, in the same transaction.

The appliers of the documented endpoints live here; those of the SDK's own routes in
:mod:`comet_journal.emulator.clientlib`.
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass
from typing import Any, Callable, Final

from comet_journal.schema.catalogue import EXPERIMENT, CatalogueError, Endpoint, validate

from comet_journal.emulator import errors
from comet_journal.emulator.errors import ApiError, bad_request, unknown_experiment
from comet_journal.emulator.store import STOPPED, Store, new_id, now_ms
from comet_journal.emulator.wire import Request, Response, UploadedFile, collect_fields

IDEMPOTENCY_HEADER: Final = "Idempotency-Key"
IDEMPOTENCY_REPLAYS: Final = "idempotency_replays"
# Endpoints that create the experiment they name, so it need not exist yet.
CREATORS: Final = frozenset(("experiment_create", "clientlib_add_run"))
# Endpoints allowed on a deleted experiment.
ON_DELETED: Final = frozenset(("experiment_restore",))
_KEY_FIELDS: Final = ("experimentKey", "experimentId", "previousExperiment")


@dataclass
class WriteContext:
    """What an applier sees: the validated values, the files, the target and the server."""

    store: Store
    conn: sqlite3.Connection
    endpoint: Endpoint
    values: dict[str, Any]
    files: dict[str, UploadedFile]
    base_url: str
    default_workspace: str
    experiment_key: str | None = None
    experiment: sqlite3.Row | None = None

    def link(self, workspace: str, project: str, key: str) -> str:
        return f"{self.base_url}/{workspace}/{project}/{key}"

    def response(self, **values: Any) -> dict:
        """The catalogue's documented response, with ``values`` filled in."""
        return {**self.endpoint.response, **values}


Applier = Callable[[WriteContext], dict]
APPLIERS: dict[str, Applier] = {}
UNRECORDED: set[str] = set()  # routes that only look something up: not in the applied log


def applier(*names: str, recorded: bool = True) -> Callable[[Applier], Applier]:
    """Register the function that applies the endpoints ``names``."""
    def register(fn: Applier) -> Applier:
        for name in names:
            APPLIERS[name] = fn
            if not recorded:
                UNRECORDED.add(name)
        return fn
    return register


def _experiment_key(values: dict) -> str | None:
    for name in _KEY_FIELDS:
        value = values.get(name)
        if isinstance(value, str):
            return value
    return None


def handle_write(endpoint: Endpoint, request: Request, *, store: Store, base_url: str,
                 default_workspace: str, dedupe: bool,
                 path_params: dict | None = None) -> Response:
    """Apply one write request (see the module docstring); raise :class:`ApiError`.

    ``path_params``: the values a templated path names (``asset/{assetId}/thumbnail``)."""
    fields = collect_fields(endpoint, request)
    fields.values.update(path_params or {})
    try:
        validate(endpoint, fields.values, allow_unknown=True)
    except CatalogueError as exc:
        raise bad_request(str(exc)) from None
    idempotency_key = request.header(IDEMPOTENCY_HEADER) or None
    recorded = endpoint.name not in UNRECORDED
    if not recorded:
        idempotency_key = None  # a lookup applies nothing, so it replays nothing
    replay = False
    try:
        with store.transaction() as conn:
            if idempotency_key is not None:
                previous = store.applied_response(conn, idempotency_key)
                if previous is not None:
                    replay = True
                    store.bump(conn, IDEMPOTENCY_REPLAYS)
                    if dedupe:  # answer as the first time, apply nothing
                        return Response(previous[0], previous[1].encode("utf-8"))
            ctx = WriteContext(store, conn, endpoint, fields.values, fields.files, base_url,
                               default_workspace, _experiment_key(fields.values))
            _check_experiment(ctx)
            payload = APPLIERS.get(endpoint.name, _record_only)(ctx)
            body = json.dumps(payload, separators=(",", ":"))
            if recorded:
                store.record_applied(conn, endpoint.name, ctx.experiment_key,
                                     idempotency_key, fields.as_json, 200, body)
    except ApiError:
        if replay:  # the rollback took the count with it; a refused replay is still a replay
            with store.transaction() as conn:
                store.bump(conn, IDEMPOTENCY_REPLAYS)
        raise
    return Response(200, body.encode("utf-8"))


def _check_experiment(ctx: WriteContext) -> None:
    if ctx.endpoint.entity != EXPERIMENT or ctx.endpoint.name in CREATORS:
        return
    if ctx.experiment_key is None:
        return  # an SDK route whose experiment travels elsewhere (asset items)
    row = ctx.store.experiment(ctx.conn, ctx.experiment_key)
    if row is None or (row["deleted"] and ctx.endpoint.name not in ON_DELETED):
        raise unknown_experiment(ctx.experiment_key)
    ctx.experiment = row


def _record_only(ctx: WriteContext) -> dict:
    return dict(ctx.endpoint.response)


# --- the experiment's life -------------------------------------------------------------------

def project_for(ctx: WriteContext, workspace: str | None, project: str | None) -> str:
    """The project an experiment is created in; created if needed, as Comet does."""
    if not project:
        raise bad_request("a project name is required", errors.NO_PROJECT_NAME)
    return ctx.store.ensure_project(ctx.conn, workspace or ctx.default_workspace, project)


@applier("experiment_create")
def _experiment_create(ctx: WriteContext) -> dict:
    workspace, project = ctx.values["workspaceName"], ctx.values["projectName"]
    project_id = project_for(ctx, workspace, project)
    key = new_id()  # the REST API creates the key; only clientlib accepts the client's own
    ctx.store.create_experiment(ctx.conn, key, project_id, ctx.values.get("experimentName"),
                                ctx.endpoint.name)
    ctx.experiment_key = key
    return ctx.response(experimentKey=key, link=ctx.link(workspace, project, key),
                        projectName=project, workspaceName=workspace)


@applier("experiment_stop")
def _experiment_stop(ctx: WriteContext) -> dict:
    ctx.store.update_experiment(ctx.conn, ctx.experiment_key, state=STOPPED,
                                end_ms=ctx.experiment["end_ms"] or now_ms())
    return ctx.response()


@applier("experiment_archive")
def _experiment_archive(ctx: WriteContext) -> dict:
    ctx.store.update_experiment(ctx.conn, ctx.experiment_key, archived=1)
    return ctx.response()


@applier("experiment_delete")
def _experiment_delete(ctx: WriteContext) -> dict:
    ctx.store.update_experiment(ctx.conn, ctx.experiment_key, deleted=1)
    return ctx.response()


@applier("experiment_restore")
def _experiment_restore(ctx: WriteContext) -> dict:
    ctx.store.update_experiment(ctx.conn, ctx.experiment_key, archived=0, deleted=0)
    return ctx.response()


@applier("experiment_keepalive")
def _experiment_keepalive(ctx: WriteContext) -> dict:
    ctx.store.update_experiment(ctx.conn, ctx.experiment_key, last_heartbeat_ms=now_ms())
    return ctx.response()


@applier("experiment_start_end_time")
def _experiment_start_end_time(ctx: WriteContext) -> dict:
    times = {column: ctx.values[name] for name, column in
             (("startTimeMillis", "start_ms"), ("endTimeMillis", "end_ms"))
             if ctx.values.get(name) is not None}
    if times:
        ctx.store.update_experiment(ctx.conn, ctx.experiment_key, **times)
    return ctx.response()


@applier("log_other")
def _log_other(ctx: WriteContext) -> dict:
    if ctx.values["key"] == "Name":  # Comet names an experiment by its "Name" other
        ctx.store.update_experiment(ctx.conn, ctx.experiment_key, name=str(ctx.values["value"]))
    return ctx.response()


# --- projects ----------------------------------------------------------------------------------

def _project_by_name(ctx: WriteContext, workspace: str, name: str) -> sqlite3.Row:
    row = ctx.store.project_named(ctx.conn, workspace, name)
    if row is None:
        raise bad_request(f"unknown project {workspace}/{name}")
    return row


def _project_by_id(ctx: WriteContext, project_id: Any) -> sqlite3.Row:
    row = ctx.store.project(ctx.conn, project_id) if isinstance(project_id, str) else None
    if row is None:
        raise bad_request(f"unknown projectId {project_id!r}")
    return row


@applier("project_create")
def _project_create(ctx: WriteContext) -> dict:
    workspace, name = ctx.values["workspaceName"], ctx.values["projectName"]
    if ctx.store.project_named(ctx.conn, workspace, name) is not None:
        raise bad_request(f"project {workspace}/{name} already exists")
    project_id = ctx.store.create_project(ctx.conn, workspace, name,
                                          ctx.values["projectDescription"],
                                          ctx.values["isPublic"])
    return ctx.response(projectId=project_id)


@applier("project_delete")
def _project_delete(ctx: WriteContext) -> dict:
    row = _project_by_name(ctx, ctx.values["workspaceName"], ctx.values["projectName"])
    ctx.store.update_project(ctx.conn, row["id"], deleted=1)
    if ctx.values["deleteAllExperiments"]:
        for experiment in ctx.store.experiments(ctx.conn, row["id"]):
            ctx.store.update_experiment(ctx.conn, experiment["key"], deleted=1)
    return ctx.response()


@applier("project_symlink")
def _project_symlink(ctx: WriteContext) -> dict:
    workspace = ctx.experiment["workspace"]
    project = _project_by_name(ctx, workspace, ctx.values["projectName"])
    return ctx.response(link=ctx.link(workspace, project["name"], ctx.experiment_key))


@applier("project_notes")
def _project_notes(ctx: WriteContext) -> dict:
    row = _project_by_id(ctx, ctx.values["projectId"])
    ctx.store.update_project(ctx.conn, row["id"], notes=ctx.values["notes"])
    return ctx.response()


@applier("project_update")
def _project_update(ctx: WriteContext) -> dict:
    if ctx.values.get("projectId") is not None:
        row = _project_by_id(ctx, ctx.values["projectId"])
    else:
        row = _project_by_name(ctx, ctx.values["workspaceName"], ctx.values["projectName"])
    changes: dict[str, Any] = {}
    new_name = ctx.values.get("newProjectName")
    if new_name is not None and new_name != row["name"]:
        if ctx.store.project_named(ctx.conn, row["workspace"], new_name) is not None:
            raise bad_request(f"project {row['workspace']}/{new_name} already exists")
        changes["name"] = new_name
    if ctx.values.get("newProjectDescription") is not None:
        changes["description"] = ctx.values["newProjectDescription"]
    if ctx.values.get("isPublic") is not None:
        changes["is_public"] = int(ctx.values["isPublic"])
    if changes:
        ctx.store.update_project(ctx.conn, row["id"], **changes)
    return ctx.response()


@applier("viz_store_save")
def _viz_store_save(ctx: WriteContext) -> dict:
    _project_by_id(ctx, ctx.values["projectId"])
    return ctx.response()


# --- files -------------------------------------------------------------------------------------

def store_upload(ctx: WriteContext, *, data: bytes | None, asset_id: str | None = None,
                 file_name: str | None = None, asset_type: str | None = None,
                 link: str | None = None) -> str:
    """Record one uploaded asset (its bytes too, unless the emulator keeps only hashes)."""
    values = ctx.values
    file = UploadedFile(data) if data is not None else None
    asset_id = asset_id or new_id()
    file_name = file_name or values.get("fileName")
    extension = values.get("extension")
    if extension is None and file_name:
        extension = os.path.splitext(file_name)[1].lstrip(".") or None
    ctx.store.add_asset(
        ctx.conn, asset_id=asset_id, experiment_key=ctx.experiment_key,
        endpoint=ctx.endpoint.name, file_name=file_name, data=data,
        sha256=file.sha256 if file else None, size=file.size if file else None,
        extension=extension, type=asset_type or values.get("type"), step=values.get("step"),
        epoch=values.get("epoch"), context=values.get("context"),
        overwrite=values.get("overwrite"), metadata=values.get("metadata"), link=link)
    return asset_id


@applier("upload_asset")
def _upload_asset(ctx: WriteContext) -> dict:
    store_upload(ctx, data=ctx.files["file"].data)
    return ctx.response()


@applier("upload_git_patch")
def _upload_git_patch(ctx: WriteContext) -> dict:
    store_upload(ctx, data=ctx.files["file"].data, file_name="git_diff.patch.zip",
                 asset_type="git-patch")
    return ctx.response()


@applier("upload_text_sample")
def _upload_text_sample(ctx: WriteContext) -> dict:
    metadata = ctx.values.get("metadata")
    if isinstance(metadata, str):  # documented as an encoded blob: keep it readable
        try:
            ctx.values = {**ctx.values, "metadata": json.loads(metadata)}
        except ValueError:
            ctx.values = {**ctx.values, "metadata": {"encoded": metadata}}
    store_upload(ctx, data=ctx.values["content"].encode("utf-8"),
                 file_name="auto-generated-in-the-backend", asset_type="text-sample")
    return ctx.response()
