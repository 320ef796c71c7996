"""HTTP to one Comet server: sessions, auth header, Idempotency-Key, timeouts, TLS.

One :class:`requests.Session` per thread (sessions are not safe to share across threads), each
with keep-alive connections. Every request carries ``Authorization: <api key>`` (Comet's form,
no ``Bearer``) and a stable ``Idempotency-Key``. TLS certificates are verified, against
``--ca-bundle`` when given; there is no way to turn verification off.

:meth:`Client.send` never retries: it returns the response or raises :class:`TransportError`
saying whether the request certainly never reached the server (``sent=False``: connection
refused, DNS failure, connect timeout) or may have been applied (``sent=True``: timeout while
waiting for the answer, connection dropped after sending). The replay decides what to do.
A certificate that cannot be verified (self-signed, wrong host) is not a transient failure:
it raises :class:`~comet_journal.uploader.errors.CertificateError` at once, naming ``--ca-bundle``.

Redirects are never followed (``allow_redirects=False``): ``requests`` turns a redirected
POST into a GET without its body, which a server answers 200 without applying anything, so a
followed redirect could mark calls uploaded that were not; and the API key would follow the
redirect to another host. The sender reports a 3xx as an error naming the new location.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError

from comet_journal.uploader import __version__
from comet_journal.uploader.config import UploadConfig
from comet_journal.uploader.errors import CertificateError, redact
from comet_journal.uploader.wire.requests import BuiltRequest
from comet_journal.uploader.wire.retry import RetryPolicy

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
    streamed: Any = None  # the AnswerSink that took the body (BuiltRequest.answer_to)

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except ValueError:
            return None

    def message(self) -> str:
        """The server's error message (Comet puts it in ``msg``), redacted and shortened;
        for a body that is not Comet's JSON, what it is (an HTML page and its title...)."""
        data = self.json()
        text = ""
        if isinstance(data, dict):
            text = str(data.get("msg") or data.get("message") or data.get("error") or "")
            code = data.get("sdk_error_code")
            if code:
                text = f"{text} (sdk_error_code {code})" if text else f"sdk_error_code {code}"
        if not text:
            text = self.describe_body()
        return redact(text)[:500]

    def is_html(self) -> bool:
        """An HTML (or other markup) page rather than JSON: by its type or its first byte."""
        ctype = str(self.headers.get("Content-Type") or "").lower()
        return "html" in ctype or self.body[:200].lstrip().startswith(b"<")

    def describe_body(self) -> str:
        """The body in a few words: ``an HTML page ('502 Bad Gateway')``, ``an empty
        body``, or its first characters."""
        body = self.body.strip()
        if not body:
            return "an empty body"
        if self.is_html():
            match = _TITLE.search(body[:4000])
            title = match.group(1) if match else body[:4000]
            words = " ".join(_TAG.sub(b" ", title).decode("utf-8", errors="replace").split())
            return f"an HTML page ({words[:80]!r})" if words else "an HTML page"
        return repr(body[:80].decode("utf-8", errors="replace"))

    def not_comet(self) -> str | None:
        """Why a 2xx answer cannot be Comet's API answering (None: it can).

        Comet answers every API request with JSON (``{}`` at least; comet-wire.md 5.2), so
        a success whose body is empty, an HTML page or not JSON at all comes from something
        else on the way (a proxy, a login page, a wrong ``--url``): nothing says the call
        was applied. 204 No Content is the one success without a body.
        """
        if self.status == 204:
            return None
        if self.streamed is not None:  # the body went to its reader, which checked it
            return self.streamed.problem()
        body = self.body.strip()
        if not body:
            return "the body is empty, not Comet's JSON"
        if self.is_html():
            return (f"the body is {self.describe_body()}, not Comet's JSON (a proxy or a login "
                    "page in the way? is --url the Comet server?)")
        if len(body) > _PARSED_UP_TO and body[:1] in b"{[" and body[-1:] in b"}]":
            # A large JSON document (a whole metric series): its reader decodes it item by
            # item; parsing it here as a whole would cost ~650 B of memory per point.
            return None
        try:
            json.loads(body)
        except ValueError:
            return f"the body is not JSON: {self.describe_body()}"
        return None


_PARSED_UP_TO = 1 << 20  # answers larger than this are checked by their shape only


