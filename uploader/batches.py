"""``--batch``: metrics, parameters and output lines in the official SDK's gzip batches.

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
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from comet_journal.schema.catalogue import endpoint_named
from comet_journal.uploader.calls import Call
from comet_journal.uploader.requests_builder import BuiltRequest, encode_json

if TYPE_CHECKING:
    from comet_journal.uploader.progress import ExperimentTarget
    from comet_journal.uploader.sender import Outcome, Sender

BATCH_ENDPOINT = {"log_metric": "batch_metrics", "log_parameter": "batch_parameters",
                  "log_output": "batch_output"}


def batch_item(call: Call) -> dict:
    """One entry of a batch's ``values`` (or the output lines of one call)."""
    item = dict(call.payload)
    if call.endpoint in ("log_metric", "log_parameter") and "timestamp" not in item:
        item["timestamp"] = call.ts_ms
    return item


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


def send_batch(sender: "Sender", calls: list[Call], target: "ExperimentTarget") -> "Outcome":
    from comet_journal.uploader.sender import Outcome

    r = sender.r
    key = target.server_key
    endpoint = calls[0].endpoint
    batch_name = BATCH_ENDPOINT[endpoint]
    parts: list[tuple[Call, Outcome]] = []
    totals = Outcome(ok=True, batch=True)
    todo = list(calls)
    if any(c.maybe_sent for c in todo):
        todo = _drop_found(sender, todo, key, parts)
    use_batch = r.options.batch and sender.batch_ok.get(batch_name)
    if endpoint == "log_output" and not use_batch:
        batch_name = "log_output"  # lines still travel together, on the documented endpoint
    while todo:
        if batch_name != "log_output" and not (r.options.batch and
                                               sender.batch_ok.get(batch_name)):
            for call in todo:  # the documented endpoint, one call at a time, in order
                out = sender.send_call(call, target)
                _add(totals, out)
                parts.append((call, out))
            break
        pending = list(todo)

        def on_ambiguous(pending=pending):
            # Before resending after an unknown outcome: ack what the server already has,
            # resend only the rest (all found: done).
            for c in pending:
                c.maybe_sent = True
            pending[:] = _drop_found(sender, pending, key, parts)
            return not pending

        out = sender._exchange(lambda: build_batch(pending, key, batch_name),
                               r.idempotency_key(f"b{pending[0].seq}-{pending[-1].seq}"),
                               f"batch of {len(pending)} {endpoint} calls from call "
                               f"{pending[0].seq}", on_ambiguous=on_ambiguous)
        _add(totals, out)
        if out.ok:
            if not out.found:
                parts.extend((c, Outcome(ok=True)) for c in pending)
            break
        if out.status == 404 and batch_name != "log_output":
            sender.batch_ok[batch_name] = False
            todo = pending
            continue
        parts.extend((c, Outcome(ok=False, status=out.status, message=out.message))
                     for c in pending)
        break
    totals.parts = parts
    return totals


def _drop_found(sender: "Sender", calls: list[Call], key: str, parts: list) -> list[Call]:
    """Ack the calls the server already has; return the others, in order."""
    from comet_journal.uploader.sender import Outcome

    verdicts = sender.readback.applied_many(calls, key)
    rest = []
    for call, found in zip(calls, verdicts):
        if found:
            parts.append((call, Outcome(ok=True, found=True)))
        else:
            rest.append(call)
    return rest


def _add(totals: "Outcome", out: "Outcome") -> None:
    totals.attempts += out.attempts
    totals.retries += out.retries
    totals.throttled += out.throttled
    totals.bytes_sent += out.bytes_sent
