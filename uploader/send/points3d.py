"""A 3D point cloud, sent as the official SDK sends it, exactly once.

The journal holds one compound call (``schema.catalogue.POINTS_3D``); the server needs three
kinds of request: ``asset`` makes the container and answers its ``assetId`` (the client cannot
choose it), then ``asset/{assetId}/thumbnail`` and one ``asset/asset-item`` per item fill it.
Only the container's creation makes something new on every request; the thumbnail and the
items are keyed by the container's id and their file name (a resend replaces them). So the
container is looked up before it is made, whenever an earlier attempt may have made it (an
earlier run sent the call, or this run's request got no answer): the experiment's asset list,
by name, step and type, counting the same-name clouds earlier in the journal, as the asset
check does for files. Each step goes through the one retry loop with its own
Idempotency-Key.
"""

from __future__ import annotations

import json
from typing import Final

from comet_journal.schema.catalogue import POINTS_3D_ITEMS
from comet_journal.uploader.journal.calls import Call
from comet_journal.uploader.send.context import SendContext
from comet_journal.uploader.send.readback import ReadBack
from comet_journal.uploader.wire.exchange import Link, Outcome
from comet_journal.uploader.wire.requests import RequestBuilder

ASSET_TYPE_3D: Final = "3d-image"  # the container's type, as the SDK names it
THUMBNAIL_EXTENSION: Final = ".png"


class Points3DSender:
    """``send(call, server_key) -> Outcome`` for one journaled 3D point cloud."""

    def __init__(self, link: Link, context: SendContext, builder: RequestBuilder,
                 readback: ReadBack):
        self.link = link
        self.context = context
        self.builder = builder
        self.readback = readback

    def send(self, call: Call, key: str | None) -> Outcome:
        total = Outcome(ok=False)
        asset_id = self.existing_asset(call, key) if call.maybe_sent else None
        if asset_id is None:
            created, asset_id = self._create(call, key)
            total.add_counts(created)
            if not created.ok or asset_id is None:
                return _failed(total, created, "the 3D asset's container was made, but its "
                               "id could not be read back")
        for step, endpoint, payload in self._fillers(call, key, asset_id):
            out = self._exchange(call, step, endpoint, payload)
            total.add_counts(out)
            if not out.ok:
                return _failed(total, out)
        total.ok = True
        total.status = 200
        return total

    def existing_asset(self, call: Call, key: str | None) -> str | None:
        """The id of the container an earlier attempt made for ``call``, if any: the n-th
        cloud of its name and step on the server, n being the same-name clouds that come
        before it in the journal."""
        if key is None:
            return None
        p = call.payload
        data = self.readback.read("experiment/asset/list", experimentKey=key, type="all") or {}
        mine = [a for a in data.get("assets") or [] if a.get("type") == ASSET_TYPE_3D
                and a.get("fileName") == p["userFileName"] and a.get("step") == p.get("step")]
        before = sum(1 for _seq, ts, text in self.readback.history.rows_before(
            call, call.endpoint, lookback=None)
            if _same_cloud(Call(0, call.endpoint, None, ts, text), call))
        return mine[before].get("assetId") if len(mine) > before else None

    def _create(self, call: Call, key: str | None) -> tuple[Outcome, str | None]:
        p = call.payload
        payload = {"userFileName": p["userFileName"], "assetType": ASSET_TYPE_3D,
                   "step": p.get("step"), "metadata": p.get("metadata")}
        found: list[str] = []

        def on_ambiguous() -> bool:
            asset_id = self.existing_asset(call, key)
            if asset_id:
                found.append(asset_id)
            return asset_id is not None

        out = self.link.exchange(
            lambda: self.builder.build("clientlib_asset_3d", payload, server_key=key,
                                       ts_ms=call.ts_ms),
            self.context.idempotency_key(f"{call.seq}-asset"), f"{call.label()} (container)",
            on_ambiguous=on_ambiguous, usable=_has_asset_id)
        if out.ok and not out.found and out.answer is not None:
            found.append(out.answer.json()["assetId"])
        return out, (found[-1] if found else None)

    def _fillers(self, call: Call, key: str | None, asset_id: str):
        """The thumbnail, then each item: ``(step, endpoint, payload)``."""
        p = call.payload
        params = {"experimentKey": key}  # the API key travels in the header, never here
        if p.get("thumbnail"):
            yield "thumbnail", "clientlib_asset_thumbnail", {
                "assetId": asset_id, "thumbnail": p["thumbnail"],
                "requestParams": _params(params, thumbnailExtension=THUMBNAIL_EXTENSION)}
        for field, file_name in POINTS_3D_ITEMS.items():
            if p.get(field):
                yield field, "clientlib_asset_item", {
                    "assetItemContent": p[field], "requestParams": _params(
                        params, assetId=asset_id, userFileName=file_name,
                        assetItemType=field)}

    def _exchange(self, call: Call, step: str, endpoint: str, payload: dict) -> Outcome:
        return self.link.exchange(
            lambda: self.builder.build(endpoint, payload, server_key=None, ts_ms=call.ts_ms),
            self.context.idempotency_key(f"{call.seq}-{step}"), f"{call.label()} ({step})")


def _params(base: dict, **more) -> str:
    return json.dumps({k: v for k, v in {**base, **more}.items() if v is not None},
                      separators=(",", ":"))


def _same_cloud(a: Call, b: Call) -> bool:
    return (a.payload.get("userFileName"), a.payload.get("step")) == \
        (b.payload.get("userFileName"), b.payload.get("step"))


def _has_asset_id(answer) -> str | None:
    data = answer.json()
    if isinstance(data, dict) and isinstance(data.get("assetId"), str) and data["assetId"]:
        return None
    return "the answer has no assetId"


def _failed(total: Outcome, last: Outcome, why: str = "") -> Outcome:
    """The job's outcome when a step did not succeed: that step's verdict, all counts."""
    total.ok = False
    total.status, total.answer, total.held = last.status, last.answer, last.held
    total.message = last.message or why
    return total
