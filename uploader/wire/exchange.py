"""The one retry loop: a request to the server until it is answered for good.

Used by every write and every read-back alike (:meth:`Link.exchange`, :meth:`Link.read`):

* 2xx with Comet's JSON: done; a 2xx whose body is empty, an HTML page or not JSON is not
  Comet answering (a proxy, a login page): its outcome is unknown, so it is retried like a
  5xx (``on_ambiguous`` first), never taken as done; a 3xx: :class:`ServerProtocolError` at
  once (redirects are not followed, see :mod:`comet_journal.uploader.wire.client`);
* 401/403: :class:`AuthError` stops the whole upload; 429: every request to the server pauses
  for ``Retry-After``/``Retry-After-Custom`` (or a backoff); connection errors, timeouts, 408
  and 5xx: retried with capped full-jitter backoff within the deadline; any other 4xx: a
  permanent answer (a rejection for a write, "absent" for a read);
* an attempt whose outcome is unknown (the request may have reached the server: a timeout
  while waiting, a dropped connection, a 5xx) makes the next attempt start with
  ``on_ambiguous`` (a read-back): if it says the server has the call, the exchange ends as
  ``found`` without resending; or, with ``park``, the exchange ends at once as ``in_doubt``
  (the caller parks the call and resolves it later together with others: one read for many).

Writes are progress for the deadline clock (:meth:`ServerGate.ok`); reads are not: a server
that answers reads but fails every write must still reach the deadline.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from comet_journal.schema.blobs import MissingBlobError
from comet_journal.uploader.errors import AuthError, ServerProtocolError, Stopped
from comet_journal.uploader.wire.client import Answer, Client, TransportError
from comet_journal.uploader.wire.requests import BuiltRequest
from comet_journal.uploader.wire.retry import RetryPolicy, ServerGate, parse_retry_after

logger = logging.getLogger(__name__)

READ_PREFIX = "/api/rest/v2/"
# What an answer means for the exchange (an unknown outcome is the failure in words).
_DONE, _RETRY, _PAUSED = "done", "retry", "paused"


@dataclass
class Outcome:
    """The result of one exchange, or of one job (several exchanges) for the replay."""

    ok: bool
    found: bool = False  # done because a read-back found it on the server
    status: int = 0
    message: str = ""
    attempts: int = 0
    retries: int = 0
    throttled: int = 0
    bytes_sent: int = 0
    server_key: str | None = None  # an experiment's creation: the server's key
    link: str | None = None
    method: str | None = None  # how the experiment was created
    project_id: tuple | None = None  # (workspace, project, id) learned by a project create
    batch: bool = False
    parts: list | None = None  # [(call, Outcome)] when a job's calls have verdicts of their own
    held: bool = False  # not sendable to this server (an SDK route it lacks): kept pending
    in_doubt: bool = False  # parked: the request may or may not have been applied
    answer: Any = field(default=None, repr=False)

    def add_counts(self, other: "Outcome") -> None:
        """Add ``other``'s attempts, retries, throttles and bytes to this one's."""
        self.attempts += other.attempts
        self.retries += other.retries
        self.throttled += other.throttled
        self.bytes_sent += other.bytes_sent


class Unresolvable(LookupError):
    """A request cannot be built: it refers to something the server does not have (a
    project id). The exchange ends as a rejection that was never sent."""


class Link:
    """One replay's line to one server: the HTTP client, the (maybe shared) server gate, the
    retry policy and the replay's stop event. Safe to use from several threads.

    :param url: for messages; :param key_source: where the API key came from (for hints).
    """

    def __init__(self, client: Client, gate: ServerGate, policy: RetryPolicy,
                 stop: threading.Event, url: str, key_source: str = ""):
        self.client = client
        self.gate = gate
        self.policy = policy
        self.stop = stop
        self.url = url
        self.key_source = key_source
        self._job = threading.local()
        # jobs that ended in doubt since the last write answered for good (any thread): when
        # more than one in a row, parking paces like a retry (a server failing everything)
        self._doubts_in_a_row = 0

    # --- one job's trace (worker threads) ------------------------------------------------

    def begin_job(self) -> None:
        """A worker starts a job: nothing of it has been written to the server yet."""
        self._job.sent = False

    def job_sent(self) -> bool:
        """Did a write request of this thread's current job go on the wire?"""
        return getattr(self._job, "sent", False)

    # --- the loop ----------------------------------------------------------------------------

    def exchange(self, build: Callable[[], BuiltRequest], idempotency_key: str | None,
                 label: str, on_ambiguous: Callable[[], bool | None] | None = None,
                 accept: Callable[[Answer], bool] | None = None, retry: bool = True,
                 write: bool = True,
                 usable: Callable[[Answer], str | None] | None = None,
                 park: bool = False) -> Outcome:
        """Send ``build()`` until it is answered for good (see the module docstring).

        :param accept: an answer outside 2xx that still counts as done (``ok``).
        :param usable: for a 2xx answer, what is missing from it (None: nothing): an answer
            without what the caller needs (a create without a key) is an unknown outcome,
            retried like a 5xx (read-back first), never taken as done.
        :param retry: False: one attempt, any failure is returned as an outcome (a probe).
        :param write: False for reads: not progress, and not a write of the current job.
        :param park: an attempt of unknown outcome ends the exchange (``in_doubt``) instead
            of a read-back and a resend here: the caller resolves it later.
        """
        gate = self.gate
        out = Outcome(ok=False)
        ambiguous = False
        while True:
            self._wait_turn()
            if ambiguous and on_ambiguous is not None and on_ambiguous():
                gate.ok()  # progress: found on the server
                out.ok = out.found = True
                return out
            try:
                request = build()
            except Unresolvable as exc:
                out.message = str(exc)
                return out
            out.attempts += 1
            if write:
                self._job.sent = True
            try:
                answer = self.client.send(request, idempotency_key)
            except TransportError as exc:
                ambiguous = exc.sent
                if ambiguous and park:
                    return self._parked(out, f"{label}: {exc.detail}")
                if not self._retrying(out, retry, f"{label}: {exc.detail}"):
                    out.message = exc.detail
                    return out
                continue
            except MissingBlobError:
                raise  # the journal's bytes are damaged: the caller names the journal
            except LookupError as exc:  # a request body that cannot be read from the journal
                out.message = f"journal: {exc}"
                return out
            out.bytes_sent += request.size
            out.status, out.answer = answer.status, answer
            if not retry and not 200 <= answer.status < 400:  # a probe: the answer is it
                out.message = answer.message()
                return out
            verdict = self._judge(request, answer, label, out, accept, usable, write)
            if verdict == _DONE:
                if write:
                    self._doubts_in_a_row = 0
                return out
            if not retry:  # a probe answered 2xx, but not by Comet
                out.message = verdict
                return out
            ambiguous = verdict != _RETRY and verdict != _PAUSED
            if ambiguous and park:
                return self._parked(out, verdict)
            if verdict != _PAUSED:
                self._retrying(out, retry, verdict if ambiguous else
                               f"{label}: HTTP {answer.status}: {answer.message()}")

    def _parked(self, out: Outcome, failure: str) -> Outcome:
        """End an exchange whose last attempt's outcome is unknown, for the caller to park.
        A lone failure among successes costs nothing more; failures in a row back off as
        retries would, so a server failing every request is not sent new ones at full
        speed."""
        logger.debug("%s (in doubt: read back later)", failure)
        out.retries += 1  # a transient failure: found later, or sent again
        self._doubts_in_a_row += 1
        if self._doubts_in_a_row > 1:
            self.gate.backoff(min(self._doubts_in_a_row - 2, 30), failure, self.policy.sleep)
        else:
            self.gate.last_failure = failure
        out.in_doubt, out.message = True, failure
        return out

    def _wait_turn(self) -> None:
        if self.stop.is_set():
            raise Stopped()
        self.gate.wait_turn(self.stop, self.policy.sleep)
        if self.stop.is_set():
            raise Stopped()

    def _retrying(self, out: Outcome, retry: bool, failure: str) -> bool:
        """Back off before the next attempt (False: no retries for this exchange)."""
        if not retry:
            return False
        out.retries += 1
        logger.debug("%s (retrying)", failure)
        self.gate.backoff(out.retries - 1, failure, self.policy.sleep)
        return True

    def _judge(self, request: BuiltRequest, answer: Answer, label: str, out: Outcome,
               accept: Callable[[Answer], bool] | None,
               usable: Callable[[Answer], str | None] | None, write: bool) -> str:
        """What an answer means: ``_DONE`` (``out`` says how), ``_RETRY`` (a transient
        failure), ``_PAUSED`` (throttled), or, for an answer of unknown outcome, the failure
        in words (the next attempt starts with a read-back). Raises for answers no retry
        fixes (a redirect, a refused key)."""
        status = answer.status
        if 300 <= status < 400:
            raise self._redirected(request, answer, label)
        if 200 <= status < 300:
            garbage = answer.not_comet()
            if garbage is None and usable is not None:
                garbage = usable(answer)
            if garbage is None:
                if write:
                    self.gate.ok()
                out.ok = True
                return _DONE
            # Not Comet answering: nothing says the request was applied, nor that it was
            # not. Never taken as done; retried like a 5xx (read-back first).
            failure = f"{label}: HTTP {status} but {garbage}"
            logger.debug("%s (retrying)", failure)  # -v: the gate logs each cause once
            return failure
        if accept is not None and accept(answer):
            self.gate.ok()
            out.ok = True
            return _DONE
        if status in (401, 403):
            what = "refused the API key" if status == 401 else "denied access"
            raise AuthError(f"{self.url} {what} (HTTP {status}: {answer.message()}) for {label}",
                            f"check the API key (from {self.key_source or 'its source'}) "
                            "and that it may write to this workspace")
        if status == 429:
            out.throttled += 1
            wait = parse_retry_after(answer.headers)
            if wait is None:
                wait = self.policy.backoff(out.throttled)
            self.gate.last_failure = f"{label}: throttled (HTTP 429)"
            logger.info("server throttled us: pausing all requests for %.2f s", wait)
            self.gate.pause(wait)
            return _PAUSED
        if self.policy.is_retryable_status(status):
            return f"{label}: HTTP {status}: {answer.message()}" if status >= 500 else _RETRY
        if write:
            self.gate.ok()  # a rejection for good is progress too
        out.message = answer.message()
        return _DONE

    def read(self, path: str, **params: Any) -> Any:
        """GET a REST v2 read endpoint through the same loop: its JSON, or ``None`` when the
        server says the thing is absent (404) or has no such endpoint."""
        query = {k: (("true" if v else "false") if isinstance(v, bool) else str(v))
                 for k, v in params.items() if v is not None}
        out = self.exchange(lambda: BuiltRequest("GET", READ_PREFIX + path, query), None,
                            f"read-back {path}", write=False)
        return out.answer.json() if out.ok else None

    def _redirected(self, request: BuiltRequest, answer: Answer,
                    label: str) -> ServerProtocolError:
        location = str(answer.headers.get("Location") or "")
        where = f" to {location}" if location else " (without a Location)"
        hint = "give the server's own address with --url"
        target = location.split("?", 1)[0]
        if target.endswith(request.path) and "://" in target:
            root = target[: len(target) - len(request.path)]
            hint = f"pass --url {root} (the address the server redirects to)"
        return ServerProtocolError(
            f"{self.url} answered {request.method} {request.path} ({label}) with a redirect "
            f"(HTTP {answer.status}){where}; comet-upload does not follow redirects: a "
            "redirected POST loses its body, and the API key would go to another address",
            hint)
