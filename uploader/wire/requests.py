"""From a journal row to an HTTP request, using only the endpoint catalogue.

Every request is built from ``schema.catalogue``: the method, the path, and for each field its
location (JSON body, query string or multipart part). The journal row contributes the payload
(wire names already), its call time and its seq; the replay contributes the experiment's
server key and resolved ``projectId``s. Nothing here knows an endpoint by name except the
workspace/project overrides, which name the fields they rewrite.

Blob fields are resolved from the journal's blob store: small text blobs (code, graph, text
sample) are read into the JSON body; file parts (assets, git patches) are streamed as
``multipart/form-data`` by :class:`MultipartBody`, one journal chunk at a time, with a known
``Content-Length``, so a multi-GB asset never sits in memory.
"""

from __future__ import annotations

import io
import json
import sqlite3
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Protocol

from comet_journal.schema import blobs as blob_store
from comet_journal.schema.catalogue import (BODY, FILE, PART, QUERY, Endpoint, endpoint_named,
                                            is_project_ref)

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
DEFAULT_PROJECT = "general"  # Comet's default project when a journal names none


@dataclass
class BuiltRequest:
    """One HTTP request, ready for :class:`comet_journal.uploader.client.Client` (and re-sendable)."""

    method: str
    path: str
    params: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    content_type: str | None = None
    stream: Callable[[], "MultipartBody"] | None = None  # a fresh body per attempt
    size: int = 0  # bytes on the wire (body), for progress
    upload: bool = False  # long timeout (file upload)
    gzip: bool = False
    # Reads of unbounded size (a whole metric series): a fresh sink per attempt takes a 2xx
    # answer's body as it arrives, so it is never held whole (see AnswerSink).
    answer_to: Callable[[], "AnswerSink"] | None = None

    def describe(self) -> str:
        return f"{self.method} {self.path}"


class AnswerSink(Protocol):
    """Where a streamed answer's body goes: ``feed`` never raises (it records what is
    wrong); ``problem()`` after the end: None for a complete answer, else what is wrong."""

    def feed(self, chunk: bytes) -> None: ...

    def problem(self) -> str | None: ...


def encode_json(obj: Any) -> bytes:
    return _dumps(obj).encode()


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class Overrides:
    """The command line's ``--workspace``/``--project-name``, applied to every field that
    names the journal's workspace or project (never to a rename's new name or a symlink's
    destination project)."""

    def __init__(self, workspace: str | None = None, project: str | None = None,
                 default_workspace: str | None = None):
        self.workspace = workspace
        self.project = project
        self.default_workspace = default_workspace

    def workspace_of(self, journal_value: str | None) -> str | None:
        return self.workspace or journal_value or self.default_workspace

    def project_of(self, journal_value: str | None) -> str:
        return self.project or journal_value or DEFAULT_PROJECT

    def apply(self, endpoint: Endpoint, payload: dict) -> dict:
        if endpoint.name == "project_symlink":
            return payload
        out = dict(payload)
        names = {f.name for f in endpoint.fields}
        if "workspaceName" in names and ("workspaceName" in out or endpoint.name ==
                                         "experiment_create"):
            ws = self.workspace_of(out.get("workspaceName"))
            if ws:
                out["workspaceName"] = ws
        if "projectName" in names and ("projectName" in out or endpoint.name ==
                                       "experiment_create"):
            out["projectName"] = self.project_of(out.get("projectName"))
        ref = out.get("projectId")
        if is_project_ref(ref):
            inner = ref["$project"]
            out["projectId"] = {"$project": {
                "workspaceName": self.workspace_of(inner.get("workspaceName")),
                "projectName": self.project_of(inner.get("projectName"))}}
        return out


class MultipartBody(io.RawIOBase):
    """A ``multipart/form-data`` body read lazily: literal segments and journal blobs.

    ``len()`` is the exact byte count and ``tell()`` the bytes read so far, so requests sends
    a ``Content-Length`` (some proxies answer 411 to a chunked upload); reading pulls one
    verified journal chunk at a time.
    """

    def __init__(self, segments: list, conn: sqlite3.Connection | None, boundary: str):
        super().__init__()
        self.boundary = boundary
        self._segments = segments
        self._conn = conn
        self.size = sum(len(s) if isinstance(s, bytes) else s[1] for s in segments)
        self._iter = self._pieces()
        self._current = memoryview(b"")
        self._pos = 0
        self._read = 0

    def _pieces(self) -> Iterator[bytes]:
        for segment in self._segments:
            if isinstance(segment, bytes):
                yield segment
            else:
                yield from blob_store.iter_chunks(self._conn, segment[0])

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._read

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            rest = [bytes(self._current[self._pos:])] + list(self._iter)
            self._current, self._pos = memoryview(b""), 0
            out = b"".join(rest)
        else:
            while self._pos >= len(self._current):
                nxt = next(self._iter, None)
                if nxt is None:
                    return b""
                self._current, self._pos = memoryview(nxt), 0
            out = bytes(self._current[self._pos:self._pos + n])
            self._pos += len(out)
        self._read += len(out)
        return out

    def readinto(self, b) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)

    def __len__(self) -> int:
        return self.size


