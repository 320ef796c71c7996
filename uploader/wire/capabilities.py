"""What a server offers beyond the documented endpoints, asked once per upload; and whether
it is a Comet server at all (a wrong ``--url`` is reported at once, not retried for minutes)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Final

from comet_journal.schema.catalogue import endpoint_named
from comet_journal.uploader.errors import ServerProtocolError
from comet_journal.uploader.wire.client import Answer
from comet_journal.uploader.wire.exchange import READ_PREFIX, Link, Outcome
from comet_journal.uploader.wire.requests import BuiltRequest
from comet_journal.uploader.wire.retry import RetryPolicy, short_cause

logger = logging.getLogger(__name__)

BATCH_ROUTES = ("batch_metrics", "batch_parameters", "batch_output")
API_ROOT_CHECK = "account-details"  # a documented read every Comet server answers with JSON


SDK_ROUTES_HINT: Final = ("kept pending in the journal: upload it again to a server that "
                          "offers the official SDK's routes (comet-upload status lists them)")


@dataclass
class Capabilities:
    """``clientlib``: the SDK's clientlib endpoints (creation by client key, batches).
    ``batch``: per batch route, whether to use it; a 404 switches one off mid-run (shared by
    the replay's workers). ``gone``: journaled SDK routes that answered 404 in this run."""

    clientlib: bool = False
    batch: dict[str, bool] = field(default_factory=dict)
    gone: set[str] = field(default_factory=set)

    def not_sendable(self, endpoint: str) -> str | None:
        """Why calls of ``endpoint`` cannot go to this server (None: they can). A documented
        endpoint always can; a journaled SDK route only where the server offers the SDK's
        routes (the probe said so, and the route did not answer 404)."""
        if endpoint_named(endpoint).documented:
            return None
        if not self.clientlib or endpoint in self.gone:
            return (f"{endpoint} is one of the official SDK's routes (no documented endpoint "
                    "carries it), which this server does not offer")
        return None

    def route_gone(self, endpoint: str) -> None:
        """A journaled SDK route answered 404: its calls stay pending for this run."""
        self.gone.add(endpoint)

    def batch_ok(self, route: str) -> bool:
        return self.batch.get(route, False)

    def batch_gone(self, route: str) -> None:
        """The server answered 404 for ``route``: the calls go the documented way."""
        self.batch[route] = False


def probe(link: Link) -> Capabilities:
    """Ask ``clientlib/isAlive``: a server with only the documented endpoints answers 404,
    and then every call goes through the documented REST v2 endpoints.

    An unreachable server is asked again through the retry loop (the progress line says why
    it waits; the deadline ends it). A server whose answers are not Comet's (an HTML page,
    JSON of another shape, 404 on the API as well) raises :class:`ServerProtocolError` at
    once: retrying would not make it Comet.
    """
    ep = endpoint_named("clientlib_is_alive")
    build = lambda: BuiltRequest(ep.method, ep.path)  # noqa: E731
    outcome = link.exchange(build, None, "probe", retry=False, write=False)
    if not outcome.ok and _transient(outcome):
        logger.info("server %s: not answering yet (%s); retrying until the deadline",
                    link.url, short_cause(outcome.message or f"HTTP {outcome.status}"))
        outcome = link.exchange(build, None, "probe", write=False)
    clientlib = _is_comet_probe(link, outcome)
    logger.info("server %s: %s", link.url, "offers the SDK's clientlib endpoints" if clientlib
                else "documented REST endpoints only")
    return Capabilities(clientlib, {route: clientlib for route in BATCH_ROUTES})


def _transient(outcome: Outcome) -> bool:
    """No answer, or one that says "later" (a 5xx from a proxy while Comet restarts)."""
    status = outcome.answer.status if outcome.answer is not None else 0
    return status == 0 or (status != 501 and RetryPolicy.is_retryable_status(status))


def _is_comet_probe(link: Link, outcome: Outcome) -> bool:
    """True: the clientlib probe answered like Comet; False: a Comet server without it."""
    answer: Answer | None = outcome.answer
    if answer is None:  # no answer at all after retries: cannot tell; documented routes
        return False
    if 200 <= answer.status < 300:
        why = answer.not_comet()
        if why is not None:  # HTML, empty, not JSON: never Comet's API
            raise _not_comet(link, f"GET {endpoint_named('clientlib_is_alive').path}", answer,
                             why)
        if isinstance(answer.json(), dict):
            return True
        # JSON of another shape: Comet without the SDK's routes, if its REST API answers
    elif answer.is_html() or answer.not_comet() is not None:
        raise _not_comet(link, "the probe", answer, f"HTTP {answer.status} with "
                         f"{answer.describe_body()}")
    root = link.exchange(lambda: BuiltRequest("GET", READ_PREFIX + API_ROOT_CHECK), None,
                         "probe", retry=False, write=False)
    api = root.answer
    if api is not None and (api.status == 404 or api.is_html() or
                            (api.status != 204 and api.not_comet() is not None)):
        raise _not_comet(link, f"GET {READ_PREFIX}{API_ROOT_CHECK}", api,
                         f"HTTP {api.status} with {api.describe_body()}")
    return False


def _not_comet(link: Link, what: str, answer: Answer, why: str) -> ServerProtocolError:
    return ServerProtocolError(
        f"not a Comet server at {link.url}: {what} answered {why}",
        "check --url (or $COMET_URL_OVERRIDE): give the Comet server's root, e.g. "
        "https://www.comet.com")
