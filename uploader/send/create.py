"""Creating an experiment exactly once, whatever happened to earlier attempts.

Where the server offers the SDK's clientlib, ``logger/add/run`` with the journal's own key:
creating twice is impossible, so an "already exists" answer after an ambiguous attempt means
our experiment exists; without one, an upload of another copy of the journal made it, and it
is adopted (``SendContext.adopted``: its calls are read back before they are sent). On a
server with only the documented endpoints, ``write/experiment/create`` lets the server pick
the key, so the experiment is marked at once with an "other" carrying the journal's client
key (:data:`CLIENT_KEY_OTHER`): an upload of another copy of the journal (another host, no
shared state) finds it by that mark (read API) and adopts it instead of creating a second
experiment; an interrupted create may have made the experiment, so it is looked for before
creating again.
"""

from __future__ import annotations

import logging

from comet_journal.schema.catalogue import ENDPOINTS, endpoint_named
from comet_journal.uploader.journal.calls import Call
from comet_journal.uploader.journal.progress import ExperimentTarget
from comet_journal.uploader.send.context import SendContext
from comet_journal.uploader.send.readback import ReadBack
from comet_journal.uploader.wire.capabilities import Capabilities
from comet_journal.uploader.wire.client import Answer
from comet_journal.uploader.wire.exchange import Link, Outcome
from comet_journal.uploader.wire.requests import BuiltRequest, RequestBuilder, encode_json

logger = logging.getLogger(__name__)

CLIENT_KEY = "client-key"
REST_CREATE = "rest-create"
ALREADY_EXISTS_CODE = 90999
# The "other" naming, on a server-keyed experiment, the journal's client key (its adoption
# mark); the emulator's comparisons know it too (emulator/compare.py).
CLIENT_KEY_OTHER = "comet-journal client key"


