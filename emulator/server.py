"""The emulator as a real HTTP server: :class:`Emulator`.

A stdlib ``ThreadingHTTPServer`` (a thread per connection, HTTP/1.1 keep-alive) on a real
socket. ``TCP_NODELAY`` is set on every connection and each response leaves in one write:
with Nagle's algorithm on, a small response waits for the client's delayed ACK (about 40 ms),
which caps one keep-alive client at a few dozen requests per second.

Example::

    from comet_journal.emulator.server import Emulator

    with Emulator(api_key="k", faults={"rules": [{"kind": "latency", "ms": 25}]}) as emu:
        requests.post(emu.url + "/api/rest/v2/write/experiment/create",
                      json={"workspaceName": "ws", "projectName": "p"},
                      headers={"Authorization": "k"})
        emu.state()["experiments"]

An *outage* fault closes the listening socket (new connections are refused, open ones are
cut) and opens it again on the same port when the outage ends.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import socket
import socketserver
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from comet_journal.emulator.app import Application
from comet_journal.emulator.errors import BACKEND_CUSTOM_ERROR, ApiError
from comet_journal.emulator.faults import FaultPlan
from comet_journal.emulator.routes import Router
from comet_journal.emulator.store import Store
from comet_journal.emulator.wire import (Request, Response, chunked, encode_head,
                                        error_response, read_body, split_target)

logger = logging.getLogger(__name__)

POLL_INTERVAL_S = 0.01  # how quickly serve_forever notices a shutdown (stop, outage)
SLOW_BODY_PIECES = 20  # a slow body arrives in this many pieces at most


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    disable_nagle_algorithm = True  # TCP_NODELAY: see the module docstring
    server_version = "comet-emulator"
    sys_version = ""
    server: "_HTTPServer"

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.untrack(self.connection)

    def _dispatch(self) -> None:
        try:
            body = read_body(self.rfile, self.headers)
        except ApiError as exc:
            self.close_connection = True  # the body's end is unknown: do not reuse
            self._write(error_response(exc))
            return
        except (ConnectionError, ValueError):
            self.close_connection = True
            return
        path, query = split_target(self.path)
        response = self.server.app.handle(Request(self.command, path, query, self.headers, body))
        logger.debug("%s %s -> %s", self.command, path,
                     "dropped" if response.drop else response.status)
        self._write(response)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _dispatch

    def _write(self, response: Response) -> None:
        if response.outage_s:
            self.server.emulator._start_outage(response.outage_s)
        if response.drop:
            self.close_connection = True  # no answer: the connection just closes
            return
        if response.stream is not None and response.slow_body_s:  # a fault: trickled whole
            response.body, response.stream = b"".join(response.stream), None
        head = encode_head(response, self.close_connection)
        if response.stream is not None:  # never held whole: written as it is made
            self.wfile.write(head)
            for piece in chunked(response.stream):
                self.wfile.write(piece)
        elif response.slow_body_s and response.body:
            self.wfile.write(head)
            body, pieces = response.body, min(len(response.body), SLOW_BODY_PIECES)
            size = math.ceil(len(body) / pieces)
            for start in range(0, len(body), size):
                time.sleep(response.slow_body_s / pieces)
                self.wfile.write(body[start:start + size])
        else:
            self.wfile.write(head + response.body)  # one write, one segment

    def send_error(self, code: int, message: str | None = None, explain: str | None = None
                   ) -> None:
        """Malformed requests get Comet's JSON error body too."""
        self.close_connection = True
        body = json.dumps({"msg": message or explain or "bad request", "code": code,
                           "sdk_error_code": BACKEND_CUSTOM_ERROR}).encode("utf-8")
        try:
            self.wfile.write(encode_head(Response(code, body), True) + body)
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s - %s", self.address_string(), format % args)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], app: Application, emulator: "Emulator"):
        self.app = app
        self.emulator = emulator
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN: a DNS lookup we do not need
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def handle_error(self, request, client_address) -> None:
        # A client that hangs up mid-request (or a fault that cuts it) is routine here:
        # log it quietly instead of printing a traceback to stderr.
        logger.debug("connection from %s ended abruptly", client_address, exc_info=True)

    def track(self, conn: socket.socket) -> None:
        with self._connections_lock:
            self._connections.add(conn)

    def untrack(self, conn: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(conn)

    def cut_connections(self) -> None:
        """Shut every open connection (their handler threads then end)."""
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def reopen(self) -> None:
        """Listen again on the same address after an outage."""
        self.socket = socket.socket(self.address_family, self.socket_type)
        self.server_bind()
        self.server_activate()


class Emulator:
    """A local Comet-compatible server with fault injection, on a real socket.

    :param db_path: the SQLite state file (created if missing, reused if it exists);
        ``None`` uses a temporary file removed by :meth:`stop`.
    :param api_key: the only key accepted in the ``Authorization`` header.
    :param port: 0 picks a free port (see :attr:`url` once started).
    :param faults: a fault spec (dict, list, JSON text or a file path; see
        :mod:`comet_journal.emulator.faults`).
    :param store_asset_bytes: keep uploaded bytes (else only their sha256 and size).
    :param dedupe: answer a request whose ``Idempotency-Key`` was already applied with the
        stored response, without applying it again (as a careful real server would).
    :param clientlib: serve the SDK's own routes too; ``False`` makes a bare server with only
        the documented writes and the reads (404 for the rest).
    """

    def __init__(self, db_path: str | os.PathLike | None = None, api_key: str = "test-key",
                 host: str = "127.0.0.1", port: int = 0, faults: Any = None,
                 store_asset_bytes: bool = True, dedupe: bool = False, clientlib: bool = True):
        if not api_key:
            raise ValueError("api_key must not be empty")
        FaultPlan(faults, Router.route_names())  # a bad spec fails here, not at start()
        self.db_path = None if db_path is None else os.fspath(db_path)
        self.host, self.port = host, port
        self._api_key = api_key
        self._faults = faults
        self.store_asset_bytes = store_asset_bytes
        self.dedupe = dedupe
        self.clientlib = clientlib
        self._tmpdir: str | None = None
        self._store: Store | None = None
        self._app: Application | None = None
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._outage_lock = threading.Lock()
        self._in_outage = False
        self._outage_s = 0.0
        self._timers: list[threading.Timer] = []

    def __repr__(self) -> str:
        return f"<Emulator {self.url if self._httpd else 'stopped'} db={self.db_path}>"

    @property
    def url(self) -> str:
        """The server root, e.g. ``http://127.0.0.1:54321``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def app(self) -> Application:
        if self._app is None:
            raise RuntimeError("the emulator is not started")
        return self._app

    def start(self) -> "Emulator":
        """Open the state and serve in a background thread; return ``self``."""
        if self._httpd is not None:
            raise RuntimeError("the emulator is already started")
        if self.db_path is None:
            self._tmpdir = tempfile.mkdtemp(prefix="comet-emulator-")
            self.db_path = os.path.join(self._tmpdir, "state.db")
        self._store = Store(self.db_path, self.store_asset_bytes)
        self._app = Application(self._store, self._api_key, dedupe=self.dedupe,
                                clientlib=self.clientlib, faults=self._faults,
                                on_outage=self._start_outage, on_plan=self._schedule)
        self._stopping.clear()
        self._httpd = _HTTPServer((self.host, self.port), self._app, self)
        self.port = self._httpd.server_address[1]
        self._app.base_url = self.url
        self._schedule(self._app.plan)
        self._thread = threading.Thread(target=self._serve_loop, name="comet-emulator",
                                        daemon=True)
        self._thread.start()
        logger.info("comet emulator listening on %s (state in %s)", self.url, self.db_path)
        return self

    def stop(self) -> None:
        """Stop serving, cut open connections, save counts, close the state."""
        if self._httpd is None:
            return
        self._stopping.set()
        for timer in self._timers:
            timer.cancel()
        with self._outage_lock:
            in_outage = self._in_outage
        if not in_outage:
            self._httpd.shutdown()
        self._thread.join(timeout=10)
        self._httpd.server_close()
        self._httpd.cut_connections()
        self._app.save_counts()
        self._store.close()
        self._httpd = self._thread = None
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = self.db_path = None

    def __enter__(self) -> "Emulator":
        return self.start() if self._httpd is None else self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def state(self) -> dict:
        """The same dict as ``GET /emulator/state``."""
        return self.app.state()

    def set_faults(self, spec: Any) -> dict:
        """Replace the fault spec (``None`` clears it); return it as installed."""
        if self._app is None:
            FaultPlan(spec, Router.route_names())
            self._faults = spec
            return spec
        return self._app.set_faults(spec).spec

    def clear_faults(self) -> None:
        self.set_faults(None)

    # --- outages ----------------------------------------------------------------------------

    def _schedule(self, plan: FaultPlan) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers = []
        for start_s, duration_s in plan.scheduled_outages():
            timer = threading.Timer(start_s, self._scheduled_outage, (duration_s,))
            timer.daemon = True
            timer.start()
            self._timers.append(timer)

    def _scheduled_outage(self, duration_s: float) -> None:
        self.app.count_fault("outage")
        self._start_outage(duration_s)

    def _start_outage(self, duration_s: float) -> None:
        with self._outage_lock:
            if self._in_outage or self._stopping.is_set():
                return
            self._in_outage = True
            self._outage_s = duration_s
        # shutdown() waits for the serve loop: not on the handler thread that asked
        threading.Thread(target=self._httpd.shutdown, name="comet-emulator-outage",
                         daemon=True).start()

    def _serve_loop(self) -> None:
        httpd = self._httpd
        while True:
            httpd.serve_forever(poll_interval=POLL_INTERVAL_S)
            if self._stopping.is_set():
                return
            httpd.socket.close()  # connections are refused from now on
            httpd.cut_connections()
            logger.info("outage: refusing connections for %.3f s", self._outage_s)
            stopped = self._stopping.wait(self._outage_s)
            if not stopped:
                httpd.reopen()
            with self._outage_lock:
                self._in_outage = False
            if stopped:
                return
