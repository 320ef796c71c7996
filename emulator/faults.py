"""Fault injection: which requests fail, and how.

A fault specification is JSON::

    {"seed": 1,
     "rules": [
       {"route": "*", "kind": "latency", "ms": 25, "jitter_ms": 5},
       {"route": "log_metric", "kind": "status", "status": 503, "rate": 0.1},
       {"route": ["batch_metrics"], "kind": "drop_after", "count": 1, "after": 2},
       {"route": "*", "kind": "outage", "start_s": 1.0, "duration_s": 2.0}
     ]}

A bare list of rules is accepted too. Each rule selects requests by ``route``: ``"*"`` (every
request except the ``/emulator/`` control endpoints), a catalogue endpoint name
(``log_metric``, ``batch_metrics``, ``clientlib_add_run``...), a read route name
(``read:experiment/metadata``), a URL path (``/api/rest/v2/write/experiment/metric``), or a
list of those. Among the requests it selects, it fires:

- for every one (the default), or with probability ``rate`` drawn from a generator seeded by
  ``seed`` and the rule's position (the same traffic gives the same faults), or for the next
  ``count`` ones;
- ``after``: skip this many selected requests first ("fail the third metric").

Kinds and their parameters:

============  ==============================================================================
status        answer ``status`` (default 503; 500/502/503/504 or any 4xx/5xx) with a Comet
              error body; nothing is applied
throttle      answer 429 with ``retry_after`` seconds (default 1) in the ``header``:
              ``"standard"`` (``Retry-After``, the default), ``"custom"`` (Comet's
              ``Retry-After-Custom``) or ``"both"``; nothing is applied
drop_before   close the connection without answering; nothing is applied
empty_ok      answer ``200 {}`` (a broken proxy or server); nothing is applied
drop_after    apply the request, then close the connection without answering (the
              ambiguous case: the client cannot know it was applied)
latency       wait ``ms`` milliseconds (plus or minus up to ``jitter_ms``) before handling;
              latency rules add up, and combine with the other kinds
slow_body     send the response headers, then trickle the body over ``duration_ms``
              (default 1000)
outage        refuse connections for ``duration_s`` seconds (default 1): from ``start_s``
              seconds after the spec is installed, or, without ``start_s``, from the first
              request the rule fires on (that request's connection is dropped, unapplied)
============  ==============================================================================

Rules are tried in order. Latency rules all apply; of the other kinds only the first that
fires does (a later rule does not see, or count, a request an earlier one already failed).
"""

from __future__ import annotations

import json
import os
import random
import threading
from dataclasses import dataclass, field
from typing import Any, Final, Iterable

from comet_journal.emulator.errors import FaultSpecError

KINDS: Final = ("status", "throttle", "drop_before", "empty_ok", "drop_after", "latency", "slow_body",
                "outage")
BEFORE_KINDS: Final = frozenset(("status", "throttle", "drop_before", "empty_ok", "outage"))  # not applied
AFTER_KINDS: Final = frozenset(("drop_after", "slow_body"))  # applied, then the answer suffers
ALL_ROUTES: Final = "*"
THROTTLE_HEADERS: Final = ("standard", "custom", "both")

_COMMON_KEYS: Final = frozenset(("route", "kind", "rate", "count", "after"))
_KIND_PARAMS: Final = {  # parameter: default (None: required)
    "status": {"status": 503},
    "throttle": {"retry_after": 1, "header": "standard"},
    "drop_before": {},
    "empty_ok": {},
    "drop_after": {},
    "latency": {"ms": None, "jitter_ms": 0},
    "slow_body": {"duration_ms": 1000},
    "outage": {"duration_s": 1, "start_s": -1},  # start_s < 0: triggered by a request
}


@dataclass
class Rule:
    """One parsed rule, with its own random generator and counts."""

    index: int
    kind: str
    routes: frozenset[str] | None  # None: every route
    params: dict[str, Any]
    rate: float = 1.0
    count: int | None = None
    after: int = 0
    seed: Any = 0
    selected: int = 0
    fired: int = 0
    rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(f"{self.seed}:{self.index}")

    @property
    def scheduled(self) -> bool:
        """A time-scheduled outage: it fires on the clock, not on requests."""
        return self.kind == "outage" and self.params["start_s"] >= 0

    def selects(self, route: str, path: str) -> bool:
        return self.routes is None or route in self.routes or path in self.routes

    def delay_s(self) -> float:
        jitter = self.params["jitter_ms"]
        ms = self.params["ms"] + (self.rng.uniform(-jitter, jitter) if jitter else 0.0)
        return max(ms, 0.0) / 1000.0


@dataclass(frozen=True)
class Decision:
    """What to do to one request: wait ``delay_s``, then suffer ``action`` (or nothing)."""

    delay_s: float = 0.0
    action: Rule | None = None
    latency_rules: int = 0


NO_FAULT: Final = Decision()


def load_spec(spec: Any) -> Any:
    """A spec given as a dict or list, as inline JSON text, or as the path of a JSON file."""
    if spec is None or isinstance(spec, (dict, list)):
        return spec
    if isinstance(spec, (bytes, bytearray)):
        spec = spec.decode("utf-8")
    if isinstance(spec, os.PathLike) or (isinstance(spec, str)
                                         and not spec.lstrip().startswith(("{", "["))):
        try:
            with open(spec, encoding="utf-8") as fh:
                spec = fh.read()
        except OSError as exc:
            raise FaultSpecError(f"fault spec {os.fspath(spec)!r} is neither JSON nor a "
                                 f"readable file: {exc.strerror or exc}") from None
    try:
        return json.loads(spec)
    except ValueError as exc:
        raise FaultSpecError(f"fault spec is not valid JSON: {exc}") from None


