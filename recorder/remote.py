"""Calls that only the official SDK's routes carry: remote assets and models, model
registration, dependencies, the script's file name, cloud details and 3D point clouds.

They are journaled like any call, as the SDK's routes take them (``schema.catalogue``'s
``JOURNALED_SDK_ROUTES``); the uploader sends them where the server offers those routes and
otherwise keeps them pending and says so (``comet-upload status``). Names and fields follow
``comet_ml.Experiment``: a remote asset gets a client-made ``assetId`` and the last path
segment of its URI as its name, as the SDK gives them.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any
from urllib.parse import urlparse

from comet_journal.recorder import validation as check
from comet_journal.recorder.points3d import build_cloud, thumbnail
from comet_journal.recorder.tolerance import tolerant
from comet_journal.schema.catalogue import POINTS_3D

logger = logging.getLogger(__name__)


def name_from_uri(uri: str) -> str:
    """The name the SDK gives a remote asset logged without one: the URI's last path
    segment, or ``remote``."""
    try:
        path = urlparse(uri).path
    except ValueError:
        path = ""
    return path.split("/")[-1] if path and path.split("/")[-1] else "remote"


def _metadata(method: str, metadata: Any) -> dict | None:
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        raise check.type_error(method, "metadata", "a dict", metadata)
    try:
        json.dumps(metadata)
    except (TypeError, ValueError):
        raise check.value_error(method, "metadata", "must be JSON-serialisable",
                                metadata) from None
    return metadata


def _str_list(method: str, name: str, value: Any) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise check.type_error(method, name, "a list of strings", value)
    return list(value)


class RemoteMixin:
    """Part of :class:`comet_journal.recorder.Experiment`; split out to keep each module small."""

    @tolerant
    def log_remote_asset(self, uri: Any, remote_file_name: str | None = None,
                         overwrite: bool = False, asset_type: str = "asset",
                         step: Any = None, metadata: dict | None = None) -> dict:
        """Journal a link to an asset stored elsewhere (the SDK's ``asset/upload`` with a
        ``link`` part instead of the file). Returns its name and client-made ``assetId``."""
        method = "log_remote_asset"
        if not isinstance(uri, str) or not uri:
            raise check.type_error(method, "uri", "a non-empty string", uri)
        check.optional_str(method, "remote_file_name", remote_file_name)
        check.boolean(method, "overwrite", overwrite)
        check.optional_str(method, "asset_type", asset_type)
        step = check.step(method, "step", step)
        name = remote_file_name or name_from_uri(uri)
        asset_id = uuid.uuid4().hex
        self._record("clientlib_asset_upload", {
            "link": uri, "fileName": name, "assetId": asset_id, "overwrite": overwrite,
            "type": asset_type or "asset", "step": self._step if step is None else step,
            "metadata": _metadata(method, metadata)})
        return {"fileName": name, "assetId": asset_id}

    @tolerant
    def log_remote_model(self, model_name: Any, uri: Any, metadata: dict | None = None,
                         sync_mode: bool = True, max_synced_objects: int = 10000) -> None:
        """Journal a model stored elsewhere (the SDK's ``asset/log-remote-model``). The
        SDK's ``sync_mode`` lists an s3:// or gs:// bucket over the network; a journal
        records the URI as one remote entity, as the SDK does for any other URI."""
        method = "log_remote_model"
        if not isinstance(model_name, str) or not model_name:
            raise check.type_error(method, "model_name", "a non-empty string", model_name)
        if not isinstance(uri, str) or not uri:
            raise check.type_error(method, "uri", "a non-empty string", uri)
        check.boolean(method, "sync_mode", sync_mode)
        entity = {"assetId": uuid.uuid4().hex, "fileName": name_from_uri(uri),
                  "remoteUrl": uri}
        metadata = _metadata(method, metadata)
        if metadata:
            entity["metadata"] = json.dumps(metadata, sort_keys=True, separators=(",", ":"))
        self._record("clientlib_log_remote_model", {"modelName": model_name,
                                                    "remoteEntities": [entity]})

    @tolerant
    def register_model(self, model_name: Any, version: str | None = None,
                       workspace: str | None = None, registry_name: str | None = None,
                       public: bool | None = None, description: str | None = None,
                       comment: str | None = None, tags: list | None = None,
                       stages: list | None = None, status: str | None = None,
                       sync: bool = False, metadata: dict | None = None,
                       status_configuration: dict | None = None,
                       timeout: float = 10.0) -> None:
        """Journal the registration of a logged model (the SDK's one-request
        ``write/registry-model/item/create``, sent once the model's files are). ``workspace``,
        ``stages``, ``sync`` and ``timeout`` are accepted and ignored, as the SDK ignores the
        first two; ``metadata`` and ``status_configuration`` are later updates by the
        server's id of the new version, which a journal cannot carry: given, they are left
        out with a warning."""
        method = "register_model"
        if not isinstance(model_name, str) or not model_name:
            raise check.type_error(method, "model_name", "a non-empty string", model_name)
        for name, value in (("version", version), ("registry_name", registry_name),
                            ("description", description), ("comment", comment),
                            ("status", status), ("workspace", workspace)):
            check.optional_str(method, name, value)
        if public is not None:
            check.boolean(method, "public", public)
        _str_list(method, "stages", stages)
        left_out = [n for n, v in (("metadata", _metadata(method, metadata)),
                                   ("status_configuration",
                                    _metadata(method, status_configuration))) if v]
        if left_out:
            logger.warning("comet-journal: register_model(%r): %s not journaled (set by the "
                           "server's id of the new version, which a journal cannot know)",
                           model_name, " and ".join(left_out))
        self._record("registry_model_item_create", {
            "experimentModelName": model_name, "registryModelName": registry_name or model_name,
            "registryModelDescription": description, "version": version,
            "versionComment": comment, "tags": _str_list(method, "tags", tags),
            "status": status, "publicModel": public})

    @tolerant
    def log_dependency(self, name: Any, version: Any) -> None:
        """Journal a dependency (the SDK's ``write/experiment/dependencies``)."""
        if name is None or version is None:
            raise check.value_error("log_dependency", "name/version", "must not be None",
                                    (name, version))
        self._record("experiment_dependencies", {"logDependencies": [
            {"name": str(name), "version": str(version)}]})

    @tolerant
    def set_filename(self, fname: Any) -> None:
        """Journal the script's file name (the SDK's ``write/experiment/file-path``)."""
        if not isinstance(fname, str) or not fname:
            raise check.type_error("set_filename", "fname", "a non-empty string", fname)
        self._record("experiment_file_path", {"filePath": fname})

    @tolerant
    def log_cloud_details(self, provider: Any, metadata: dict | None = None) -> None:
        """Journal where the run ran (what the SDK's environment detection sends to
        ``write/experiment/cloud-details``)."""
        if not isinstance(provider, str) or not provider:
            raise check.type_error("log_cloud_details", "provider", "a non-empty string",
                                   provider)
        self._record("experiment_cloud_details", {
            "provider": provider, "metadata": _metadata("log_cloud_details", metadata)})

    @tolerant
    def log_points_3d(self, scene_name: Any, points: Any = None, boxes: Any = None,
                      step: Any = None, metadata: dict | None = None) -> None:
        """Journal a 3D point cloud: its points and boxes files and thumbnail go into the
        blob store, the call is the SDK's (``asset``, then its thumbnail and items), which
        the uploader sends where the server offers the SDK's routes."""
        method = "log_points_3d"
        if not isinstance(scene_name, str) or not scene_name:
            raise check.type_error(method, "scene_name", "a non-empty string", scene_name)
        step = check.step(method, "step", step)
        metadata = _metadata(method, metadata)
        cloud = build_cloud(points, boxes)
        picture = thumbnail(cloud)
        self._record(POINTS_3D, {
            "userFileName": scene_name, "step": step, "metadata": cloud.metadata(metadata),
            "points": self._store_bytes(cloud.points) if cloud.points else None,
            "boxes": self._store_bytes(cloud.boxes) if cloud.boxes else None,
            "thumbnail": self._store_bytes(picture) if picture else None})
