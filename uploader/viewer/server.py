"""The viewer's HTTP server: a thin JSON layer over ``journal_read``, plus the static page.

Standard library only (``http.server.ThreadingHTTPServer``): a handful of read-only routes do
not need a web framework. Safety rules, applied to every response:

* only the runs of the journals given are served: a run is addressed by its key, a blob by its
  sha256 *and* a run that refers to it, a static file by a name from a fixed list; no request
  path ever becomes a file path;
* a strict Content-Security-Policy (scripts and styles from this server only, no inline
  script), and user content (logged html, assets) is served with ``sandbox`` so it can never
  run script in the viewer's origin;
* off the loopback interface a token is required (``?token=`` once, then a cookie) and is
  compared in constant time; on loopback the Host header must name loopback (DNS rebinding).
"""

from __future__ import annotations

import hmac
import json
import logging
import mimetypes
import secrets
import threading
import time
from http import HTTPStatus
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from urllib.parse import parse_qs, unquote, urlsplit

from comet_journal.schema.errors import JournalError
from comet_journal.uploader.journal.read import RunIndex
from comet_journal.uploader.viewer.series import X_KINDS, RunSeries, downsample

logger = logging.getLogger(__name__)

PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: "
            "blob:; connect-src 'self'; frame-src 'self'; base-uri 'none'; form-action 'none'; "
            "frame-ancestors 'self'")
# User content: no script at all, whatever the browser is told the page is.
USER_CSP = "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'"
TOKEN_COOKIE = "comet_view_token"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
INLINE_IMAGES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp"})
INDEX_REFRESH_S = 2.0
MAX_WIDTH = 4000


def is_loopback(host: str) -> bool:
    return host in LOOPBACK_HOSTS or host.startswith("127.")


def new_token() -> str:
    return secrets.token_urlsafe(24)


class Viewer:
    """What the handler serves: the run index and each run's series (built on first use)."""

    def __init__(self, index: RunIndex, token: str | None):
        self.index = index
        self.token = token
        self.static = {p.name: p for p in resources.files(__package__).joinpath("static")
                       .iterdir() if p.is_file()}
        self._series: dict[tuple[str, str], RunSeries] = {}
        self._lock = threading.Lock()
        self._indexed_at = time.monotonic()

    def refresh_index(self) -> None:
        with self._lock:
            if time.monotonic() - self._indexed_at >= INDEX_REFRESH_S:
                self.index.refresh()
                self._indexed_at = time.monotonic()

    def series_of(self, key: str, system: bool = False) -> RunSeries:
        self.index.places_of(key)  # KeyError for a run not served
        kind = "system" if system else "metrics"
        with self._lock:
            run = self._series.get((key, kind))
            if run is None:
                read = self.index.system_rows if system else self.index.metric_rows
                run = self._series[(key, kind)] = RunSeries(lambda cursor: read(key, cursor))
        return run

    def warm(self) -> None:
        """Read every run's metrics now (in the background) so first paints are fast."""
        for key in self.index.keys():
            try:
                self.index.summary(key)  # reads its calls other than metric points
                self.series_of(key).refresh(force=True)
            except (JournalError, KeyError) as exc:
                logger.warning("comet-upload view: cannot read run %s: %s", key, exc)

    # --- routes: each returns (status, content type, body, extra headers) ----------------
    def runs(self, query) -> dict:
        self.refresh_index()
        return {"runs": [r.as_dict() for r in self.index.runs()],
                "problems": self.index.problems}

    def run(self, key: str, query) -> dict:
        index = self.index
        return {"summary": index.summary(key).as_dict(),
                "metrics": self.series_of(key).describe(),
                "system": self.series_of(key, system=True).describe(),
                "params": index.params(key), "others": index.others(key),
                "items": index.items(key), "has_html": bool(index.html(key))}

    def live(self, key: str, query) -> dict:
        """What changes while a run is written: its row of the runs table and its series."""
        return {"summary": self.index.summary(key).as_dict(),
                "metrics": self.series_of(key).describe(),
                "system": self.series_of(key, system=True).describe()}

    def series(self, key: str, query) -> dict:
        name = _arg(query, "name")
        if name is None:
            raise ValueError("series needs ?name=<metric name>")
        x_kind = _arg(query, "x") or "step"
        if x_kind not in X_KINDS:
            raise ValueError(f"x must be one of {', '.join(X_KINDS)}, got {x_kind!r}")
        width = min(max(int(_arg(query, "width") or 1000), 10), MAX_WIDTH)
        lo, hi = (_float(_arg(query, k)) for k in ("from", "to"))
        s = self.series_of(key, system=_arg(query, "system") == "1").get(
            name, _arg(query, "context"))
        xs, ys = s.ordered(x_kind)
        x, y, in_range = downsample(xs, ys, lo, hi, width)
        return {"name": s.name, "context": s.context, "points": s.points,
                "last_step": s.last_step, "in_range": in_range, "x": x, "y": y}

    def output(self, key: str, query) -> dict:
        cursor = _cursor(_arg(query, "after"))
        lines = self.index.output(key, cursor)
        return {"lines": lines, "cursor": cursor}


def _arg(query: dict, name: str) -> str | None:
    values = query.get(name)
    return values[0] if values else None