def _number(where: str, name: str, value: Any, low: float = 0.0, high: float | None = None
            ) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FaultSpecError(f"{where}: {name} must be a number, got {value!r}")
    if value < low or (high is not None and value > high):
        bounds = f">= {low}" if high is None else f"between {low} and {high}"
        raise FaultSpecError(f"{where}: {name} must be {bounds}, got {value!r}")
    return value


def _integer(where: str, name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise FaultSpecError(f"{where}: {name} must be a non-negative integer, got {value!r}")
    return value


def _parse_rule(index: int, raw: Any, seed: Any, known_routes: frozenset[str] | None) -> Rule:
    where = f"fault rule {index}"
    if not isinstance(raw, dict):
        raise FaultSpecError(f"{where}: must be a JSON object, got {raw!r}")
    kind = raw.get("kind")
    if kind not in _KIND_PARAMS:
        raise FaultSpecError(f"{where}: kind must be one of {', '.join(KINDS)}; got {kind!r}")
    where = f"fault rule {index} ({kind})"
    defaults = _KIND_PARAMS[kind]
    unknown = set(raw) - _COMMON_KEYS - set(defaults)
    if unknown:
        raise FaultSpecError(f"{where}: unknown keys {sorted(unknown)}; this kind takes "
                             f"{sorted(_COMMON_KEYS | set(defaults))}")
    routes = raw.get("route", ALL_ROUTES)
    routes = [routes] if isinstance(routes, str) else routes
    if not isinstance(routes, list) or not routes or not all(isinstance(r, str) for r in routes):
        raise FaultSpecError(f"{where}: route must be a name, a path, \"*\" or a list of those")
    for route in routes:
        if (known_routes is not None and route != ALL_ROUTES and not route.startswith("/")
                and route not in known_routes):
            raise FaultSpecError(f"{where}: unknown route {route!r} (use \"*\", a catalogue "
                                 "endpoint name, a read route like 'read:experiment/metadata', "
                                 "or a URL path)")
    if "rate" in raw and "count" in raw:
        raise FaultSpecError(f"{where}: give rate or count, not both")
    params = {}
    for name, default in defaults.items():
        if name not in raw and default is None:
            raise FaultSpecError(f"{where}: {name} is required")
        params[name] = raw.get(name, default)
    if kind == "status":
        params["status"] = int(_number(where, "status", params["status"], 400, 599))
    elif kind == "throttle":
        _number(where, "retry_after", params["retry_after"])
        if params["header"] not in THROTTLE_HEADERS:
            raise FaultSpecError(f"{where}: header must be one of {THROTTLE_HEADERS}")
    elif kind == "latency":
        _number(where, "ms", params["ms"])
        _number(where, "jitter_ms", params["jitter_ms"])
    elif kind == "slow_body":
        _number(where, "duration_ms", params["duration_ms"])
    elif kind == "outage":
        _number(where, "duration_s", params["duration_s"])
        if "start_s" in raw:
            _number(where, "start_s", params["start_s"])
    return Rule(
        index=index, kind=kind,
        routes=None if ALL_ROUTES in routes else frozenset(routes), params=params,
        rate=_number(where, "rate", raw.get("rate", 1.0), 0.0, 1.0),
        count=None if "count" not in raw else _integer(where, "count", raw["count"]),
        after=_integer(where, "after", raw.get("after", 0)), seed=seed)


class FaultPlan:
    """The installed rules, deciding thread-safely what happens to each request.

    :param spec: see the module docstring; ``None`` means no faults.
    :param known_routes: route names a rule may name (a typo is an error, not a silent no-op).
    """

    def __init__(self, spec: Any = None, known_routes: Iterable[str] | None = None):
        self._lock = threading.Lock()
        spec = load_spec(spec)
        if spec is None:
            spec = {"seed": 0, "rules": []}
        if isinstance(spec, list):
            spec = {"rules": spec}
        if not isinstance(spec, dict):
            raise FaultSpecError("fault spec must be an object {\"seed\", \"rules\"} or a list")
        unknown = set(spec) - {"seed", "rules"}
        if unknown:
            raise FaultSpecError(f"fault spec: unknown keys {sorted(unknown)}")
        rules = spec.get("rules", [])
        if not isinstance(rules, list):
            raise FaultSpecError("fault spec: rules must be a list")
        seed = spec.get("seed", 0)
        known = None if known_routes is None else frozenset(known_routes)
        self.rules = [_parse_rule(i, raw, seed, known) for i, raw in enumerate(rules)]
        self.spec = {"seed": seed, "rules": rules}

    def __bool__(self) -> bool:
        return bool(self.rules)

    def scheduled_outages(self) -> list[tuple[float, float]]:
        """``(start_s, duration_s)`` of the clock-driven outages."""
        return [(r.params["start_s"], r.params["duration_s"]) for r in self.rules if r.scheduled]

    def decide(self, route: str, path: str) -> Decision:
        if not self.rules:
            return NO_FAULT
        delay, action, latencies = 0.0, None, 0
        with self._lock:
            for rule in self.rules:
                if rule.scheduled or not rule.selects(route, path):
                    continue
                if action is not None and rule.kind != "latency":
                    continue
                rule.selected += 1
                if rule.selected <= rule.after:
                    continue
                if rule.count is not None:
                    if rule.fired >= rule.count:
                        continue
                elif rule.rate < 1.0 and rule.rng.random() >= rule.rate:
                    continue
                rule.fired += 1
                if rule.kind == "latency":
                    delay += rule.delay_s()
                    latencies += 1
                else:
                    action = rule
        return Decision(delay, action, latencies)
