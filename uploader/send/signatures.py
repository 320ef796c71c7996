"""What makes two metric points (or system samples) the same: their signatures.

A point read from the server and a journal call are compared by signature: name, value (as
comparable across JSON and Comet's text form), step, epoch, context and timestamp; a system
sample by the (step, timestamp) of its probe metric (the ``sys.*`` series Comet shows it as).
"""

from __future__ import annotations

import json
import math
from typing import Any, Callable

from comet_journal.uploader.journal.calls import Call


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


def series_point(call: Call) -> tuple[str, str, tuple] | None:
    """Where a call's point is read back, for calls read back as metric series: ``("metrics",
    name, signature)`` or ``("samples", probe metric, (step, timestamp))``; None otherwise."""
    if call.endpoint == "log_metric":
        sig = call_metric_sig(call)
        return "metrics", sig[0], sig
    if call.endpoint in _SAMPLE_PROBES:
        probe = _sample_probe(call)
        return None if probe is None else ("samples", probe, _sample_position(call))
    return None


def sample_point_sig(m: dict) -> tuple:
    """The signature of a probe metric's point as the read API returns it."""
    return m.get("step"), m.get("timestamp")


def _metric_sig(name, value, step, epoch, context, timestamp) -> tuple:
    return tuple(norm_value(v) if isinstance(v, (list, dict)) else v for v in (
        name, norm_value(value), step, epoch, context or None, timestamp))


def server_metric_sig(m: dict) -> tuple:
    """The signature of a point as the read API returns it."""
    return _metric_sig(m.get("metricName"), m.get("metricValue"), m.get("step"),
                       m.get("epoch"), m.get("runContext"), m.get("timestamp"))


def call_metric_sig(call: Call) -> tuple:
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


# Endpoints whose calls read back as points of metric series (see series_point).
SERIES_ENDPOINTS = frozenset(("log_metric", *_SAMPLE_PROBES))
