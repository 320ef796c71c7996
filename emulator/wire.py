"""What travels on the wire: reading a request's body and fields, writing a response.

A request's *fields* are everything it carried, merged in this order (a later source wins):
the query string, then the JSON body or the multipart form parts. Query strings and text parts
carry only text, so a value whose catalogue field is an integer, number or boolean is converted
first (``step=3``, ``overwrite=False``) and then validated like any JSON value. A file part
becomes an :class:`UploadedFile`; in the applied log it is recorded as ``{"sha256", "size"}``.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import zlib
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, BinaryIO, Final, Iterable, Iterator, Mapping
from urllib.parse import parse_qsl

from comet_journal.schema.catalogue import BOOL, FILE, INT, JSON_OBJECT, NUMBER, Endpoint

from comet_journal.emulator.errors import ApiError, bad_request

JSON_TYPE: Final = "application/json"  # exactly: the SDK rejects a charset suffix on GET
BINARY_TYPE: Final = "application/octet-stream"
MAX_BODY_BYTES: Final = 8 << 30  # refuse absurd Content-Length values rather than allocate
REDACTED: Final = "<redacted>"
_SECRET_FIELDS: Final = ("apiKey", "api_key")  # the SDK repeats the API key in some bodies
_INT_TEXT = re.compile(r"-?\d+\Z")


@dataclass
class UploadedFile:
    """A multipart file part, held in memory."""

    data: bytes
    filename: str | None = None
    content_type: str | None = None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass
class Request:
    """One parsed HTTP request (the body already de-chunked and gunzipped)."""

    method: str
    path: str
    query: dict[str, str]
    headers: Mapping[str, str]
    body: bytes
    _json: Any = field(default=None, repr=False)

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    @property
    def content_type(self) -> str:
        return (self.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()

    def json(self) -> Any:
        """The body as JSON (``None`` when empty); a malformed body is a 400."""
        if self._json is None and self.body:
            try:
                self._json = json.loads(self.body)
            except ValueError as exc:
                raise bad_request(f"request body is not valid JSON: {exc}") from None
        return self._json


def split_target(target: str) -> tuple[str, dict[str, str]]:
    """``/a/b?x=1`` into ``("/a/b", {"x": "1"})`` (a repeated name keeps its last value)."""
    path, _, query = target.partition("?")
    return path, dict(parse_qsl(query, keep_blank_values=True)) if query else {}


def read_body(rfile: BinaryIO, headers: Mapping[str, str]) -> bytes:
    """Read the body that ``headers`` announce, de-chunk and gunzip it."""
    if "chunked" in (headers.get("Transfer-Encoding") or "").lower():
        body = _read_chunked(rfile)
    else:
        length_text = headers.get("Content-Length") or "0"
        try:
            length = int(length_text)
        except ValueError:
            raise bad_request(f"invalid Content-Length {length_text!r}") from None
        if length < 0 or length > MAX_BODY_BYTES:
            raise bad_request(f"invalid Content-Length {length}")
        body = rfile.read(length) if length else b""
        if len(body) != length:
            raise ConnectionError("the client closed the connection mid-body")
    if body and (headers.get("Content-Encoding") or "").lower() == "gzip":
        try:
            body = zlib.decompress(body, 16 + zlib.MAX_WBITS)
        except zlib.error as exc:
            raise bad_request(f"Content-Encoding is gzip but the body is not: {exc}") from None
    return body


def _read_chunked(rfile: BinaryIO) -> bytes:
    chunks = []
    while True:
        size_line = rfile.readline(65537)
        if not size_line:
            raise ConnectionError("the client closed the connection mid-body")
        size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            while rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return b"".join(chunks)
        chunks.append(rfile.read(size))
        rfile.readline(65537)  # the CRLF after each chunk


# --- multipart/form-data ----------------------------------------------------------------

def _header_params(value: str) -> tuple[str, dict[str, str]]:
    """``form-data; name="file"; filename="x"`` into ``("form-data", {...})``."""
    head, *rest = value.split(";")
    params = {}
    for item in rest:
        name, _, val = item.strip().partition("=")
        val = val.strip()
        if len(val) >= 2 and val[0] == val[-1] == '"':
            val = val[1:-1]
        params[name.strip().lower()] = val
    return head.strip().lower(), params


def parse_multipart(body: bytes, content_type_header: str) -> dict[str, UploadedFile | str]:
    """Parts by name: a part with a filename is an :class:`UploadedFile`, others are text."""
    _, params = _header_params(content_type_header)
    boundary = params.get("boundary")
    if not boundary:
        raise bad_request("multipart/form-data without a boundary")
    delimiter = b"\r\n--" + boundary.encode("latin-1")
    parts: dict[str, UploadedFile | str] = {}
    for raw in (b"\r\n" + body).split(delimiter)[1:]:
        if raw.startswith(b"--"):
            break  # the closing delimiter
        head, sep, data = raw.partition(b"\r\n\r\n")
        if not sep:
            raise bad_request("malformed multipart part (no blank line after its headers)")
        disposition, part_type = {}, None
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-disposition":
                _, disposition = _header_params(value)
            elif name.strip().lower() == "content-type":
                part_type = value.strip()
        part_name = disposition.get("name")
        if part_name is None:
            raise bad_request("multipart part without a name")
        if "filename" in disposition:
            parts[part_name] = UploadedFile(data, disposition["filename"], part_type)
        else:
            parts[part_name] = data.decode("utf-8", "replace")
    return parts


# --- fields -----------------------------------------------------------------------------

def _coerce_text(type_name: str, text: str) -> Any:
    """A query or form text value as the catalogue type wants it (unchanged if it cannot)."""
    if type_name == INT and _INT_TEXT.match(text):
        return int(text)
    if type_name == NUMBER:
        try:
            return float(text) if not _INT_TEXT.match(text) else int(text)
        except ValueError:
            return text
    if type_name == BOOL and text.lower() in ("true", "false"):
        return text.lower() == "true"
    if type_name == JSON_OBJECT:
        try:
            value = json.loads(text)
        except ValueError:
            return text
        return value if isinstance(value, dict) else text
    return text


def _typed(endpoint: Endpoint, values: Mapping[str, str]) -> dict[str, Any]:
    types = {f.name: f.type for f in endpoint.fields}
    return {name: _coerce_text(types[name], value) if name in types else value
            for name, value in values.items()}


@dataclass
class Fields:
    """A request's merged fields, their JSON form for the applied log, and its files."""

    values: dict[str, Any]
    as_json: str
    files: dict[str, UploadedFile]


