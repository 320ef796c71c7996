"""Batches: metrics, parameters and output lines in the official SDK's gzip batches.

Lossless, unlike ``comet upload``: every journaled value is sent (no sampling, no collapsing
of parameters to their last value). The dispatcher hands a worker up to ``batch_size``
consecutive calls of one batch stream; this module turns them into one request built from the
catalogue's ``batch_metrics`` / ``batch_parameters`` / ``batch_output`` entries.

Exactly once: a batch whose outcome is unknown is checked item by item through the read API;
items the server has are acked, the rest go again as a smaller batch. Parameter batches are
ordered per name; a server applies a batch as a whole, so the last value of each name decides
for the earlier values of that name in the same batch.

Fallback: if the server answers 404 for a batch endpoint, batches are switched off for that
endpoint and the calls go one by one through the documented endpoint.

Batch mode's metric groups (:class:`~comet_journal.uploader.journal.groups.MetricGroup`) go out
as one request each, spliced from their journal rows (:meth:`BatchSender.send_group`): a group
holding a row an earlier run may have sent is sent as a checked batch instead; an
ambiguous failure parks the group (``in_doubt``: see :mod:`.sender`), and when it comes back
the pass it was parked into says which rows the server has; only the others are resent.
"""

from __future__ import annotations

import json
from typing import Callable

from comet_journal.schema.catalogue import endpoint_named
from comet_journal.uploader.journal.calls import Call
from comet_journal.uploader.journal.groups import MetricGroup
from comet_journal.uploader.journal.progress import ExperimentTarget
from comet_journal.uploader.send.context import SendContext
from comet_journal.uploader.send.readback import ReadBack
from comet_journal.uploader.wire.capabilities import Capabilities
from comet_journal.uploader.wire.exchange import Link, Outcome
from comet_journal.uploader.wire.requests import BuiltRequest, encode_json

GROUP_ROUTE = "batch_metrics"  # where metric groups go
# The verdict of a call within a job, shared by every such call (read, never changed): a
# batch's thousand rows would otherwise make a thousand outcomes (about 1 KB each).
APPLIED = Outcome(ok=True)
FOUND = Outcome(ok=True, found=True)
# The batch route of each endpoint that has one (the batchability of every other is: none).
BATCH_ENDPOINT = {"log_metric": "batch_metrics", "log_parameter": "batch_parameters",
                  "log_output": "batch_output"}


def _item_text(call: Call) -> str:
    text = call.text
    if '"timestamp":' in text:
        return text
    return f'{text[:-1]},"timestamp":{call.ts_ms}}}' if text != "{}" else \
        f'{{"timestamp":{call.ts_ms}}}'


def build_batch(calls: list[Call], key: str, name: str | None = None) -> BuiltRequest:
    name = name or BATCH_ENDPOINT[calls[0].endpoint]
    ep = endpoint_named(name)
    if name == "log_output":  # the documented endpoint: one request, many lines
        body = {"experimentKey": key,
                "outputLines": [line for c in calls for line in c.payload["outputLines"]]}
        context = calls[0].payload.get("context")
        if context is not None:
            body["context"] = context
        data = encode_json(body)
        return BuiltRequest(ep.method, ep.path, body=data, content_type="application/json",
                            size=len(data))
    if name == "batch_output":
        lines = [line for c in calls for line in c.payload["outputLines"]]
        body = {"experimentKey": key, "outputLines": lines}
        context = calls[0].payload.get("context")
        if context is not None:
            body["runContext"] = context
    else:
        # Spliced, not re-encoded: a journal payload is already the item's compact JSON.
        data = ('{"experimentKey":' + json.dumps(key) + ',"values":['
                + ",".join(_item_text(c) for c in calls) + "]}").encode()
        return BuiltRequest(ep.method, ep.path, body=data, content_type="application/json",
                            size=len(data), gzip=True)
    data = encode_json(body)
    return BuiltRequest(ep.method, ep.path, body=data, content_type="application/json",
                        size=len(data), gzip=True)


