"""One ``messages.json`` message -> the journal calls that carry it, losing nothing we can keep.

Every metric point (with its context, step, epoch and timestamp) is its own call, every
parameter value is kept in order with its step (``comet upload`` keeps only the last), output
lines keep their order, stderr flag and original timestamps (their ``offset`` is the message
id, so stdout and stderr interleave as they were written). Items no documented endpoint
carries (remote assets and models, model registrations, dependencies, the script's file name,
cloud details, 3D point clouds with their points, boxes and thumbnail files) are journaled as
calls to the official SDK's routes, which the uploader sends where the server offers them.
What no route at all can carry (fields such as a parameter's source) is kept in the import
report (journal meta ``import.not_sendable``, ``dropped_fields`` by name), never dropped
silently.
"""

from __future__ import annotations

import io
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Final

from comet_journal.schema.catalogue import POINTS_3D, CatalogueError
from comet_journal.uploader.importer.source import member_name_problem

OUTPUT_LINES_PER_CALL: Final = 500
# Message types no journaled route carries: kept as they are in the journal's meta (none
# today; the place stays for message types a newer SDK adds).
NOT_SENDABLE: Final = frozenset()
_ITEM_FIELDS: Final = {"points": "points", "boxes": "boxes"}  # a 3d-image item type -> field
_REGISTER_MODEL: Final = {  # register_model message field -> registry_model_item_create field
    "model_name": "experimentModelName", "registry_name": "registryModelName",
    "description": "registryModelDescription", "version": "version", "comment": "versionComment",
    "tags": "tags", "status": "status", "public": "publicModel"}
# What the one-request registration does not carry: the SDK ignores the first two; metadata and
# the status configuration are later updates that need the server's id of the new item.
REGISTER_MODEL_UNSENT: Final = ("workspace", "stages", "metadata", "status_configuration")
_SYSTEM_DETAILS: Final = {  # archive field -> system-details field
    "command": "command", "python_exe": "executable", "hostname": "hostname", "ip": "ip",
    "os": "os", "os_type": "osType", "pid": "pid", "python_version": "pythonVersion",
    "python_version_verbose": "pythonVersionVerbose", "user": "user",
    "network_interfaces_ips": "networkInterfaceIps"}
_HOST_DETAILS: Final = {"machine": "machine", "os_release": "osRelease",
                        "processor": "processor"}
_GPU_STATIC: Final = {"gpu_index": "gpuIndex", "name": "name", "power_limit": "powerLimit",
                      "total_memory": "totalMemory", "uuid": "uuid"}
_GIT_FIELDS: Final = ("branch", "origin", "parent", "root", "user")


class MessageProblem(ValueError):
    """This message cannot be imported (the caller names the source and the line)."""


@dataclass
class ImportReport:
    """What an import did, for the summary and the journal's meta."""

    messages: Counter = field(default_factory=Counter)  # by message type
    skipped: list = field(default_factory=list)  # (line, problem), with --partial
    not_sendable: list = field(default_factory=list)  # {"line", "type", "payload"}
    dropped_fields: Counter = field(default_factory=Counter)  # "type.field" -> times
    referenced: set = field(default_factory=set)  # member names messages refer to
    orphans: int = 0

    def as_dict(self) -> dict:
        return {"messages": dict(self.messages), "skipped": [list(s) for s in self.skipped],
                "not_sendable": Counter(i["type"] for i in self.not_sendable),
                "dropped_fields": dict(self.dropped_fields), "orphan_files": self.orphans}


