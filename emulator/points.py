"""Metric points as Comet shows them: what one applied request adds to the metric series.

Metrics (one, or a batch) and system samples, which Comet shows as ``sys.*`` metrics.
"""

from __future__ import annotations

import json
import math
from typing import Any, Callable, Final, Iterator

# Where metric points come from: metrics, and system samples (as their sys.* metrics).
METRIC_POINT_ENDPOINTS: Final = frozenset(("log_metric", "batch_metrics", "cpu_metrics",
                                           "gpu_metrics", "ram_metrics", "load_metrics"))


def system_sample_metrics(endpoint: str, fields: dict) -> list[tuple[str, Any]]:
    """A CPU/RAM/load/GPU sample as the ``sys.*`` metrics Comet shows for it (the names the
    SDK's own monitor uses): ``sys.cpu.percent.01``.. and ``.avg``, ``sys.ram.total`` and
    ``.used``, ``sys.load.avg``, ``sys.gpu.<id>.gpu_utilization`` and ``..._memory``."""
    if endpoint == "cpu_metrics":
        values = [float(v) for v in fields.get("cpuPercentUtilization") or []]
        out = [(f"sys.cpu.percent.{i + 1:02d}", v) for i, v in enumerate(values)]
        if values:
            out.append(("sys.cpu.percent.avg", sum(values) / len(values)))
        return out
    if endpoint == "ram_metrics":
        return [("sys.ram.total", fields.get("totalRam")), ("sys.ram.used", fields.get("usedRam"))]
    if endpoint == "load_metrics":
        return [("sys.load.avg", fields.get("loadAverage"))]
    if endpoint == "gpu_metrics":
        return [(f"sys.gpu.{g.get('gpuId')}.{name}", g.get(field))
                for g in fields.get("gpus") or []
                for name, field in (("gpu_utilization", "gpuUtilization"),
                                    ("total_memory", "totalMemory"),
                                    ("used_memory", "usedMemory"),
                                    ("free_memory", "freeMemory"))]
    return []


def points_of(endpoint: str, fields: dict, at_ms: int) -> list[dict]:
    """The metric points one applied request adds: ``{metricName, metricValue, step, epoch,
    context, timestamp}``; a point without a timestamp gets the time it was applied."""
    if endpoint in ("cpu_metrics", "gpu_metrics", "ram_metrics", "load_metrics"):
        return [{"metricName": name, "metricValue": value, "step": fields.get("step"),
                 "epoch": fields.get("epoch"), "context": fields.get("context"),
                 "timestamp": fields.get("timestamp") or at_ms}
                for name, value in system_sample_metrics(endpoint, fields)]
    items = fields["values"] if endpoint == "batch_metrics" else (fields,)
    return [{"metricName": item["metricName"], "metricValue": item["metricValue"],
             "step": item.get("step"), "epoch": item.get("epoch"),
             "context": item.get("context"), "timestamp": item.get("timestamp") or at_ms}
            for item in items]


def comet_text(value: Any) -> str | None:
    """A value as Comet's read API shows metric and parameter values: as text."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    return json.dumps(value)


# One page of a series' get-metric answer, written by SQLite (no Python object per point):
# its items as a JSON array, its last id, its length.
SERIES_PAGE: Final = """
SELECT json_group_array(json_object(
           'metricName', name, 'metricValue', text, 'timestamp', timestamp, 'step', step,
           'epoch', epoch, 'runContext', context, 'offset', n)), max(id), count(*)
FROM (SELECT id, name, text, timestamp, step, epoch, context,
             ?5 + row_number() OVER (ORDER BY id) - 1 AS n FROM metric_points
      WHERE experiment_key = ?1 AND name = ?2 AND id > ?3 ORDER BY id LIMIT ?4)"""


def series_answer(experiment_key: str, name: str,
                  read_page: Callable[[int, int], tuple]) -> Iterator[bytes]:
    """The pieces of a get-metric answer: its head, each page's items (``read_page(after id,
    offset)`` gives a page's JSON array, its last id and its length), its end."""
    yield b'{"experimentKey":%s,"metricName":%s,"metrics":[' % (
        json.dumps(experiment_key).encode(), json.dumps(name).encode())
    after, offset = 0, 0
    while True:
        items, last, n = read_page(after, offset)
        if not n:
            break
        # the page's items without the array's brackets, after a comma but for the first
        yield (b"," if offset else b"") + items[1:-1].encode()
        after, offset = last, offset + n
    yield b"]}"