class Creator:
    def __init__(self, link: Link, context: SendContext, builder: RequestBuilder,
                 readback: ReadBack, capabilities: Capabilities):
        self.link = link
        self.context = context
        self.builder = builder
        self.readback = readback
        self.capabilities = capabilities

    def method_for(self, target: ExperimentTarget) -> str:
        """How to create: what an earlier (maybe interrupted) run started, else the best the
        server offers."""
        if target.method:
            return target.method
        return CLIENT_KEY if self.capabilities.clientlib else REST_CREATE

    def create(self, call: Call, target: ExperimentTarget) -> Outcome:
        payload = self.builder.overrides.apply(ENDPOINTS["experiment_create"], call.payload)
        maybe_created = call.maybe_sent or bool(
            target.create_started_ms and target.create_started_ms < self.context.started_ms)
        if self.method_for(target) == CLIENT_KEY:
            key = self.context.experiment_keys[call.experiment_id]
            return self._by_key(call, payload, key, maybe_created)
        return self._by_rest(call, target, payload, maybe_created)

    def _by_key(self, call: Call, payload: dict, key: str, maybe: bool) -> Outcome:
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

        def usable(answer: Answer) -> str | None:
            # Comet's answer always has a runId (the SDK requires it); "200 {}" is not a
            # creation, whatever the status says.
            data = answer.json()
            return None if isinstance(data, dict) and data.get("runId") else \
                "no runId in the answer"

        outcome = self.link.exchange(build, self.context.idempotency_key(call.seq),
                                     call.label(), on_ambiguous=on_ambiguous, accept=exists,
                                     usable=usable)
        if not outcome.ok:
            return outcome
        if outcome.status >= 400:  # "already exists"
            if not state["maybe"]:
                # Not made by this upload: the same client key, so an upload of another copy
                # of this journal (another host, no shared state) made it. Adopt it; any of
                # its calls may be there too, so each is read back before it is sent.
                self.context.adopted.add(call.experiment_id)
                state["maybe"] = True
            outcome.found = True
        data = outcome.answer.json() if outcome.answer is not None else {}
        data = data if isinstance(data, dict) else {}
        outcome.server_key = key
        outcome.link = experiment_link(data.get("focusUrl") or data.get("link"), key)
        outcome.method = CLIENT_KEY
        name = payload.get("experimentName")
        if name:
            self._name(call, key, name, state["maybe"], outcome)
        return outcome

    def _name(self, call: Call, key: str, name: str, maybe: bool, outcome: Outcome) -> None:
        # logger/add/run takes no name; Comet names an experiment by its "Name" other (what
        # the SDK's set_name does). Idempotent: a resend sets the same name.
        if maybe and self.readback.experiment_named(key, name):
            return

        def build_name() -> BuiltRequest:
            return self.builder.build("log_other", {"key": "Name", "value": name},
                                      server_key=key, ts_ms=call.ts_ms)

        named = self.link.exchange(build_name, self.context.idempotency_key(f"{call.seq}-name"),
                                   f"{call.label()} name",
                                   on_ambiguous=lambda: self.readback.experiment_named(key, name))
        outcome.attempts += named.attempts
        outcome.retries += named.retries
        if not named.ok:
            logger.warning("experiment %s: the name %r was refused (%s)", key, name,
                           named.message)

    def _by_rest(self, call: Call, target: ExperimentTarget, payload: dict,
                 maybe: bool) -> Outcome:
        claimed = self.context.claimed
        client_key = self.context.experiment_keys.get(call.experiment_id)
        marked = self._marked(payload, client_key, claimed)
        if marked:  # an upload of another copy of this journal made it: adopt it
            self.context.adopted.add(call.experiment_id)
            return Outcome(ok=True, found=True, server_key=marked[0], link=marked[1],
                           method=REST_CREATE)
        if maybe:
            found = self.readback.find_experiment(payload, claimed)
            if found:
                self._mark(call, found[0], client_key)
                return Outcome(ok=True, found=True, server_key=found[0], link=found[1],
                               method=REST_CREATE)

        def build() -> BuiltRequest:
            return self.builder.build("experiment_create", call.payload, server_key=None,
                                      ts_ms=call.ts_ms)

        found_box: dict = {}

        def on_ambiguous():
            hit = self.readback.find_experiment(payload, claimed)
            if hit:
                found_box["hit"] = hit
                return True
            return False

        def usable(answer: Answer) -> str | None:
            data = answer.json()
            if isinstance(data, dict) and isinstance(data.get("experimentKey"), str) \
                    and data["experimentKey"]:
                return None
            return "no experimentKey in the answer"

        outcome = self.link.exchange(build, self.context.idempotency_key(call.seq),
                                     call.label(), on_ambiguous=on_ambiguous, usable=usable)
        outcome.method = REST_CREATE
        if not outcome.ok:
            return outcome
        if outcome.found:
            outcome.server_key, outcome.link = found_box["hit"]
        else:
            data = outcome.answer.json()
            outcome.server_key = data["experimentKey"]
            outcome.link = experiment_link(data.get("link"), outcome.server_key)
        self._mark(call, outcome.server_key, client_key)
        return outcome

    def _marked(self, payload: dict, client_key: str | None,
                claimed: set[str]) -> tuple[str, str | None] | None:
        """An experiment of the project (same name) whose mark carries ``client_key``."""
        if not client_key:
            return None
        data = self.readback.read("experiments", workspaceName=payload.get("workspaceName"),
                                  projectName=payload.get("projectName")) or {}
        for exp in data.get("experiments") or [] if isinstance(data, dict) else []:
            key = exp.get("experimentKey")
            if not key or key in claimed or \
                    (exp.get("experimentName") or None) != (payload.get("experimentName") or None):
                continue
            others = self.readback.read("experiment/log-other", experimentKey=key) or {}
            for other in others.get("values") or [] if isinstance(others, dict) else []:
                if other.get("name") == CLIENT_KEY_OTHER and \
                        other.get("valueCurrent") == client_key:
                    logger.info("adopting experiment %s: made by an upload of another copy "
                                "of this journal", key)
                    return key, exp.get("link")
        return None

    def _mark(self, call: Call, server_key: str, client_key: str | None) -> None:
        """Mark a server-keyed experiment with the journal's client key (idempotent)."""
        if not client_key:
            return

        def build_mark() -> BuiltRequest:
            return self.builder.build("log_other", {"key": CLIENT_KEY_OTHER,
                                                    "value": client_key},
                                      server_key=server_key, ts_ms=call.ts_ms)

        marked = self.link.exchange(build_mark,
                                    self.context.idempotency_key(f"{call.seq}-mark"),
                                    f"{call.label()} mark", on_ambiguous=lambda: None)
        if not marked.ok:
            logger.warning("experiment %s: its adoption mark was refused (%s); an upload of "
                           "another copy of the journal may create it again", server_key,
                           marked.message)


def experiment_link(link: str | None, key: str | None) -> str | None:
    """The experiment's page: the server's link may be the project's (``focusUrl``, to which
    the SDK appends the key itself)."""
    if not link or not key:
        return link or None
    base = link.rstrip("/")
    return base if base.endswith("/" + key) else f"{base}/{key}"
