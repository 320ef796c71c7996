"""Did the server already apply this call? Answered through Comet's REST v2 read API.

Asked before resending a call whose outcome is unknown (a previous run was killed after
sending it, or the connection failed after the request left). Each check compares the server's
current state with what the journal says should be there *before* the call, so a call is
"found" only if its effect is present one more time than earlier journal calls explain:

* metric points (and system samples that read as metrics): the number of points with the
  same name, value, step, epoch, context and timestamp, against the number of identical
  earlier journal calls (identical calls are serialised by the replay, so the count decides);
* parameters and others: the server keeps a summary per name; their streams are ordered, so
  the current value and timestamp tell how far a run of same-name calls got;
* output: lines are sent in order per experiment, so the length of the server's output text
  against the journal's earlier lines says which were applied;
* html: same, by length (appends) or equality (override);
* tags, code, graph, git metadata, system details, start/end time, archive: the server's
  value equals the call's (these are set-style, resending them would be harmless anyway);
* assets, git patch, text samples: the asset list, by file name, size, step and type;
* experiment delete/restore, projects: existence checks.

``None`` means "cannot tell" (no read endpoint): the call is resent; that is safe for the
calls left in that case (stop, keep-alive, symlink, viz store: idempotent by nature), and the
stable ``Idempotency-Key`` covers servers that deduplicate.
"""

from __future__ import annotations

import bisect
import json
import logging
import math
from collections import Counter
from typing import TYPE_CHECKING, Any, Callable

from comet_journal.schema import blobs as blob_store
from comet_journal.uploader.calls import Call
from comet_journal.uploader.client import TransportError
from comet_journal.uploader.errors import AuthError, Stopped

if TYPE_CHECKING:
    from comet_journal.uploader.replay import Replayer

logger = logging.getLogger(__name__)

READ = "/api/rest/v2/"
LOOKBACK = 200_000  # journal rows scanned back for identical earlier calls