class Converter:
    """Feeds messages, in file order, into an :class:`ImportJournal` (``out``).

    :param open_member: ``name -> binary stream`` of a file of the source.
    """

    def __init__(self, out, open_member: Callable, report: ImportReport, start_ms: int):
        self.out = out
        self.open_member = open_member
        self.report = report
        self.last_ts = start_ms
        self.first_ts: int | None = None
        self._lines: list[dict] = []
        self._lines_context: str | None = None
        self._handlers = {
            "metric_msg": self._metric, "parameter_msg": self._parameter,
            "standard_output": self._output, "log_other": self._other,
            "html": self._html, "htmlOverride": self._html, "graph": self._graph,
            "system_details": self._system_details,
            "installed_packages": lambda p: self._packages(p, "installedPackages"),
            "os_packages": lambda p: self._packages(p, "osPackages"), "gpu_static_info": self._gpu_static,
            "system_info": self._system_info, "git_metadata": self._git_metadata,
            "file_upload": self._file_upload, "remote_file": self._remote_file,
            "remote_model": self._remote_model, "register_model": self._register_model,
            "log_dependency": self._dependency, "cloud_details": self._cloud_details,
            "3d-image": self._points_3d,
            "file_name": lambda p: self._call("experiment_file_path",
                                              {"filePath": str(p["file_name"])})}

    def message(self, line: int, msg_type: Any, payload: Any) -> None:
        """Journal one message, or raise :class:`MessageProblem`."""
        if not isinstance(payload, (dict, list)):
            raise MessageProblem("the payload is not a JSON object")
        ts = payload.get("local_timestamp") if isinstance(payload, dict) else None
        if isinstance(ts, int) and not isinstance(ts, bool):
            self.last_ts = ts
            self.first_ts = ts if self.first_ts is None else self.first_ts
        if msg_type in NOT_SENDABLE:
            self.report.not_sendable.append({"line": line, "type": msg_type, "payload": payload})
        else:
            handler = self._handlers.get(msg_type)
            if handler is None:
                raise MessageProblem(f"unknown message type {msg_type!r}")
            if msg_type != "standard_output":
                self._flush_output()
            try:
                handler(payload)
            except CatalogueError as exc:
                raise MessageProblem(f"a {msg_type} message that no endpoint accepts: {exc}") \
                    from None
            except (KeyError, TypeError, AttributeError, StopIteration) as exc:
                raise MessageProblem(f"a {msg_type} message without the expected fields "
                                     f"({type(exc).__name__}: {exc})") from None
        self.report.messages[msg_type] += 1

    def finish(self) -> None:
        self._flush_output()

    def _call(self, endpoint: str, payload: dict, ts: int | None = None) -> None:
        self.out.call(endpoint, {k: v for k, v in payload.items() if v is not None},
                      self.last_ts if ts is None else ts)

    # --- values -------------------------------------------------------------------------

    def _metric(self, p: dict) -> None:
        m = p["metric"]
        self._call("log_metric", {
            "metricName": m["metricName"], "metricValue": m["metricValue"],
            "step": m.get("step"), "epoch": m.get("epoch"), "context": p.get("context"),
            "timestamp": p.get("local_timestamp")})

    def _parameter(self, p: dict) -> None:
        param = p.get("param") or p["params"]
        name = param["paramName"]
        if p.get("context"):  # the endpoint has no context field: keep it in the name
            name = f"{p['context']}_{name}"
        value = param["paramValue"]
        if value is None:
            value = "None"  # what the SDK shows for a None parameter
        self._call("log_parameter", {"parameterName": name, "parameterValue": value,
                                     "step": param.get("step"),
                                     "timestamp": p.get("local_timestamp")})
        if param.get("source") not in (None, "manual"):
            self.report.dropped_fields["parameter_msg.source"] += 1

    def _output(self, p: dict) -> None:
        context = p.get("context")
        if self._lines and (context != self._lines_context
                            or len(self._lines) >= OUTPUT_LINES_PER_CALL):
            self._flush_output()
        self._lines_context = context
        line = {"output": p["output"], "stderr": bool(p.get("stderr")),
                "localTimestamp": p.get("local_timestamp"), "offset": p.get("message_id")}
        if not isinstance(line["output"], str):
            raise MessageProblem("an output line that is not a string")
        self._lines.append({k: v for k, v in line.items() if v is not None})

    def _flush_output(self) -> None:
        if self._lines:
            self._call("log_output", {"context": self._lines_context,
                                      "outputLines": self._lines})
            self._lines = []

    def _other(self, p: dict) -> None:
        value = p["value"]
        if not isinstance(value, (str, int, float, bool)):
            value = str(value)
        self._call("log_other", {"key": str(p["key"]), "value": value})

    def _html(self, p: dict) -> None:
        override = "htmlOverride" in p
        self._call("log_html", {"html": p["htmlOverride"] if override else p["html"],
                                "override": override})

    def _graph(self, p: dict) -> None:
        self._call("log_graph", {"graph": self._bytes_blob(p["graph"].encode())})

    # --- environment --------------------------------------------------------------------

    def _system_details(self, p: dict) -> None:
        details = {ours: p.get(theirs) for theirs, ours in _SYSTEM_DETAILS.items()}
        if isinstance(details["command"], str):
            details["command"] = [details["command"]]
        if details["pid"] is not None:
            details["pid"] = int(details["pid"])
        host = {ours: p.get(theirs) for theirs, ours in _HOST_DETAILS.items()}
        for name, value in p.items():
            if name not in _SYSTEM_DETAILS and name not in _HOST_DETAILS and \
                    name != "message_id" and value:
                self.report.dropped_fields[f"system_details.{name}"] += 1
        self._call("system_details", details)
        if any(v is not None for v in host.values()):  # only the SDK's route carries them
            self._call("clientlib_system_details", {k: str(v) for k, v in host.items()
                                                    if v is not None})

    def _packages(self, p: Any, name: str) -> None:
        packages = p if isinstance(p, list) else next(v for v in p.values() if isinstance(v, list))
        self._call("system_details", {name: [str(x) for x in packages]})

    def _gpu_static(self, p: Any) -> None:
        gpus = p if isinstance(p, list) else p["gpu_static_info"]
        self._call("system_details", {"gpuStaticInfoList": [
            {ours: gpu.get(theirs) for theirs, ours in _GPU_STATIC.items()} for gpu in gpus]})

    def _system_info(self, p: dict) -> None:
        info = p["system_info"]
        self._call("system_details", {"logAdditionalSystemInfoList": [
            {"key": str(info["key"]), "value": str(info["value"])}]})

    def _git_metadata(self, p: dict) -> None:
        git = p["git_metadata"]
        for name, value in git.items():
            if name not in _GIT_FIELDS and value is not None:
                self.report.dropped_fields[f"git_metadata.{name}"] += 1
        self._call("git_metadata", {n: "" if git.get(n) is None else str(git[n])
                                    for n in _GIT_FIELDS})

    # --- files --------------------------------------------------------------------------

    def _file_upload(self, p: dict) -> None:
        ref = self._member_blob(p["file_path"])
        kind = p.get("upload_type")
        if kind == "git-patch":
            self._call("upload_git_patch", {"file": ref})
            return
        extra = p.get("additional_params") or {}
        if kind == "visualization":  # an image: what the REST log_image sends
            file_name, asset_type = extra.get("figName") or extra.get("imageId"), "image"
        else:
            file_name, asset_type = extra.get("fileName"), extra.get("type") or kind
        self._call("upload_asset", {
            "fileName": file_name, "extension": extra.get("extension"),
            "step": extra.get("step"), "overwrite": extra.get("overwrite"),
            "context": extra.get("context"), "type": asset_type, "file": ref,
            "epoch": _int_or_none(extra.get("epoch")), "groupingName": extra.get("groupingName"),
            "metadata": p.get("metadata") or None}, ts=p.get("local_timestamp"))

    # --- what only the SDK's routes carry -------------------------------------------------

    def _remote_file(self, p: dict) -> None:
        extra = p.get("additional_params") or {}
        self._call("clientlib_asset_upload", {
            "link": p["remote_uri"], "fileName": extra.get("fileName"),
            "assetId": extra.get("assetId"), "type": extra.get("type") or p.get("upload_type"),
            "step": _int_or_none(extra.get("step")), "epoch": _int_or_none(extra.get("epoch")),
            "overwrite": extra.get("overwrite"), "context": extra.get("context"),
            "metadata": p.get("metadata") or None})

    def _remote_model(self, p: dict) -> None:
        self._call("clientlib_log_remote_model", {"modelName": p["model_name"],
                                                  "remoteEntities": p["remote_assets"]})

    def _register_model(self, p: dict) -> None:
        self._call("registry_model_item_create",
                   {ours: p.get(theirs) for theirs, ours in _REGISTER_MODEL.items()})
        for name in REGISTER_MODEL_UNSENT:
            if p.get(name) is not None:
                self.report.dropped_fields[f"register_model.{name}"] += 1

    def _dependency(self, p: dict) -> None:
        self._call("experiment_dependencies", {"logDependencies": [
            {"name": str(p["name"]), "version": str(p["version"])}],
            "timestamp": p.get("local_timestamp")})

    def _cloud_details(self, p: dict) -> None:
        self._call("experiment_cloud_details", {"provider": p.get("provider"),
                                                "metadata": p.get("cloud_metadata")})

    def _points_3d(self, p: dict) -> None:
        """A 3D point cloud: its points/boxes files and thumbnail go into the blob store."""
        payload: dict[str, Any] = {"userFileName": str(p["name"]),
                                   "step": _int_or_none(p.get("step")),
                                   "metadata": p.get("metadata") or None}
        for item in p.get("items") or []:
            field_name = _ITEM_FIELDS.get(item.get("type"))
            if field_name is None or field_name in payload:
                raise MessageProblem(f"a 3d-image item of type {item.get('type')!r} (known: "
                                     "one 'points' and one 'boxes' item)")
            payload[field_name] = self._member_blob(item["file_path"])
        if p.get("thumbnail_path") is not None:
            payload["thumbnail"] = self._member_blob(p["thumbnail_path"])
        self._call(POINTS_3D, payload, ts=p.get("local_timestamp"))

    def _member_blob(self, name: Any) -> dict:
        if not isinstance(name, str):
            raise MessageProblem(f"file_path {name!r} is not a file name")
        unsafe = member_name_problem(name)
        if unsafe:
            raise MessageProblem(unsafe)
        try:
            stream = self.open_member(name)
        except KeyError:
            raise MessageProblem(f"refers to the file {name!r}, which is not in the "
                                 "archive") from None
        self.report.referenced.add(name)
        with stream:
            return self.out.blob(stream)

    def _bytes_blob(self, data: bytes) -> dict:
        return self.out.blob(io.BytesIO(data))


def _int_or_none(value: Any) -> int | None:
    """The SDK coerces an upload's step and epoch to int (a float step from a loop)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return int(value)