class BatchSender:
    """Sends a job of several calls of one batch stream, or a metric group, as batches.

    :param send_one: sends one call the documented way (the fallback after a 404).
    """

    def __init__(self, link: Link, context: SendContext, readback: ReadBack,
                 capabilities: Capabilities,
                 send_one: Callable[[Call, ExperimentTarget], Outcome]):
        self.link = link
        self.context = context
        self.readback = readback
        self.capabilities = capabilities
        self.send_one = send_one

    def _use_batch(self, route: str) -> bool:
        return self.context.batch and self.capabilities.batch_ok(route)

    def send(self, calls: list[Call], target: ExperimentTarget) -> Outcome:
        """Several calls of one batch stream, in order: ``parts`` has a verdict per call."""
        key = target.server_key
        endpoint = calls[0].endpoint
        route = BATCH_ENDPOINT[endpoint]
        parts: list[tuple[Call, Outcome]] = []
        totals = Outcome(ok=True)  # batch: set once a batch route is really used
        todo = list(calls)
        if any(c.maybe_sent for c in todo):
            todo = self.drop_found(todo, key, parts)
        if endpoint == "log_output" and not self._use_batch(route):
            route = "log_output"  # lines still travel together, on the documented endpoint
        while todo:
            if route != "log_output" and not self._use_batch(route):
                for call in todo:  # the documented endpoint, one call at a time, in order
                    out = self.send_one(call, target)
                    totals.add_counts(out)
                    parts.append((call, out))
                break
            pending = list(todo)

            def on_ambiguous(pending=pending):
                # Before resending after an unknown outcome: ack what the server already
                # has, resend only the rest (all found: done).
                for c in pending:
                    c.maybe_sent = True
                pending[:] = self.drop_found(pending, key, parts, fresh=True)
                return not pending

            totals.batch = totals.batch or route != "log_output"
            out = self.link.exchange(
                lambda: build_batch(pending, key, route),
                self.context.idempotency_key(f"b{pending[0].seq}-{pending[-1].seq}"),
                f"batch of {len(pending)} {endpoint} calls from call {pending[0].seq}",
                on_ambiguous=on_ambiguous)
            totals.add_counts(out)
            if out.ok:
                if not out.found:
                    parts.extend((c, APPLIED) for c in pending)
                    self.readback.note_sent(pending, key)
                break
            if out.status == 404 and route != "log_output":
                self.capabilities.batch_gone(route)
                todo = pending
                continue
            parts.extend((c, Outcome(ok=False, status=out.status, message=out.message))
                         for c in pending)
            break
        totals.parts = parts
        return totals

    def send_group(self, group: MetricGroup, target: ExperimentTarget) -> Outcome:
        """One metric group as one gzip batch. ``parts`` is None when every row was applied
        by this request (the common case); otherwise it has a verdict per row."""
        key = target.server_key
        if self.readback.is_parked(key, group.seq):
            return self._resolve_group(group, target)
        if group.maybe_sent or not self._use_batch(GROUP_ROUTE):
            high = group.seqs[-1] if self.context.may_be_on_server(group.experiment_id) \
                else self.context.sent_at_start
            return self.send(group.calls(high), target)
        ep = endpoint_named(GROUP_ROUTE)
        data = ('{"experimentKey":' + json.dumps(key) + ',"values":[' + ",".join(group.items)
                + "]}").encode()
        whole = BuiltRequest(ep.method, ep.path, body=data, content_type="application/json",
                             size=len(data), gzip=True)
        parts: list = []
        state: dict = {"pending": None}  # None: the whole group, as built above

        def build() -> BuiltRequest:
            pending = state["pending"]
            return whole if pending is None else build_batch(pending, key, GROUP_ROUTE)

        def on_ambiguous() -> bool:
            # Before resending after an unknown outcome: ack what the server already has,
            # resend only the rest (all found: done).
            pending = state["pending"]
            if pending is None:
                pending = group.calls()
            for c in pending:
                c.maybe_sent = True
            state["pending"] = self.drop_found(pending, key, parts, fresh=True)
            return not state["pending"]

        out = self.link.exchange(build, self.context.idempotency_key(
            f"b{group.seq}-{group.last}"), group.label(), on_ambiguous=on_ambiguous,
            park=True)
        if out.in_doubt:  # resolved when the dispatcher sends the group again
            self.readback.park(group.calls(), key, group.seq)
            out.batch = True
            return out
        totals = Outcome(ok=True, batch=True)
        totals.add_counts(out)
        pending = state["pending"]
        if pending is None:
            if out.ok:
                return totals  # parts None: every row applied by this request
            pending = group.calls()
        if out.ok:
            if not out.found:
                parts.extend((c, APPLIED) for c in pending)
                self.readback.note_sent(pending, key)
        elif out.status == 404:
            self.capabilities.batch_gone(GROUP_ROUTE)
            rest = self.send(pending, target)  # the documented endpoint, in order
            totals.add_counts(rest)
            parts.extend(rest.parts)
        else:
            parts.extend((c, Outcome(ok=False, status=out.status, message=out.message))
                         for c in pending)
        totals.parts = parts
        return totals

    def _resolve_group(self, group: MetricGroup, target: ExperimentTarget) -> Outcome:
        """A parked group, back: the pass it was parked into says which rows the server has;
        the others go again (as a batch, read back at once if that fails too)."""
        parts: list = []
        rest = self.drop_found(group.calls(), target.server_key, parts, parked=group.seq)
        totals = Outcome(ok=True, batch=True)
        if rest:
            again = self.send(rest, target)
            totals.add_counts(again)
            parts.extend(again.parts)
        else:
            self.link.gate.ok()  # progress: every row settled
        totals.parts = parts
        return totals

    def drop_found(self, calls: list[Call], key: str, parts: list,
                   fresh: bool = False, parked: int | None = None) -> list[Call]:
        """Ack the calls the server already has (into ``parts``); return the others, in
        order. ``fresh``: after this run's request failed ambiguously; ``parked``: the unit
        they were parked as (:meth:`ReadBack.park`)."""
        verdicts = self.readback.applied_many(calls, key, fresh, parked)
        rest = []
        for call, found in zip(calls, verdicts):
            if found:
                parts.append((call, FOUND))
            else:
                rest.append(call)
        return rest