def collect_fields(endpoint: Endpoint, request: Request) -> Fields:
    """Merge query, body and parts into the values :func:`comet_journal.schema.catalogue.validate` checks."""
    query = _typed(endpoint, request.query)
    files: dict[str, UploadedFile] = {}
    if request.content_type == "multipart/form-data":
        parts = parse_multipart(request.body, request.headers.get("Content-Type") or "")
        texts = {n: p for n, p in parts.items() if isinstance(p, str)}
        files = {n: p for n, p in parts.items() if isinstance(p, UploadedFile)}
        # a part the catalogue calls a file may come without a filename (and the reverse)
        for f in endpoint.fields:
            if f.type == FILE and f.name in texts:
                files[f.name] = UploadedFile(texts.pop(f.name).encode("utf-8"))
        body = _typed(endpoint, texts)
        values = {**query, **body, **files}
    else:
        body = request.json()
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise bad_request(f"{endpoint.name}: the body must be a JSON object, "
                              f"not {type(body).__name__}")
        values = {**query, **body}
        if not query and not any(k in body for k in _SECRET_FIELDS):
            # the common case, and the batch case: the body *is* the fields, as sent; this
            # saves re-encoding a thousand metric values per batch
            try:
                return Fields(values, request.body.decode("utf-8"), files)
            except UnicodeDecodeError:
                pass
    return Fields(values, fields_json(values), files)


def fields_json(values: Mapping[str, Any]) -> str:
    """The fields as recorded in the applied log: files as ``{sha256, size}``, no secrets."""
    shown = {}
    for name, value in values.items():
        if isinstance(value, UploadedFile):
            value = {"sha256": value.sha256, "size": value.size}
        elif name in _SECRET_FIELDS and value is not None:
            value = REDACTED
        shown[name] = value
    return json.dumps(shown, separators=(",", ":"))


# --- responses ----------------------------------------------------------------------------

@dataclass
class Response:
    """A response, and what the connection should suffer with it (faults): ``drop`` closes
    it instead of answering, ``slow_body_s`` trickles the body over that many seconds,
    ``outage_s`` then refuses connections for that many seconds. A ``stream`` (pieces of
    the body, made as they are sent) replaces ``body``: it goes out chunked."""

    status: int
    body: bytes = b""
    content_type: str = JSON_TYPE
    headers: tuple[tuple[str, str], ...] = ()
    drop: bool = False
    slow_body_s: float = 0.0
    outage_s: float = 0.0
    stream: Iterable[bytes] | None = field(default=None, repr=False)


def json_response(status: int, payload: Any, headers: tuple[tuple[str, str], ...] = ()
                  ) -> Response:
    return Response(status, json.dumps(payload, separators=(",", ":")).encode("utf-8"),
                    JSON_TYPE, headers)


def error_response(error: ApiError, headers: tuple[tuple[str, str], ...] = ()) -> Response:
    return json_response(error.status, error.body(), headers)


_date_cache: list = [0, ""]


def _http_date() -> str:
    now = int(time.time())
    if _date_cache[0] != now:  # formatting a date costs more than the rest of a header
        _date_cache[0] = now
        _date_cache[1] = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now))
    return _date_cache[1]


def encode_head(response: Response, close: bool) -> bytes:
    """Status line and headers, ready to send ahead of ``response.body``."""
    try:
        reason = HTTPStatus(response.status).phrase
    except ValueError:
        reason = "Unknown"
    lines = [f"HTTP/1.1 {response.status} {reason}",
             f"Date: {_http_date()}",
             "Server: comet-emulator",
             f"Content-Type: {response.content_type}",
             "Transfer-Encoding: chunked" if response.stream is not None
             else f"Content-Length: {len(response.body)}"]
    lines += [f"{name}: {value}" for name, value in response.headers]
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def chunked(pieces: Iterable[bytes]) -> Iterator[bytes]:
    """A streamed body in HTTP/1.1 chunks (empty pieces skipped), ending with the last."""
    for piece in pieces:
        if piece:
            yield b"%x\r\n" % len(piece)
            yield piece  # not copied into a chunk: pieces may be megabytes
            yield b"\r\n"
    yield b"0\r\n\r\n"