_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(rb"<[^>]*>")


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

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            adapter = HTTPAdapter(pool_connections=1, pool_maxsize=2, max_retries=0)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            session.headers.update({"Authorization": self.config.api_key.reveal(),
                                    "User-Agent": USER_AGENT})
            # The environment is read once here, not on every request (requests' trust_env
            # scans os.environ and stats ~/.netrc per request: a third of a small request's
            # cost). Proxies (HTTP(S)_PROXY, NO_PROXY) and REQUESTS_CA_BUNDLE still apply; a
            # ~/.netrc entry no longer replaces our Authorization header.
            session.trust_env = False
            session.proxies = requests.utils.get_environ_proxies(self.config.url)
            session.verify = self.config.ca_bundle or os.environ.get("REQUESTS_CA_BUNDLE") \
                or os.environ.get("CURL_CA_BUNDLE") or True
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
        try:
            response = self._session().request(
                request.method, url, params=request.params or None, data=data,
                headers=headers, timeout=(self.policy.connect_timeout_s, read_timeout),
                allow_redirects=False, stream=True,
                # --ca-bundle per request too: with trust_env, requests lets
                # $REQUESTS_CA_BUNDLE/$CURL_CA_BUNDLE override a session's verify
                verify=self.config.ca_bundle or None)
            sink = request.answer_to() if request.answer_to is not None and \
                200 <= response.status_code < 300 else None
            # The whole answer is bounded, not only each read: a server trickling its answer
            # a byte at a time counts as a timeout. (A streamed series, consumed as it comes,
            # may take longer than that: each of its reads is bounded instead.)
            deadline = float("inf") if sink is not None else time.monotonic() + read_timeout
            body = _read_body(response, deadline, read_timeout, sink)
        except requests.exceptions.SSLError as exc:
            self._tls_failure(exc)
            raise TransportError(f"{type(exc).__name__}: {exc}", sent=not _never_sent(exc)) \
                from None
        except requests.exceptions.RequestException as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}", sent=not _never_sent(exc)) \
                from None
        return Answer(response.status_code, response.headers, body, sink)

    def _tls_failure(self, exc: BaseException) -> None:
        """Raise :class:`CertificateError` for TLS failures that no retry can fix."""
        text = str(exc)
        url = self.config.url
        if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text \
                or "doesn't match" in text or "Hostname mismatch" in text:
            reason = re.search(r"certificate verify failed: ([^(')\]]+)", text)
            why = reason.group(1).strip() if reason else "verification failed"
            if self.config.ca_bundle:
                hint = (f"the server's certificate is not signed by a CA in --ca-bundle "
                        f"{self.config.ca_bundle} (or does not name this host)")
            else:
                hint = ("if the server uses a private or self-signed certificate, pass "
                        "--ca-bundle PATH with its CA certificate (PEM); verification cannot "
                        "be turned off")
            raise CertificateError(f"cannot verify the TLS certificate of {url} ({why})",
                                   hint) from None
        if "WRONG_VERSION_NUMBER" in text or "wrong version number" in text:
            raise CertificateError(f"{url} does not answer TLS (is it http://, not https://?)",
                                   "check --url") from None

    def close(self) -> None:
        with self._lock:
            for session in self._sessions:
                session.close()
            self._sessions.clear()


def _read_body(response: requests.Response, deadline: float, limit_s: float,
               sink: Any = None) -> bytes:
    """The answer's body, read as it arrives, until ``deadline``: past it, the request
    timed out (its outcome is unknown: it was sent). With a ``sink``, the body goes there
    piece by piece and ``b""`` is returned."""
    raw = response.raw
    read = raw.read1 if hasattr(raw, "read1") else raw.read  # urllib3 < 2: whole blocks
    chunks = []
    try:
        while True:
            if time.monotonic() > deadline:
                raise requests.exceptions.Timeout(
                    f"the answer took longer than {limit_s:g} s in all (a slow or stalled "
                    "server); its outcome is unknown")
            chunk = read(65536, decode_content=True)
            if not chunk:
                break
            if sink is not None:
                sink.feed(chunk)
            else:
                chunks.append(chunk)
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise requests.exceptions.ConnectionError(f"reading the answer failed: {exc}") \
            from None
    finally:
        response.close()
    return b"".join(chunks)
