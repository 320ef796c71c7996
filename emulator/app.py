"""The request pipeline, independent of sockets: route, faults, authentication, handler.

For each request: resolve its route (:mod:`comet_journal.emulator.routes`); unless it is a ``/emulator/``
control request, let the fault plan delay it or fail it (:mod:`comet_journal.emulator.faults`); check the
``Authorization`` header; serve it (a write, a read or a probe); count it. The HTTP layer
(:mod:`comet_journal.emulator.server`) turns the returned :class:`~comet_journal.emulator.wire.Response` into bytes, or
into a dropped connection, a trickled body or an outage.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
import time
from collections import Counter, deque
from typing import Any, Callable, Final

from comet_journal.emulator import views
from comet_journal.emulator.clientlib import OPEN_PROBES, probe_response
from comet_journal.emulator.errors import INVALID_API_KEY, ApiError, FaultSpecError, bad_request, not_found
from comet_journal.emulator.faults import AFTER_KINDS, BEFORE_KINDS, KINDS, FaultPlan, Rule
from comet_journal.emulator.reads import ReadContext, handle_read
from comet_journal.emulator.routes import CONTROL, PROBE, READ, WRITE, Route, Router
from comet_journal.emulator.store import Store
from comet_journal.emulator.wire import Request, Response, error_response, json_response
from comet_journal.emulator.writes import IDEMPOTENCY_REPLAYS, handle_write

logger = logging.getLogger(__name__)

DEFAULT_WORKSPACE: Final = "emulator"  # for clients that name no workspace
REJECTIONS_KEPT: Final = 100


class Application:
    """Serve parsed requests against a :class:`~comet_journal.emulator.store.Store`.

    :param on_outage: called with a duration when a fault asks for an outage.
    :param on_plan: called with each fault plan installed (the server schedules its
        clock-driven outages).
    """

    def __init__(self, store: Store, api_key: str, *, dedupe: bool = False,
                 clientlib: bool = True, faults: Any = None,
                 on_outage: Callable[[float], None] | None = None,
                 on_plan: Callable[[FaultPlan], None] | None = None):
        self.store = store
        self._api_key = api_key.encode("utf-8")
        self.dedupe = dedupe
        self.clientlib = clientlib
        self.router = Router(clientlib)
        self.base_url = ""
        self.default_workspace = DEFAULT_WORKSPACE
        self.on_outage = on_outage
        self.on_plan = on_plan
        self.plan = FaultPlan(faults, Router.route_names())
        self._lock = threading.Lock()
        self._by_route: Counter = Counter()
        self._by_status: Counter = Counter()
        self._total = 0
        self._rejected = 0
        self._fault_counts: Counter = Counter()
        self._rejections: deque = deque(maxlen=REJECTIONS_KEPT)
        self._load_counts()

    # --- the pipeline ------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        route = self.router.resolve(request.method, request.path)
        if route.kind == CONTROL:
            try:
                return self._control(route, request)
            except ApiError as exc:
                return error_response(exc)
        decision = self.plan.decide(route.name, request.path)
        if decision.delay_s:
            time.sleep(decision.delay_s)
            self.count_fault("latency", decision.latency_rules)
        action = decision.action
        if action is not None and action.kind in BEFORE_KINDS:
            response = self._inject(action)
            self._count(route, response, None)
            return response
        try:
            response = self._serve(route, request)
            problem = None
        except ApiError as exc:
            response, problem = error_response(exc), exc.msg
        except Exception as exc:  # a bug: answer 500 and say so, never hang the client
            logger.exception("%s %s failed", request.method, request.path)
            response, problem = error_response(ApiError(500, f"emulator error: {exc}")), None
        if action is not None and action.kind in AFTER_KINDS:
            self.count_fault(action.kind)
            if action.kind == "drop_after":
                response.drop = True
            else:
                response.slow_body_s = action.params["duration_ms"] / 1000.0
        self._count(route, response, problem)
        return response

    def _authenticate(self, request: Request) -> None:
        given = request.header("Authorization")
        if not given:
            raise ApiError(401, "missing Authorization header (the API key)", INVALID_API_KEY)
        if not hmac.compare_digest(given.encode("utf-8"), self._api_key):
            raise ApiError(401, "invalid API key", INVALID_API_KEY)

    def _serve(self, route: Route, request: Request) -> Response:
        if route.kind == PROBE:
            if route.name not in OPEN_PROBES:
                self._authenticate(request)
            return json_response(200, probe_response(route.name))
        self._authenticate(request)
        if route.kind == WRITE:
            return handle_write(route.endpoint, request, store=self.store,
                                base_url=self.base_url,
                                default_workspace=self.default_workspace, dedupe=self.dedupe,
                                path_params=route.path_params)
        if route.kind == READ:
            with self.store.reading() as conn:
                result = handle_read(route.read_path, ReadContext(
                    self.store, conn, request.query, self.base_url, self.default_workspace))
            return result if isinstance(result, Response) else json_response(200, result)
        allowed = self.router.allowed_methods(request.path)
        if allowed:
            raise ApiError(405, f"{request.method} is not served on {request.path} "
                                f"(use {', '.join(allowed)})")
        raise not_found(f"no such endpoint: {request.method} {request.path}")

    def _inject(self, rule: Rule) -> Response:
        self.count_fault(rule.kind)
        params = rule.params
        if rule.kind == "status":
            status = params["status"]
            return error_response(ApiError(status, f"injected fault: HTTP {status}"))
        if rule.kind == "throttle":
            seconds = params["retry_after"]
            text = str(int(seconds)) if float(seconds).is_integer() else str(seconds)
            names = {"standard": ("Retry-After",), "custom": ("Retry-After-Custom",),
                     "both": ("Retry-After", "Retry-After-Custom")}[params["header"]]
            return error_response(ApiError(429, "injected fault: too many requests"),
                                  tuple((name, text) for name in names))
        if rule.kind == "empty_ok":
            return json_response(200, {})
        if rule.kind == "outage":
            if self.on_outage is not None:
                self.on_outage(params["duration_s"])
            return Response(0, drop=True)
        return Response(0, drop=True)  # drop_before

    # --- counts ------------------------------------------------------------------------------

    def _count(self, route: Route, response: Response, problem: str | None) -> None:
        status = "dropped" if response.drop else str(response.status)
        with self._lock:
            self._total += 1
            self._by_route[route.name] += 1
            self._by_status[status] += 1
            if problem is not None and 400 <= response.status < 500:
                self._rejected += 1
                self._rejections.append({"route": route.name, "status": response.status,
                                         "msg": problem})

    def count_fault(self, kind: str, n: int = 1) -> None:
        with self._lock:
            self._fault_counts[kind] += n

    def request_counts(self) -> dict:
        with self._lock:
            return {"total": self._total, "by_route": dict(self._by_route),
                    "by_status": dict(self._by_status), "rejected": self._rejected}

    def fault_counts(self) -> dict:
        with self._lock:
            return {kind: self._fault_counts[kind] for kind in KINDS}

    def _load_counts(self) -> None:
        """Counts saved by an earlier emulator on this database (see :meth:`save_counts`)."""
        with self.store.reading() as conn:
            rows = conn.execute("SELECT name, value FROM counters").fetchall()
        for name, value in rows:
            group, _, rest = name.partition(".")
            if group == "faults":
                self._fault_counts[rest] = value
            elif rest == "total":
                self._total = value
            elif rest == "rejected":
                self._rejected = value
            elif rest.startswith("by_route."):
                self._by_route[rest[len("by_route."):]] = value
            elif rest.startswith("by_status."):
                self._by_status[rest[len("by_status."):]] = value

    def save_counts(self) -> None:
        """Persist request and fault counts, so they add up across restarts."""
        counts = self.request_counts()
        rows = {"requests.total": counts["total"], "requests.rejected": counts["rejected"]}
        rows.update({f"requests.by_route.{k}": v for k, v in counts["by_route"].items()})
        rows.update({f"requests.by_status.{k}": v for k, v in counts["by_status"].items()})
        rows.update({f"faults.{k}": v for k, v in self.fault_counts().items()})
        with self.store.transaction() as conn:
            conn.executemany("INSERT OR REPLACE INTO counters (name, value) VALUES (?, ?)",
                             rows.items())

    # --- faults and the state dump ---------------------------------------------------------------

    def set_faults(self, spec: Any) -> FaultPlan:
        """Replace the fault plan (raises :class:`FaultSpecError`, keeping the old one)."""
        plan = FaultPlan(spec, Router.route_names())
        self.plan = plan
        if self.on_plan is not None:
            self.on_plan(plan)
        return plan

    def state(self) -> dict:
        """The whole state, as ``GET /emulator/state`` returns it."""
        with self.store.reading() as conn:
            applied = [{"id": r["id"], "endpoint": r["endpoint"],
                        "experimentKey": r["experiment_key"],
                        "idempotencyKey": r["idempotency_key"],
                        "fields": json.loads(r["fields"]),
                        "response": json.loads(r["response"]), "atMs": r["at_ms"]}
                       for r in self.store.applied_rows(conn)]
            experiments = {r["key"]: views.experiment_view(self.store, conn, r)
                           for r in self.store.experiments(conn)}
            projects = {r["id"]: views.project_view(self.store, conn, r)
                        for r in self.store.projects(conn, include_deleted=True)}
            replays = self.store.counter(conn, IDEMPOTENCY_REPLAYS)
        with self._lock:
            rejections = list(self._rejections)
        return {
            "applied": applied, "experiments": experiments, "projects": projects,
            "requests": self.request_counts(), "idempotency_replays": replays,
            "faults": self.fault_counts(), "rejections": rejections,
            "config": {"dedupe": self.dedupe, "clientlib": self.clientlib,
                       "store_asset_bytes": self.store.store_asset_bytes,
                       "fault_spec": self.plan.spec},
        }

    def _control(self, route: Route, request: Request) -> Response:
        self._authenticate(request)
        what = route.name.partition(":")[2].rstrip("/")
        if what == "state" and request.method == "GET":
            if (request.query.get("summary") or "").lower() in ("1", "true"):
                with self.store.reading() as conn:
                    summary = views.state_summary(self.store, conn)
                summary.update(requests=self.request_counts(), faults=self.fault_counts())
                return json_response(200, summary)
            return json_response(200, self.state())
        if what == "faults":
            if request.method == "GET":
                return json_response(200, {"spec": self.plan.spec,
                                           "counts": self.fault_counts()})
            if request.method in ("POST", "PUT"):
                try:
                    plan = self.set_faults(request.json())
                except FaultSpecError as exc:
                    raise bad_request(str(exc)) from None
                return json_response(200, {"spec": plan.spec})
            if request.method == "DELETE":
                self.set_faults(None)
                return json_response(200, {"spec": self.plan.spec})
        raise not_found(f"no such control endpoint: {request.method} {request.path}")