def norm_value(value: Any) -> Any:
    """A value as comparable across JSON and Comet's text form ("0.5" == 0.5, "NaN")."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        f = float(value)
        return "NaN" if math.isnan(f) else f
    if isinstance(value, str):
        try:
            f = float(value)
        except ValueError:
            return value
        return "NaN" if math.isnan(f) else f
    if isinstance(value, (list, dict)):
        return json.dumps(value, sort_keys=True)
    return value


class ReadBack:
    def __init__(self, replayer: "Replayer"):
        self.r = replayer
        self.reads = 0

    # --- HTTP -----------------------------------------------------------------------------

    def get(self, path: str, **params) -> Any:
        """GET a read endpoint with retries; ``None`` for 404 (absent), raises AuthError."""
        r = self.r
        gate = r.gate
        attempt = 0
        query = {k: v for k, v in params.items() if v is not None}
        from comet_journal.uploader.requests_builder import BuiltRequest
        while True:
            gate.wait_turn(r.stop, r.policy.sleep)
            if r.stop.is_set():
                raise Stopped()
            self.reads += 1
            try:
                answer = r.client.send(BuiltRequest("GET", READ + path, {
                    k: (("true" if v else "false") if isinstance(v, bool) else str(v))
                    for k, v in query.items()}))
            except TransportError as exc:
                gate.backoff(attempt, f"read-back {path}: {exc.detail}", r.policy.sleep)
                attempt += 1
                continue
            if answer.status == 200:
                garbage = answer.not_comet()
                if garbage is None:
                    # no gate.ok(): a read is not progress. A server that answers reads but
                    # fails every write must still reach the deadline.
                    return answer.json()
                # not Comet answering (a proxy, a login page): it cannot tell; ask again
                gate.backoff(attempt, f"read-back {path}: HTTP 200 but {garbage}",
                             r.policy.sleep)
                attempt += 1
                continue
            if 300 <= answer.status < 400:
                from comet_journal.uploader.errors import ServerProtocolError
                raise ServerProtocolError(
                    f"{r.config.url} answered the read-back GET {READ}{path} with a redirect "
                    f"(HTTP {answer.status}) to {answer.headers.get('Location') or '?'}; "
                    "comet-upload does not follow redirects", "check --url")
            if answer.status in (401, 403):
                raise AuthError(f"{r.config.url} refused a read-back ({answer.status}: "
                                f"{answer.message()})", "check the API key")
            if answer.status == 429:
                from comet_journal.uploader.retry import parse_retry_after
                gate.pause(parse_retry_after(answer.headers) or r.policy.backoff(attempt))
                attempt += 1
                continue
            if r.policy.is_retryable_status(answer.status):
                gate.backoff(attempt, f"read-back {path}: HTTP {answer.status}",
                             r.policy.sleep)
                attempt += 1
                continue
            return None  # 404 (absent) or a server without this read endpoint

    # --- journal context ------------------------------------------------------------------

    def _rows_before(self, call: Call, endpoint: str, extra_sql: str = "",
                     args: tuple = (), lookback: int | None = LOOKBACK) -> list[tuple]:
        """Earlier journal calls of the same experiment and endpoint, minus rejected ones."""
        low = max(0, call.seq - lookback) if lookback else 0
        conn = self.r.read_conn()
        return conn.execute(
            "SELECT seq, ts_ms, payload FROM calls WHERE seq >= ? AND seq < ? AND endpoint=? "
            "AND experiment_id IS ? " + extra_sql + " AND seq NOT IN (SELECT seq FROM "
            "upload_state WHERE target_id=? AND state='rejected') ORDER BY seq",
            (low, call.seq, endpoint, call.experiment_id, *args,
             self.r.progress.target_id)).fetchall()

    # --- the checks -----------------------------------------------------------------------

    def applied(self, call: Call, key: str | None) -> bool | None:
        return self.applied_many([call], key)[0]

    def applied_many(self, calls: list[Call], key: str | None) -> list[bool | None]:
        """Verdicts for calls of one stream, in order (a batch, or a single call)."""
        endpoint = calls[0].endpoint
        check = _CHECKS.get(endpoint)
        if check is None or (key is None and endpoint not in _PROJECT_CHECKS):
            return [None] * len(calls)
        try:
            return check(self, calls, key)
        except (AuthError, Stopped):
            raise
        except Exception as exc:  # a read-back must never break the upload: resend instead
            logger.warning("read-back of %s failed (%s); sending it again", calls[0].label(),
                           exc)
            return [None] * len(calls)

    def _metrics(self, calls: list[Call], key: str) -> list[bool]:
        """A point is on the server if the server has more copies of it than earlier journal
        calls explain. One GET per metric name and one journal query for the whole batch
        (a batch of 1000 points must not scan the journal 1000 times)."""
        sigs = [_call_metric_sig(c) for c in calls]
        series: dict[str, Counter] = {}
        for name in dict.fromkeys(s[0] for s in sigs):
            data = self.get("experiment/metrics/get-metric", experimentKey=key,
                            metricName=name) or {}
            series[name] = Counter(
                _metric_sig(m.get("metricName"), m.get("metricValue"), m.get("step"),
                            m.get("epoch"), m.get("runContext"), m.get("timestamp"))
                for m in data.get("metrics") or [])
        wanted = set(sigs)
        times = sorted({s[5] for s in sigs if isinstance(s[5], int)})
        earlier: dict[tuple, list[int]] = {}  # sig -> seqs of identical journal calls
        last = calls[-1]
        for seq, t, text in self._rows_before(
                last, "log_metric", "AND (ts_ms IN (SELECT value FROM json_each(?)) OR "
                "instr(payload, '\"timestamp\":') > 0)", (json.dumps(times),),
                lookback=last.seq - calls[0].seq + LOOKBACK):
            sig = _call_metric_sig(Call(0, "log_metric", None, t, text))
            if sig in wanted:
                earlier.setdefault(sig, []).append(seq)
        return [series[sig[0]][sig] > bisect.bisect_left(earlier.get(sig, ()), call.seq)
                for call, sig in zip(calls, sigs)]

    def _samples(self, calls: list[Call], key: str) -> list[bool]:
        """System samples (CPU/RAM/load/GPU) show up on Comet as ``sys.*`` metrics. A sample
        is on the server if its probe metric has more points at the sample's (step,
        timestamp) than earlier journal samples of the same endpoint there explain."""
        counts: dict[str, Counter] = {}
        verdicts = []
        for call in calls:
            probe = _sample_probe(call)
            if probe is None:
                verdicts.append(None)
                continue
            if probe not in counts:
                data = self.get("experiment/metrics/get-metric", experimentKey=key,
                                metricName=probe) or {}
                counts[probe] = Counter((m.get("step"), m.get("timestamp"))
                                        for m in data.get("metrics") or [])
            where = _sample_position(call)
            earlier = sum(1 for _seq, t, text in self._rows_before(call, call.endpoint)
                          if _sample_position(Call(0, call.endpoint, None, t, text)) == where
                          and _sample_probe(Call(0, call.endpoint, None, t, text)) == probe)
            verdicts.append(counts[probe][where] > earlier)
        return verdicts

    def _summaries(self, path: str, name_field: str, value_field: str):
        def check(self: "ReadBack", calls: list[Call], key: str) -> list[bool]:
            data = self.get(path, experimentKey=key) or {}
            current = {v.get("name"): v for v in data.get("values") or []}
            by_name: dict[str, list[int]] = {}
            for i, call in enumerate(calls):
                by_name.setdefault(call.payload[name_field], []).append(i)
            verdicts = [False] * len(calls)

            def is_current(c: Call, summary: dict) -> bool:
                ts = c.payload.get("timestamp", c.ts_ms)
                return norm_value(c.payload.get(value_field)) == norm_value(
                    summary.get("valueCurrent")) and summary.get("timestampCurrent") in (
                    None, ts)

            for name, idxs in by_name.items():
                summary = current.get(name)
                if summary is None:
                    continue
                # the stream is ordered: the last call matching the server's current value
                # and time is where the run of calls stopped
                for i in reversed(idxs):
                    if is_current(calls[i], summary):
                        for j in idxs:
                            if j <= i:
                                verdicts[j] = True
                        break
                else:
                    # An earlier run may have sent this stream further than these calls (a
                    # crashed run's batch, re-batched differently now): if the current value
                    # is a later call's of that run, every call here was applied before it.
                    last = calls[idxs[-1]]
                    if any(is_current(c, summary) for c in self._sent_later(
                            last, name_field, name)):
                        for j in idxs:
                            verdicts[j] = True
            return verdicts
        return check

    def _sent_later(self, call: Call, name_field: str, name: str) -> list[Call]:
        """Later journal calls of ``call``'s stream that an earlier run may have sent."""
        high = getattr(self.r, "sent_at_start", 0)
        if high <= call.seq:
            return []
        conn = self.r.read_conn()
        rows = conn.execute(
            "SELECT seq, ts_ms, payload FROM calls WHERE seq > ? AND seq <= ? AND endpoint=? "
            "AND experiment_id IS ? AND seq NOT IN (SELECT seq FROM upload_state WHERE "
            "target_id=? AND state='rejected') ORDER BY seq",
            (call.seq, high, call.endpoint, call.experiment_id,
             self.r.progress.target_id)).fetchall()
        later = [Call(seq, call.endpoint, call.experiment_id, ts, text)
                 for seq, ts, text in rows]
        return [c for c in later if c.payload.get(name_field) == name]

    def _output(self, calls: list[Call], key: str) -> list[bool]:
        data = self.get("experiment/output", experimentKey=key) or {}
        have = len(data.get("output") or "")
        conn = self.r.read_conn()
        before = conn.execute(
            "SELECT coalesce(sum(length(json_extract(j.value, '$.output'))), 0) FROM calls c, "
            "json_each(c.payload, '$.outputLines') j WHERE c.endpoint='log_output' AND "
            "c.experiment_id IS ? AND c.seq < ? AND c.seq NOT IN (SELECT seq FROM upload_state "
            "WHERE target_id=? AND state='rejected')",
            (calls[0].experiment_id, calls[0].seq, self.r.progress.target_id)).fetchone()[0]
        verdicts = []
        total = before
        for call in calls:
            total += sum(len(line["output"]) for line in call.payload["outputLines"])
            verdicts.append(have >= total)
        return verdicts

    def _html(self, calls: list[Call], key: str) -> list[bool]:
        data = self.get("experiment/html", experimentKey=key) or {}
        server = data.get("html") or ""
        length = 0
        for _seq, _ts, text in self._rows_before(calls[0], "log_html", lookback=None):
            p = json.loads(text)
            length = len(p["html"]) if p.get("override") else length + len(p["html"])
        verdicts = []
        for call in calls:
            p = call.payload
            if p.get("override"):
                length = len(p["html"])
                verdicts.append(server == p["html"])
            else:
                length += len(p["html"])
                verdicts.append(len(server) >= length)
        return verdicts

    def _tags(self, calls: list[Call], key: str) -> list[bool]:
        data = self.get("experiment/tags", experimentKey=key) or {}
        have = set(data.get("tags") or [])
        return [set(c.payload.get("addedTags") or []) <= have for c in calls]

    def _blob_text(self, field: str):
        def check(self: "ReadBack", calls: list[Call], key: str) -> list[bool]:
            data = self.get(f"experiment/{'code' if field == 'code' else 'graph'}",
                            experimentKey=key) or {}
            ref = calls[-1].payload.get(field)
            text = blob_store.read_blob(self.r.read_conn(), ref["$blob"]).decode(
                "utf-8", errors="replace") if blob_store.is_blob_ref(ref) else ref
            return [data.get(field) == text] * len(calls)
        return check

    def _fields_equal(self, path: str):
        def check(self: "ReadBack", calls: list[Call], key: str) -> list[bool]:
            data = self.get(path, experimentKey=key) or {}
            return [all(norm_value(data.get(k)) == norm_value(v)
                        for k, v in c.payload.items()) for c in calls]
        return check

    def _metadata(self, predicate: Callable[[dict | None, dict], bool]):
        def check(self: "ReadBack", calls: list[Call], key: str) -> list[bool]:
            data = self.get("experiment/metadata", experimentKey=key)
            return [predicate(data, c.payload) for c in calls]
        return check

    def _assets(self, calls: list[Call], key: str) -> list[bool]:
        data = self.get("experiment/asset/list", experimentKey=key, type="all") or {}
        assets = data.get("assets") or []
        verdicts = []
        for call in calls:
            match = _asset_matcher(call)
            on_server = sum(1 for a in assets if match(a))
            before = 0
            for _seq, ts, text in self._rows_before(call, call.endpoint, lookback=None):
                earlier = Call(0, call.endpoint, None, ts, text)
                if earlier.payload.get("overwrite") and earlier.payload.get("fileName") == \
                        call.payload.get("fileName"):
                    before = 0  # an overwrite hides the earlier uploads of its name
                if _same_asset(earlier, call):
                    before += 1
            if call.payload.get("overwrite"):
                verdicts.append(on_server >= 1)
            else:
                verdicts.append(on_server > before)
        return verdicts

    # --- experiments and projects ---------------------------------------------------------

    def find_experiment(self, payload: dict, since_ms: int, claimed: set[str]
                        ) -> tuple[str, str | None] | None:
        """An experiment an interrupted ``write/experiment/create`` made: in the project, not
        claimed by this journal, with the journal's name."""
        data = self.get("experiments", workspaceName=payload.get("workspaceName"),
                        projectName=payload.get("projectName")) or {}
        for exp in data.get("experiments") or []:
            key = exp.get("experimentKey")
            if not key or key in claimed:
                continue
            if (exp.get("experimentName") or None) != (payload.get("experimentName") or None):
                continue
            logger.info("found experiment %s made by an interrupted create", key)
            return key, exp.get("link")
        return None

    def project_id(self, workspace: str, project: str) -> str | None:
        data = self.get("project", workspaceName=workspace, projectName=project)
        return data.get("projectId") if isinstance(data, dict) else None

    def _project(self, calls: list[Call], key: str | None) -> list[bool | None]:
        overrides = self.r.builder.overrides
        from comet_journal.schema.catalogue import ENDPOINTS
        verdicts: list[bool | None] = []
        for call in calls:
            p = overrides.apply(ENDPOINTS[call.endpoint], call.payload)
            if call.endpoint == "project_create":
                verdicts.append(self.project_id(p["workspaceName"], p["projectName"])
                                is not None)
            elif call.endpoint == "project_delete":
                verdicts.append(self.project_id(p["workspaceName"], p["projectName"]) is None)
            elif call.endpoint == "project_update" and p.get("newProjectName") and \
                    p.get("workspaceName"):
                verdicts.append(self.project_id(p["workspaceName"], p["newProjectName"])
                                is not None)
            else:
                verdicts.append(None)
        return verdicts