def _cursor(text: str | None) -> dict[str, int]:
    """The output cursor the page sends back: {journal path: seq read through}."""
    try:
        cursor = json.loads(text) if text else {}
        if isinstance(cursor, dict) and all(isinstance(v, int) for v in cursor.values()):
            return cursor
    except ValueError:
        pass
    raise ValueError(f"after must be the cursor an earlier answer gave, got {text!r}")


def _float(text: str | None) -> float | None:
    if text in (None, ""):
        return None
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"expected a number, got {text!r}") from None


class Handler(BaseHTTPRequestHandler):
    viewer: Viewer  # set on the subclass made by make_server
    server_version = "comet-upload-view"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args) -> None:  # request lines go to debug, never stdout
        logger.debug("%s " + fmt, self.address_string(), *args)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        self._set_cookie = False  # per request: HTTP/1.1 keeps the handler between requests
        try:
            if not self._allowed(query):
                return self._send_json(HTTPStatus.FORBIDDEN, {"error": "a valid token is "
                                       "needed: open the URL printed by comet-upload view"})
            self._route(unquote(url.path), query)
        except KeyError as exc:
            self._send_json(HTTPStatus.NOT_FOUND, {"error": str(exc.args[0] if exc.args else
                                                                 exc)})
        except ValueError as exc:
            self._send_json(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
        except JournalError as exc:
            self._send_json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": str(exc)})
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _allowed(self, query: dict) -> bool:
        token = self.viewer.token
        if token is None:
            host = (self.headers.get("Host") or "").rsplit(":", 1)[0]
            return is_loopback(host)
        given = _arg(query, "token")
        if given is None:
            cookie = SimpleCookie(self.headers.get("Cookie") or "")
            given = cookie[TOKEN_COOKIE].value if TOKEN_COOKIE in cookie else ""
        self._set_cookie = _arg(query, "token") is not None
        return hmac.compare_digest(given.encode(), token.encode())

    def _route(self, path: str, query: dict) -> None:
        parts = [p for p in path.split("/") if p]
        v = self.viewer
        if not parts:
            return self._send_static("index.html")
        if parts[0] == "static" and len(parts) == 2:
            return self._send_static(parts[1])
        if parts[:2] == ["api", "runs"] and len(parts) == 2:
            return self._send_json(HTTPStatus.OK, v.runs(query))
        if parts[:2] == ["api", "run"] and len(parts) in (3, 4, 5):
            key, rest = parts[2], parts[3:]
            if not rest:
                return self._send_json(HTTPStatus.OK, v.run(key, query))
            if rest == ["live"]:
                return self._send_json(HTTPStatus.OK, v.live(key, query))
            if rest == ["series"]:
                return self._send_json(HTTPStatus.OK, v.series(key, query))
            if rest == ["output"]:
                return self._send_json(HTTPStatus.OK, v.output(key, query))
            if rest == ["html"]:
                return self._send(HTTPStatus.OK, "text/html; charset=utf-8",
                                  v.index.html(key).encode(), csp=USER_CSP)
            if rest[0] == "blob" and len(rest) == 2:
                return self._send_blob(key, rest[1], query)
        raise KeyError(f"nothing here: {path!r}")

    def _send_static(self, name: str) -> None:
        entry = self.viewer.static.get(name)
        if entry is None:
            raise KeyError(f"no static file {name!r}")
        ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
        if ctype.startswith("text/") or ctype.endswith("javascript"):
            ctype += "; charset=utf-8"
        self._send(HTTPStatus.OK, ctype, entry.read_bytes(), cache=True)

    def _send_blob(self, key: str, sha256: str, query: dict) -> None:
        name = _arg(query, "name") or sha256
        guessed = mimetypes.guess_type(name)[0] or ""
        download = _arg(query, "download") == "1"
        ctype = guessed if guessed in INLINE_IMAGES and not download else \
            "text/plain; charset=utf-8" if not download else "application/octet-stream"
        chunks = list(self.viewer.index.blob_chunks(key, sha256))
        disposition = "attachment" if download else "inline"
        safe_name = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)[:200]
        self._send(HTTPStatus.OK, ctype, b"".join(chunks), csp=USER_CSP, headers={
            "Content-Disposition": f'{disposition}; filename="{safe_name}"'})

    def _send_json(self, status: int, obj) -> None:
        body = json.dumps(obj, separators=(",", ":"), default=str).encode()
        self._send(status, "application/json", body)

    def _send(self, status: int, ctype: str, body: bytes, csp: str = PAGE_CSP,
              cache: bool = False, headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Security-Policy", csp)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Cache-Control", "max-age=3600" if cache else "no-store")
        if getattr(self, "_set_cookie", False):
            self.send_header("Set-Cookie", f"{TOKEN_COOKIE}={self.viewer.token}; Path=/; "
                                           "HttpOnly; SameSite=Strict")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


def make_server(viewer: Viewer, host: str, port: int) -> ThreadingHTTPServer:
    """A server bound to ``host:port`` (0: a free port). Off loopback a token is required."""
    if not is_loopback(host) and not viewer.token:
        raise ValueError(f"binding {host!r} (not loopback) needs a token (Viewer(token=...)); "
                         "bind 127.0.0.1 to serve this machine only")
    handler = type("ViewerHandler", (Handler,), {"viewer": viewer})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


def url_of(server: ThreadingHTTPServer, host: str, token: str | None) -> str:
    port = server.server_address[1]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/" + (f"?token={token}" if token else "")
