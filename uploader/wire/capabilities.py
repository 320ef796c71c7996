"""What a server offers beyond the documented endpoints, asked once per upload."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from comet_journal.schema.catalogue import endpoint_named
from comet_journal.uploader.wire.exchange import Link
from comet_journal.uploader.wire.requests import BuiltRequest

logger = logging.getLogger(__name__)

BATCH_ROUTES = ("batch_metrics", "batch_parameters", "batch_output")


@dataclass
class Capabilities:
    """``clientlib``: the SDK's clientlib endpoints (creation by client key, batches).
    ``batch``: per batch route, whether to use it; a 404 switches one off mid-run (shared by
    the replay's workers)."""

    clientlib: bool = False
    batch: dict[str, bool] = field(default_factory=dict)

    def batch_ok(self, route: str) -> bool:
        return self.batch.get(route, False)

    def batch_gone(self, route: str) -> None:
        """The server answered 404 for ``route``: the calls go the documented way."""
        self.batch[route] = False


def probe(link: Link) -> Capabilities:
    """Ask ``clientlib/isAlive``: a server with only the documented endpoints answers 404,
    and then every call goes through the documented REST v2 endpoints."""
    ep = endpoint_named("clientlib_is_alive")
    outcome = link.exchange(lambda: BuiltRequest(ep.method, ep.path), None, "probe",
                            retry=False)
    clientlib = outcome.ok and isinstance(outcome.answer.json(), dict)
    logger.info("server %s: %s", link.url, "offers the SDK's clientlib endpoints" if clientlib
                else "documented REST endpoints only")
    return Capabilities(clientlib, {route: clientlib for route in BATCH_ROUTES})