def _part_header(boundary: str, name: str, filename: str | None = None,
                 content_type: str | None = None) -> bytes:
    disposition = f'form-data; name="{name}"'
    if filename is not None:
        safe = filename.replace('"', "%22").replace("\r", " ").replace("\n", " ")
        disposition += f'; filename="{safe}"'
    head = f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
    if content_type:
        head += f"Content-Type: {content_type}\r\n"
    return (head + "\r\n").encode()


_SHAPES: dict[str, tuple] = {}


def _shape(endpoint: Endpoint) -> tuple[dict, bool, bool]:
    """Per endpoint, once: fields by name, has a ``timestamp``, names a workspace/project."""
    shape = _SHAPES.get(endpoint.name)
    if shape is None:
        names = {f.name for f in endpoint.fields}
        shape = _SHAPES[endpoint.name] = (
            {f.name: f for f in endpoint.fields}, "timestamp" in names,
            bool(names & {"workspaceName", "projectName", "projectId"}))
    return shape


class RequestBuilder:
    """Builds :class:`BuiltRequest` objects for journal rows.

    :param blob_conn: a function returning this thread's read connection to the journal.
    :param resolve_project: ``(workspace, project) -> projectId`` for ``$project`` references.
    """

    def __init__(self, overrides: Overrides, blob_conn: Callable[[], sqlite3.Connection],
                 resolve_project: Callable[[str, str], str] | None = None):
        self.overrides = overrides
        self.blob_conn = blob_conn
        self.resolve_project = resolve_project

    def build(self, endpoint_name: str, payload: dict, *, server_key: str | None,
              ts_ms: int) -> BuiltRequest:
        """The request for one journal call.

        :param server_key: the experiment's key on this server (None for project calls).
        :param ts_ms: the call's journal time; sent as ``timestamp`` where the endpoint has
            one and the payload does not.
        """
        endpoint = endpoint_named(endpoint_name)
        known, has_ts, names_project = _shape(endpoint)
        values: dict[str, Any] = dict(self.overrides.apply(endpoint, payload)
                                      if names_project else payload)
        if server_key is not None and endpoint.key_field:
            values[endpoint.key_field] = server_key
        if has_ts and "timestamp" not in values:
            values["timestamp"] = ts_ms
        ref = values.get("projectId")
        if is_project_ref(ref):
            inner = ref["$project"]
            if self.resolve_project is None:
                raise LookupError("a projectId reference needs the server's project id")
            values["projectId"] = self.resolve_project(inner["workspaceName"],
                                                       inner["projectName"])
        body: dict[str, Any] = {}
        params: dict[str, str] = {}
        parts: list[tuple] = []
        path = endpoint.path
        for name in list(values):  # a path parameter (``asset/{assetId}/thumbnail``)
            if "{" + name + "}" in path:
                path = path.replace("{" + name + "}", str(values.pop(name)))
        for name, value in values.items():
            if value is None:
                continue
            f = known.get(name)
            location = f.location if f is not None else BODY
            if f is not None and f.blob and blob_store.is_blob_ref(value):
                if location == PART:
                    parts.append((name, f, value))
                    continue
                value = blob_store.read_blob(self.blob_conn(), value["$blob"]).decode(
                    "utf-8", errors="replace")
            if location == QUERY:
                params[name] = _query_value(value)
            elif location == PART:
                parts.append((name, f, value))
            else:
                body[name] = value
        if parts:
            return self._multipart(endpoint, path, params, body, parts, values)
        data = encode_json(body) if (body or endpoint.method != "GET") else None
        return BuiltRequest(endpoint.method, path, params, data,
                            "application/json" if data is not None else None,
                            size=len(data or b""))

    def _multipart(self, endpoint: Endpoint, path: str, params: dict, body: dict,
                   parts: list, values: dict) -> BuiltRequest:
        boundary = uuid.uuid4().hex
        segments: list = []
        # JSON-located fields of a multipart endpoint (none in the catalogue today) would
        # travel as form fields; keep them rather than drop them.
        for name, value in body.items():
            segments.append(_part_header(boundary, name))
            segments.append((value if isinstance(value, str) else _dumps(value)).encode()
                            + b"\r\n")
        for name, f, value in parts:
            if f is not None and f.type == FILE:
                filename = values.get("fileName") or "file"
                segments.append(_part_header(boundary, name, filename,
                                             "application/octet-stream"))
                if blob_store.is_blob_ref(value):
                    segments.append((value["$blob"], int(value["size"])))
                else:
                    segments.append(value if isinstance(value, bytes) else str(value).encode())
                segments.append(b"\r\n")
            else:
                text = value if isinstance(value, str) else json.dumps(
                    value, sort_keys=True, separators=(",", ":"))
                segments.append(_part_header(boundary, name))
                segments.append(text.encode() + b"\r\n")
        segments.append(f"--{boundary}--\r\n".encode())
        blob_conn = self.blob_conn

        def stream() -> MultipartBody:
            return MultipartBody(segments, blob_conn(), boundary)

        size = sum(len(s) if isinstance(s, bytes) else s[1] for s in segments)
        return BuiltRequest(endpoint.method, path, params, None,
                            f"multipart/form-data; boundary={boundary}", stream=stream,
                            size=size, upload=True)
