"""A tiny real HTTP(S) server that misbehaves in ways the emulator cannot (no tests here).

It sits in front of an emulator as a reverse proxy on ``127.0.0.1:0`` (stdlib
``http.server`` in a thread, real sockets, HTTP/1.1 keep-alive) and forwards every request
unchanged, except those a scripted :class:`Rule` matches: those get a made-up answer (an HTML
error page, an empty body, invalid JSON, a 200 of an unexpected shape, a redirect), either
*instead of* forwarding (the request never reaches the emulator) or *after* forwarding it
(the emulator applied it, the client gets garbage: the ambiguous case). With ``tls=`` it
serves HTTPS with the given certificate (see :func:`self_signed_certificate`).

Example::

    with MisbehavingServer(upstream=emulator.url) as proxy:
        proxy.add(Rule(path=ENDPOINTS["log_metric"].path, status=502, body=NGINX_502,
                       content_type="text/html", times=3))
        ... comet-upload --url proxy.url ...
        proxy.hits        # [(method, path, status answered, forwarded?)]
"""

from __future__ import annotations

import http.client
import os
import shutil
import ssl
import subprocess
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

NGINX_502 = (b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center>"
             b"<h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx/1.24.0</center>\r\n"
             b"</body>\r\n</html>\r\n")
LOGIN_PAGE = (b"<!DOCTYPE html><html><head><title>Sign in - Corporate Network</title></head>"
              b"<body><form action='/login'><input name='user'></form></body></html>")
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
              "proxy-authorization", "proxy-authenticate", "content-length", "host"}


@dataclass
class Rule:
    """A made-up answer for matching requests.

    :param path: the request path (without the query) must equal this, or start with it when
        it ends with ``*``; ``"*"`` matches every path.
    :param method: only this method (None: any).
    :param forward: send the request to the upstream first (it is applied there), then
        answer with the made-up answer anyway.
    :param times: answer this way this many times, then step aside (None: always).
    :param location: a ``Location`` header; ``{path}`` in it is replaced by the request's
        path and query (redirects).
    """

    path: str = "*"
    method: str | None = None
    status: int = 502
    body: bytes = b""
    content_type: str | None = None
    forward: bool = False
    times: int | None = None
    location: str | None = None
    used: int = field(default=0, compare=False)

    def matches(self, method: str, path: str) -> bool:
        if self.method and self.method != method:
            return False
        if self.times is not None and self.used >= self.times:
            return False
        if self.path == "*":
            return True
        if self.path.endswith("*"):
            return path.startswith(self.path[:-1])
        return path == self.path


class MisbehavingServer:
    """A reverse proxy to ``upstream`` with scripted misbehaviour. ``url`` is its root."""

    def __init__(self, upstream: str, tls: tuple[str, str] | None = None):
        parts = urlsplit(upstream)
        self.upstream_host = parts.hostname
        self.upstream_port = parts.port
        self.rules: list[Rule] = []
        self.hits: list[tuple[str, str, int, bool]] = []
        self._lock = threading.Lock()
        server = self

        class Handler(_Handler):
            owner = server

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        scheme = "http"
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="misbehaving",
                                        daemon=True)

    def add(self, rule: Rule) -> Rule:
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()

    def _rule_for(self, method: str, path: str) -> Rule | None:
        with self._lock:
            for rule in self.rules:
                if rule.matches(method, path):
                    rule.used += 1
                    return rule
        return None

    def start(self) -> "MisbehavingServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> "MisbehavingServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real proxy
    owner: MisbehavingServer

    def log_message(self, format, *args) -> None:  # quiet
        pass

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path = self.path.split("?", 1)[0]
        rule = self.owner._rule_for(self.command, path)
        forwarded = False
        if rule is None or rule.forward:
            status, headers, answer = self._forward(body)
            forwarded = True
        if rule is not None:
            status, answer = rule.status, rule.body
            headers = [("Content-Type", rule.content_type)] if rule.content_type else []
            if rule.location is not None:
                headers.append(("Location", rule.location.replace("{path}", self.path)))
        with self.owner._lock:
            self.owner.hits.append((self.command, path, status, forwarded))
        self.send_response(status)
        for name, value in headers:
            if name.lower() not in HOP_BY_HOP:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(answer)

    def _forward(self, body: bytes) -> tuple[int, list, bytes]:
        conn = http.client.HTTPConnection(self.owner.upstream_host, self.owner.upstream_port,
                                          timeout=60)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            headers["Content-Length"] = str(len(body))
            conn.request(self.command, self.path, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            conn.close()

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _serve


def self_signed_certificate(directory: str, host: str = "127.0.0.1") -> tuple[str, str]:
    """``(cert.pem, key.pem)``: a self-signed certificate for ``host`` (its own CA), made
    with the ``cryptography`` package if installed, else the ``openssl`` command."""
    cert = os.path.join(directory, "cert.pem")
    key = os.path.join(directory, "key.pem")
    try:
        _with_cryptography(cert, key, host)
    except ImportError:
        openssl = shutil.which("openssl")
        if openssl is None:
            raise RuntimeError("neither the cryptography package nor the openssl command is "
                               "available to make a test certificate") from None
        subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256",
                        "-days", "2", "-keyout", key, "-out", cert, "-subj", f"/CN={host}",
                        "-addext", f"subjectAltName=IP:{host},DNS:localhost",
                        "-addext", "basicConstraints=critical,CA:TRUE",
                        "-addext", "keyUsage=critical,digitalSignature,keyCertSign"],
                       check=True, capture_output=True)
    return cert, key


def _with_cryptography(cert_path: str, key_path: str, host: str) -> None:
    import datetime
    import ipaddress
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(host)), x509.DNSName("localhost")]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False,
                crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    with open(key_path, "wb") as fh:
        fh.write(key.private_bytes(serialization.Encoding.PEM,
                                   serialization.PrivateFormat.TraditionalOpenSSL,
                                   serialization.NoEncryption()))
    with open(cert_path, "wb") as fh:
        fh.write(cert.public_bytes(serialization.Encoding.PEM))
