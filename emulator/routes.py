"""Which handler serves a request: routing built from the shared catalogue.

A request is one of:

- ``write``: a catalogue endpoint (``schema.catalogue.BY_ROUTE``, or ``SDK_BY_ROUTE`` for the
  official SDK's own routes); its route name is the endpoint's name. The SDK's "alternate" base ``/clientlib/rest/v2/...`` reaches the REST
  endpoint of the same path unless the catalogue has an entry for that exact path;
- ``probe``: a catalogue endpoint of entity ``server`` (``isAlive/ver``, ``health/ping``...);
- ``read``: a REST v2 read endpoint (:mod:`comet_journal.emulator.reads`), named ``read:<path>``;
- ``control``: ``/emulator/...`` (state dump, faults);
- ``not_found``.

With ``clientlib=False`` only the documented endpoints (``documented=True``) and the reads are
routed: everything else is ``not_found``, as on a bare server.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

from comet_journal.schema.catalogue import (BY_ROUTE, CLIENTLIB_REST_PREFIX, ENDPOINTS, REST_PREFIX,
                              SDK_BY_ROUTE, SDK_ENDPOINTS, SERVER, Endpoint)

from comet_journal.emulator.reads import READ_PREFIX, READERS

WRITE: Final = "write"
PROBE: Final = "probe"
READ: Final = "read"
CONTROL: Final = "control"
NOT_FOUND: Final = "not_found"
CONTROL_PREFIX: Final = "/emulator/"
_SLASHES = re.compile(r"/{2,}")


@dataclass(frozen=True)
class Route:
    kind: str
    name: str
    endpoint: Endpoint | None = None
    read_path: str | None = None
    path_params: dict = field(default_factory=dict)


def _template(path: str) -> re.Pattern:
    pattern = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(path))
    return re.compile(pattern + r"\Z")


class Router:
    """Resolve ``(method, path)`` to a :class:`Route`."""

    def __init__(self, clientlib: bool = True):
        self.clientlib = clientlib
        routes = {**BY_ROUTE, **SDK_BY_ROUTE}
        served = {route: ep for route, ep in routes.items() if clientlib or ep.documented}
        self._exact = {route: ep for route, ep in served.items() if "{" not in route[1]}
        self._templates = [(method, _template(path), ep)
                           for (method, path), ep in served.items() if "{" in path]
        self._paths = {path for _, path in self._exact}

    @staticmethod
    def route_names() -> set[str]:
        """Every name a fault rule may use."""
        return set(ENDPOINTS) | set(SDK_ENDPOINTS) | {READ_PREFIX + path for path in READERS}

    def resolve(self, method: str, path: str) -> Route:
        path = _SLASHES.sub("/", path)
        if path.startswith(CONTROL_PREFIX):
            return Route(CONTROL, "control:" + path[len(CONTROL_PREFIX):])
        endpoint = self._exact.get((method, path))
        if endpoint is None and self.clientlib and path.startswith(CLIENTLIB_REST_PREFIX):
            # the SDK's alternate base serves the same REST v2 endpoints
            endpoint = self._exact.get((method, REST_PREFIX + path[len(CLIENTLIB_REST_PREFIX):]))
        if endpoint is not None:
            return Route(PROBE if endpoint.entity == SERVER else WRITE, endpoint.name, endpoint)
        for t_method, pattern, ep in self._templates:
            match = pattern.match(path)
            if match and t_method == method:
                return Route(WRITE, ep.name, ep, path_params=match.groupdict())
        if method == "GET":
            for prefix in (REST_PREFIX, CLIENTLIB_REST_PREFIX if self.clientlib else None):
                if prefix and path.startswith(prefix) and path[len(prefix):] in READERS:
                    read_path = path[len(prefix):]
                    return Route(READ, READ_PREFIX + read_path, read_path=read_path)
        return Route(NOT_FOUND, "not_found")

    def allowed_methods(self, path: str) -> list[str]:
        """Methods that the path does serve (for a 405 rather than a 404)."""
        path = _SLASHES.sub("/", path)
        return sorted(m for m, p in self._exact if p == path)
