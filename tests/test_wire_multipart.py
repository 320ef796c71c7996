"""Multipart uploads go with an exact Content-Length (never chunked), streamed from the
journal: some proxies answer 411 to a chunked upload, and the official SDK sends a length."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from comet_journal import Experiment
from comet_journal.schema.journal import sqlite_connect
from comet_journal.uploader.config import resolve
from comet_journal.uploader.wire.client import Client
from comet_journal.uploader.wire.requests import Overrides, RequestBuilder
from comet_journal.uploader.wire.retry import RetryPolicy


class _Recorder(BaseHTTPRequestHandler):
    seen: list = []

    def do_POST(self):  # noqa: N802 (http.server's name)
        length = self.headers.get("Content-Length")
        body = self.rfile.read(int(length)) if length else b""
        type(self).seen.append({"length": length, "te": self.headers.get("Transfer-Encoding"),
                                "body": body})
        data = json.dumps({"ok": True}).encode()
        self.send_response(411 if not length else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_an_asset_upload_carries_its_exact_length_and_the_journals_bytes(tmp_path):
    payload = bytes(range(256)) * 8000  # 2 MB: several journal chunks
    (tmp_path / "weights.bin").write_bytes(payload)
    journal = tmp_path / "run.db"
    with Experiment(journal=str(journal)) as exp:
        exp.log_asset(str(tmp_path / "weights.bin"))
    conn = sqlite_connect(str(journal))
    row = conn.execute("SELECT payload, ts_ms FROM calls WHERE endpoint='upload_asset'").fetchone()
    builder = RequestBuilder(Overrides(), lambda: conn)
    request = builder.build("upload_asset", json.loads(row[0]), server_key="k" * 32,
                            ts_ms=row[1])
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    _Recorder.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        config = resolve(api_key="key", url=f"http://127.0.0.1:{server.server_port}")
        client = Client(config, RetryPolicy())
        answer = client.send(request)
        client.close()
    finally:
        server.shutdown()
        conn.close()
    seen = _Recorder.seen[0]
    assert answer.status == 200
    assert seen["te"] is None and int(seen["length"]) == request.size == len(seen["body"])
    assert payload in seen["body"]  # the journal's bytes, inside the multipart body
