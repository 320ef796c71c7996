"""HTTP to one Comet server: sessions, auth header, Idempotency-Key, timeouts, TLS.

One :class:`requests.Session` per thread (sessions are not safe to share across threads), each
with keep-alive connections. Every request carries ``Authorization: <api key>`` (Comet's form,
no ``Bearer``) and a stable ``Idempotency-Key``. TLS certificates are verified, against
``--ca-bundle`` when given.

:meth:`Client.send` never retries: it returns the response or raises :class:`TransportError`
saying whether the request certainly never reached the server (``sent=False``: connection
refused, DNS failure, connect timeout) or may have been applied (``sent=True``: timeout while
waiting for the answer, connection dropped after sending). The replay decides what to do.
"""

from __future__ import annotations

import gzip
import logging
import threading
from dataclasses import dataclass
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError

from uploader import __version__
from uploader.config import UploadConfig
from uploader.errors import redact
from uploader.requests_builder import BuiltRequest
from uploader.retry import RetryPolicy

logger = logging.getLogger(__name__)

USER_AGENT = f"comet-journal-uploader/{__version__}"


class TransportError(Exception):
    """No HTTP answer. ``sent`` is False only when the request surely never left."""

    def __init__(self, detail: str, sent: bool):
        self.detail = redact(detail)
        self.sent = sent
        super().__init__(self.detail)


@dataclass
class Answer:
    """An HTTP answer, reduced to what the replay needs."""

    status: int
    headers: Any
    body: bytes

    def json(self) -> Any:
        import json
        try:
            return json.loads(self.body or b"null")
        except ValueError:
            return None

    def message(self) -> str:
        """The server's error message (Comet puts it in ``msg``), redacted and shortened."""
        data = self.json()
        text = ""
        if isinstance(data, dict):
            text = str(data.get("msg") or data.get("message") or data.get("error") or "")
            code = data.get("sdk_error_code")
            if code:
                text = f"{text} (sdk_error_code {code})" if text else f"sdk_error_code {code}"
        if not text:
            text = self.body[:300].decode("utf-8", errors="replace").strip()
        return redact(text)[:500]


def _never_sent(exc: BaseException) -> bool:
    """True when a requests exception proves the request never reached the server."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    seen = set()
    stack = [exc]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, (NewConnectionError, ConnectTimeoutError, NameResolutionError)):
            return True
        if isinstance(e, ConnectionRefusedError):
            return True
        stack.extend([getattr(e, "reason", None), e.__cause__, e.__context__])
        stack.extend(a for a in getattr(e, "args", ()) if isinstance(a, BaseException))
    return False


class Client:
    """Sends :class:`BuiltRequest` objects to ``config.url``."""

    def __init__(self, config: UploadConfig, policy: RetryPolicy, pool_size: int = 8):
        self.config = config
        self.policy = policy
        self.pool_size = pool_size
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._lock = threading.Lock()
        self.requests_sent = 0

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            adapter = HTTPAdapter(pool_connections=1, pool_maxsize=2, max_retries=0)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            session.headers.update({"Authorization": self.config.api_key.reveal(),
                                    "User-Agent": USER_AGENT})
            session.verify = self.config.ca_bundle or True
            self._local.session = session
            with self._lock:
                self._sessions.append(session)
        return session

    def send(self, request: BuiltRequest, idempotency_key: str | None = None,
             extra_headers: dict | None = None) -> Answer:
        """Send once; return the answer (any status) or raise :class:`TransportError`."""
        headers = {}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        if extra_headers:
            headers.update(extra_headers)
        data: Any = request.body
        if request.stream is not None:
            data = request.stream()
        if request.content_type:
            headers["Content-Type"] = request.content_type
        if request.gzip and isinstance(data, bytes):
            data = gzip.compress(data, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        read_timeout = self.policy.upload_timeout_s if request.upload else \
            self.policy.read_timeout_s
        url = self.config.url + request.path
        self.requests_sent += 1
        try:
            response = self._session().request(
                request.method, url, params=request.params or None, data=data,
                headers=headers, timeout=(self.policy.connect_timeout_s, read_timeout),
                allow_redirects=False)
            body = response.content
        except requests.exceptions.RequestException as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}", sent=not _never_sent(exc)) \
                from None
        return Answer(response.status_code, response.headers, body)

    def get_json(self, path: str, params: dict | None = None) -> tuple[int, Any]:
        """A read-API GET: ``(status, parsed JSON or None)``; raises TransportError."""
        answer = self.send(BuiltRequest("GET", path, {k: _q(v) for k, v in (params or {}).items()
                                                      if v is not None}))
        return answer.status, answer.json()

    def close(self) -> None:
        with self._lock:
            for session in self._sessions:
                session.close()
            self._sessions.clear()


def _q(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