def _metric_sig(name, value, step, epoch, context, timestamp) -> tuple:
    return tuple(norm_value(v) if isinstance(v, (list, dict)) else v for v in (
        name, norm_value(value), step, epoch, context or None, timestamp))


def _call_metric_sig(call: Call) -> tuple:
    p = call.payload
    return _metric_sig(p["metricName"], p["metricValue"], p.get("step"), p.get("epoch"),
                       p.get("context"), p.get("timestamp", call.ts_ms))


_SAMPLE_PROBES: dict[str, Callable[[dict], str | None]] = {
    "cpu_metrics": lambda p: "sys.cpu.percent.avg",
    "ram_metrics": lambda p: "sys.ram.used",
    "load_metrics": lambda p: "sys.load.avg",
    "gpu_metrics": lambda p: (f"sys.gpu.{p['gpus'][0].get('gpuId')}.used_memory"
                              if p.get("gpus") else None),
}


def _sample_probe(call: Call) -> str | None:
    return _SAMPLE_PROBES[call.endpoint](call.payload)


def _sample_position(call: Call) -> tuple:
    p = call.payload
    return (p.get("step"), p.get("timestamp", call.ts_ms))


def _same_asset(a: Call, b: Call) -> bool:
    pa, pb = a.payload, b.payload
    return (pa.get("fileName"), pa.get("step"), _blob_size(pa), pa.get("type")) == \
        (pb.get("fileName"), pb.get("step"), _blob_size(pb), pb.get("type"))


