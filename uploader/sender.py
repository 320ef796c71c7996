"""Sending one job (a call, or a batch of calls) with retries, read-backs and creation.

Runs in the replay's worker threads. The retry loop (:meth:`Sender._exchange`) is where the
issue's rules live:

* 2xx with Comet's JSON: acknowledged; a 2xx whose body is empty, an HTML page or not JSON
  is not Comet answering (a proxy, a login page): its outcome is unknown, so it is retried
  like a 5xx (read-back first), never acknowledged; a 3xx: :class:`ServerProtocolError` at
  once (redirects are not followed, see :mod:`comet_journal.uploader.client`); a damaged blob met while
  sending: :class:`JournalDamagedError` (names the journal and the call), the upload stops;
* 401/403: :class:`AuthError` stops the whole upload at once; 429: every
  request to the server pauses for ``Retry-After``/``Retry-After-Custom`` (or a backoff);
  connection errors, timeouts, 408 and 5xx: retried with capped full-jitter backoff within the
  deadline; any other 4xx: a permanent rejection, reported and kept for ``--retry-rejected``;
* an attempt whose outcome is unknown (the request may have reached the server: a timeout
  while waiting, a dropped connection, a 5xx) makes the next attempt start with a read-back
  (:mod:`comet_journal.uploader.readback`): if the server has the call, it is acked without resending.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from comet_journal.schema.blobs import MissingBlobError
from comet_journal.schema.catalogue import ENDPOINTS, endpoint_named
from comet_journal.uploader.bulk import MetricGroup, send_group
from comet_journal.uploader.calls import Call
from comet_journal.uploader.client import Answer, TransportError
from comet_journal.uploader.errors import (AuthError, JournalDamagedError, ServerProtocolError, Stopped,
                             UploadError, redact)
from comet_journal.uploader.progress import ExperimentTarget
from comet_journal.uploader.readback import ReadBack
from comet_journal.uploader.requests_builder import BuiltRequest, encode_json
from comet_journal.uploader.retry import parse_retry_after

if TYPE_CHECKING:
    from comet_journal.uploader.replay import Replayer

logger = logging.getLogger(__name__)

CLIENT_KEY = "client-key"
REST_CREATE = "rest-create"
ALREADY_EXISTS_CODE = 90999


@dataclass
class Outcome:
    """The result of one job, reported to the dispatcher."""

    ok: bool
    found: bool = False  # acked because a read-back found it on the server
    status: int = 0
    message: str = ""
    attempts: int = 0
    retries: int = 0
    throttled: int = 0
    bytes_sent: int = 0
    server_key: str | None = None
    link: str | None = None
    method: str | None = None
    project_id: tuple | None = None
    batch: bool = False
    parts: list | None = None  # [(call, Outcome)] for batches
    answer: Any = field(default=None, repr=False)


class Sender:
    def __init__(self, replayer: "Replayer"):
        self.r = replayer
        self.clientlib = False
        self.batch_ok: dict[str, bool] = {}
        self.readback = ReadBack(replayer)
        self.project_ids: dict[tuple[str, str], str] = {}

    # --- capabilities ---------------------------------------------------------------------

    def probe(self) -> None:
        """Does the server offer the SDK's clientlib endpoints (client keys, batches)?

        A server that only implements the documented endpoints answers 404 here; then every
        call goes through the documented REST v2 endpoints.
        """
        ep = endpoint_named("clientlib_is_alive")
        try:
            outcome = self._exchange(lambda: BuiltRequest(ep.method, ep.path), None,
                                     "probe", retry_statuses=False)
        except AuthError:
            raise
        self.clientlib = outcome.ok and isinstance(outcome.answer.json(), dict)
        for name in ("batch_metrics", "batch_parameters", "batch_output"):
            self.batch_ok[name] = self.clientlib
        logger.info("server %s: %s", self.r.config.url,
                    "offers the SDK's clientlib endpoints" if self.clientlib
                    else "documented REST endpoints only")

    def create_method(self, gate) -> str:
        target: ExperimentTarget = gate.target
        if target.method:
            return target.method  # keep what an earlier (maybe interrupted) run started
        return CLIENT_KEY if self.clientlib else REST_CREATE

    # --- jobs -------------------------------------------------------------------------------

    def send_call(self, job, target: ExperimentTarget | None) -> Outcome:
        if isinstance(job, list):
            return self._send_batch(job, target)
        if isinstance(job, MetricGroup):
            return send_group(self, job, target)
        call: Call = job
        if call.endpoint == "experiment_create":
            return self._create(call, target)
        key = target.server_key if target else None
        if call.maybe_sent:
            verdict = self.readback.applied(call, key)
            if verdict:
                self.r.gate.ok()  # progress: the call is settled
                return Outcome(ok=True, found=True)
        r = self.r

        def build() -> BuiltRequest:
            payload = call.payload
            return r.builder.build(call.endpoint, payload, server_key=key, ts_ms=call.ts_ms)

        self._resolve_projects(call)
        outcome = self._exchange(build, r.idempotency_key(call.seq), call.label(),
                                 on_ambiguous=lambda: self.readback.applied(call, key))
        if outcome.ok and call.endpoint == "project_create":
            data = outcome.answer.json() if outcome.answer is not None else None
            pid = data.get("projectId") if isinstance(data, dict) else None
            if pid:
                p = r.builder.overrides.apply(ENDPOINTS["project_create"], call.payload)
                self.project_ids[(p["workspaceName"], p["projectName"])] = pid
                outcome.project_id = (p["workspaceName"], p["projectName"], pid)
        return outcome

    def _resolve_projects(self, call: Call) -> None:
        ref = call.payload.get("projectId")
        if not (isinstance(ref, dict) and "$project" in ref):
            return
        overrides = self.r.builder.overrides
        payload = overrides.apply(ENDPOINTS[call.endpoint], call.payload)
        inner = payload["projectId"]["$project"]
        ws, name = inner["workspaceName"], inner["projectName"]
        if (ws, name) not in self.project_ids:
            known = self.r.progress_project_id(ws, name)
            pid = known or self.readback.project_id(ws, name)
            if pid:
                self.project_ids[(ws, name)] = pid
        self.r.builder.resolve_project = self._project_id_or_fail

    def _project_id_or_fail(self, ws: str, name: str) -> str:
        pid = self.project_ids.get((ws, name))
        if not pid:
            raise _Unresolvable(f"project {ws}/{name} does not exist on the server (its id is "
                                "needed for this call)")
        return pid

    # --- experiment creation ------------------------------------------------------------------

    def _create(self, call: Call, target: ExperimentTarget) -> Outcome:
        r = self.r
        payload = r.builder.overrides.apply(ENDPOINTS["experiment_create"], call.payload)
        method = target.method or (CLIENT_KEY if self.clientlib else REST_CREATE)
        journal_key = r.exp_rows[call.experiment_id][1]
        maybe_created = call.maybe_sent or bool(target.create_started_ms and
                                                target.create_started_ms < r.started_ms)
        if method == CLIENT_KEY:
            return self._create_by_key(call, payload, journal_key, maybe_created)
        return self._create_by_rest(call, target, payload, maybe_created)

    def _create_by_key(self, call: Call, payload: dict, key: str, maybe: bool) -> Outcome:
        """``logger/add/run`` with the journal's own key: creating twice is impossible, so an
        "already exists" answer after an ambiguous attempt means our experiment exists."""
        r = self.r
        ep = endpoint_named("clientlib_add_run")
        body = {"experimentKey": key, "projectName": payload.get("projectName"),
                "teamName": payload.get("workspaceName"), "offline": True,
                "local_timestamp": call.ts_ms, "libVersion": "comet-journal"}
        state = {"maybe": maybe}

        def build() -> BuiltRequest:
            data = encode_json({k: v for k, v in body.items() if v is not None})
            return BuiltRequest(ep.method, ep.path, body=data, content_type="application/json",
                                size=len(data))

        def on_ambiguous():
            state["maybe"] = True
            return None

        def exists(answer: Answer) -> bool:
            data = answer.json()
            code = data.get("sdk_error_code") if isinstance(data, dict) else None
            return answer.status in (400, 403, 409) and code == ALREADY_EXISTS_CODE

        outcome = self._exchange(build, r.idempotency_key(call.seq), call.label(),
                                 on_ambiguous=on_ambiguous, accept=exists)
        if not outcome.ok:
            return outcome
        if outcome.status >= 400:  # "already exists"
            if not state["maybe"]:
                return Outcome(ok=False, status=outcome.status, attempts=outcome.attempts,
                               message=f"an experiment with key {key} already exists on the "
                               "server and this upload did not create it (was this journal "
                               "uploaded from a copy?)")
            outcome.found = True
        data = outcome.answer.json() if outcome.answer is not None else {}
        data = data if isinstance(data, dict) else {}
        outcome.ok = True
        outcome.server_key = key
        outcome.link = data.get("focusUrl") or data.get("link")
        outcome.method = CLIENT_KEY
        name = payload.get("experimentName")
        if name:
            # logger/add/run takes no name; Comet names an experiment by its "Name" other
            # (what the SDK's set_name does). Idempotent: a resend sets the same name.
            def build_name() -> BuiltRequest:
                return r.builder.build("log_other", {"key": "Name", "value": name},
                                       server_key=key, ts_ms=call.ts_ms)

            def named() -> bool:
                data = self.readback.get("experiment/metadata", experimentKey=key)
                return isinstance(data, dict) and data.get("experimentName") == name

            if state["maybe"] and named():
                return outcome
            named_outcome = self._exchange(build_name, r.idempotency_key(f"{call.seq}-name"),
                                           f"{call.label()} name", on_ambiguous=named)
            outcome.attempts += named_outcome.attempts
            outcome.retries += named_outcome.retries
            if not named_outcome.ok:
                logger.warning("experiment %s: the name %r was refused (%s)", key, name,
                               named_outcome.message)
        return outcome

    def _create_by_rest(self, call: Call, target: ExperimentTarget, payload: dict,
                        maybe: bool) -> Outcome:
        """``write/experiment/create``: the server picks the key. An interrupted create may
        have made the experiment, so look for it (read API) before creating again."""
        r = self.r
        since = target.create_started_ms or int(time.time() * 1000)
        claimed = r.progress_claimed_keys()

        def find():
            return self.readback.find_experiment(payload, since, claimed)

        if maybe:
            found = find()
            if found:
                return Outcome(ok=True, found=True, server_key=found[0], link=found[1],
                               method=REST_CREATE)

        def build() -> BuiltRequest:
            return r.builder.build("experiment_create", call.payload, server_key=None,
                                   ts_ms=call.ts_ms)

        found_box: dict = {}

        def on_ambiguous():
            hit = find()
            if hit:
                found_box["hit"] = hit
                return True
            return False

        outcome = self._exchange(build, r.idempotency_key(call.seq), call.label(),
                                 on_ambiguous=on_ambiguous)
        outcome.method = REST_CREATE
        if not outcome.ok:
            return outcome
        if outcome.found:
            outcome.server_key, outcome.link = found_box["hit"]
            return outcome
        data = outcome.answer.json() if outcome.answer is not None else None
        key = data.get("experimentKey") if isinstance(data, dict) else None
        if not key:
            raise ServerProtocolError(
                f"{r.config.url} answered write/experiment/create without an experimentKey",
                "is --url the root of a Comet server?")
        outcome.server_key = key
        outcome.link = data.get("link")
        return outcome

    # --- batches --------------------------------------------------------------------------

    def _send_batch(self, calls: list[Call], target: ExperimentTarget) -> Outcome:
        from comet_journal.uploader.batches import send_batch
        return send_batch(self, calls, target)

    # --- the retry loop -------------------------------------------------------------------

    def _exchange(self, build: Callable[[], BuiltRequest], idempotency_key: str | None,
                  label: str, on_ambiguous: Callable[[], bool | None] | None = None,
                  accept: Callable[[Answer], bool] | None = None,
                  retry_statuses: bool = True) -> Outcome:
        r = self.r
        gate = r.gate
        attempts = retries = throttled = sent_bytes = 0
        ambiguous = False
        while True:
            if r.stop.is_set():
                raise Stopped()
            gate.wait_turn(r.stop, r.policy.sleep)
            if r.stop.is_set():
                raise Stopped()
            if ambiguous and on_ambiguous is not None:
                verdict = on_ambiguous()
                if verdict:
                    gate.ok()  # progress: found on the server
                    return Outcome(ok=True, found=True, attempts=attempts, retries=retries,
                                   throttled=throttled, bytes_sent=sent_bytes)
            ambiguous = False
            try:
                request = build()
            except _Unresolvable as exc:
                return Outcome(ok=False, status=0, message=str(exc), attempts=attempts)
            except MissingBlobError as exc:  # a small blob read into the body
                raise self._damaged(label, exc) from None
            attempts += 1
            r.note_sending()
            try:
                answer = r.client.send(request, idempotency_key)
            except TransportError as exc:
                ambiguous = exc.sent
                retries += 1
                if not retry_statuses:
                    return Outcome(ok=False, status=0, message=exc.detail, attempts=attempts)
                logger.debug("%s: %s (retrying)", label, exc.detail)
                gate.backoff(retries - 1, f"{label}: {exc.detail}", r.policy.sleep)
                continue
            except MissingBlobError as exc:  # a blob's bytes damaged, met while streaming
                raise self._damaged(label, exc) from None
            except LookupError as exc:
                return Outcome(ok=False, status=0, attempts=attempts,
                               message=f"journal: {redact(str(exc))}")
            sent_bytes += request.size
            status = answer.status
            if 300 <= status < 400:
                raise self._redirected(request, answer, label)
            if 200 <= status < 300:
                garbage = answer.not_comet()
                if garbage is None:
                    gate.ok()
                    return Outcome(ok=True, status=status, attempts=attempts, retries=retries,
                                   throttled=throttled, bytes_sent=sent_bytes, answer=answer)
                # Not Comet answering: nothing says the call was applied, nor that it was
                # not. Never acknowledged; retried like a 5xx (read-back first).
                failure = f"{label}: HTTP {status} but {garbage}"
                if not retry_statuses:
                    return Outcome(ok=False, status=status, message=failure, attempts=attempts,
                                   answer=answer)
                logger.info("%s (retrying)", failure)
                ambiguous = True
                retries += 1
                gate.backoff(retries - 1, failure, r.policy.sleep)
                continue
            if accept is not None and accept(answer):
                gate.ok()
                return Outcome(ok=True, status=status, attempts=attempts, retries=retries,
                               throttled=throttled, bytes_sent=sent_bytes, answer=answer)
            if not retry_statuses:
                return Outcome(ok=False, status=status, message=answer.message(),
                               attempts=attempts, answer=answer)
            if status in (401, 403):
                what = "refused the API key" if status == 401 else "denied access"
                raise AuthError(f"{r.config.url} {what} (HTTP {status}: {answer.message()}) "
                                f"for {label}",
                                f"check the API key (from {r.config.key_source}) and that it "
                                "may write to this workspace")
            if status == 429:
                throttled += 1
                wait = parse_retry_after(answer.headers)
                if wait is None:
                    wait = r.policy.backoff(throttled)
                gate.last_failure = f"{label}: throttled (HTTP 429)"
                logger.info("server throttled us: pausing all requests for %.2f s", wait)
                gate.pause(wait)
                continue
            if r.policy.is_retryable_status(status):
                ambiguous = status >= 500
                retries += 1
                gate.backoff(retries - 1, f"{label}: HTTP {status}: {answer.message()}",
                             r.policy.sleep)
                continue
            gate.ok()
            return Outcome(ok=False, status=status, message=answer.message(), attempts=attempts,
                           retries=retries, throttled=throttled, bytes_sent=sent_bytes,
                           answer=answer)


    def _damaged(self, label: str, exc: MissingBlobError) -> JournalDamagedError:
        return JournalDamagedError(
            self.r.path, f"{label}: MissingBlobError: {exc}",
            "the journal was altered or damaged after it was written: upload an intact copy "
            "(a backup) instead; the calls acknowledged so far stay recorded")

    def _redirected(self, request: BuiltRequest, answer: Answer,
                    label: str) -> ServerProtocolError:
        location = str(answer.headers.get("Location") or "")
        url = self.r.config.url
        where = f" to {location}" if location else " (without a Location)"
        hint = "give the server's own address with --url"
        target = location.split("?", 1)[0]
        if target.endswith(request.path) and "://" in target:
            root = target[: len(target) - len(request.path)]
            hint = f"pass --url {root} (the address the server redirects to)"
        return ServerProtocolError(
            f"{url} answered {request.method} {request.path} ({label}) with a redirect "
            f"(HTTP {answer.status}){where}; comet-upload does not follow redirects: a "
            "redirected POST loses its body, and the API key would go to another address",
            hint)


class _Unresolvable(LookupError):
    """A call refers to something the server does not have (a project id)."""


__all__ = ["Sender", "Outcome", "Stopped", "UploadError"]