def _blob_size(p: dict) -> int | None:
    for field in ("file", "content"):
        ref = p.get(field)
        if isinstance(ref, dict) and "size" in ref:
            return int(ref["size"])
    return None


def _asset_matcher(call: Call) -> Callable[[dict], bool]:
    p = call.payload
    size = _blob_size(p)
    step = p.get("step")
    if call.endpoint == "upload_git_patch":
        return lambda a: a.get("type") == "git-patch" and a.get("fileSize") == size
    if call.endpoint == "upload_text_sample":
        return lambda a: (a.get("type") == "text-sample" and a.get("fileSize") == size
                          and a.get("step") == step)
    name = p.get("fileName")
    kind = p.get("type") or "asset"
    return lambda a: (a.get("fileName") == name and a.get("fileSize") == size
                      and a.get("step") == step and (a.get("type") or "asset") == kind)


def _times_match(data: dict | None, p: dict) -> bool:
    if not data:
        return False
    return all(data.get(k) == v for k, v in p.items() if k in ("startTimeMillis",
                                                                "endTimeMillis"))


_PROJECT_CHECKS = frozenset({"project_create", "project_delete", "project_update"})

_CHECKS: dict[str, Callable] = {
    "log_metric": ReadBack._metrics,
    "cpu_metrics": ReadBack._samples,
    "ram_metrics": ReadBack._samples,
    "load_metrics": ReadBack._samples,
    "gpu_metrics": ReadBack._samples,
    "log_parameter": ReadBack._summaries(None, "experiment/parameters", "parameterName",
                                         "parameterValue"),
    "log_other": ReadBack._summaries(None, "experiment/log-other", "key", "value"),
    "log_output": ReadBack._output,
    "log_html": ReadBack._html,
    "add_tags": ReadBack._tags,
    "set_code": ReadBack._blob_text(None, "code"),
    "log_graph": ReadBack._blob_text(None, "graph"),
    "git_metadata": ReadBack._fields_equal(None, "experiment/git/metadata"),
    "system_details": ReadBack._fields_equal(None, "experiment/system-details"),
    "experiment_start_end_time": ReadBack._metadata(None, _times_match),
    "experiment_archive": ReadBack._metadata(None, lambda d, p: bool(d and d.get("archived"))),
    "experiment_delete": ReadBack._metadata(None, lambda d, p: d is None),
    "experiment_restore": ReadBack._metadata(
        None, lambda d, p: bool(d) and not d.get("archived")),
    "upload_asset": ReadBack._assets,
    "upload_git_patch": ReadBack._assets,
    "upload_text_sample": ReadBack._assets,
    "project_create": ReadBack._project,
    "project_delete": ReadBack._project,
    "project_update": ReadBack._project,
}
