"""System samples: CPU, RAM, processor load and GPU usage, one journal row per sample.

The background sampler (``recorder.monitor``) calls these; users may too. Each sample carries
its own position (timestamp, and the current step/epoch when known), so the uploader may send
samples concurrently.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from comet_journal.recorder import validation as check
from comet_journal.recorder.tolerance import tolerant

_GPU_FIELDS = ("gpuId", "gpuUtilization", "totalMemory", "usedMemory", "freeMemory")


class SamplesMixin:
    """Part of :class:`comet_journal.recorder.Experiment`."""

    def _sample(self, method: str, endpoint: str, values: dict, step, epoch, context,
                timestamp) -> None:
        values.update(step=check.step(method, "step", step),
                      epoch=check.step(method, "epoch", epoch),
                      context=check.optional_str(method, "context", context),
                      timestamp=check.timestamp_seconds(method, timestamp))
        self._record(endpoint, values)

    @tolerant
    def log_cpu_metrics(self, cpu_percent_utilization: Any, step: Any = None, epoch: Any = None,
                        context: str | None = None, timestamp: Any = None) -> None:
        """One CPU sample: utilisation in percent, one number per core."""
        method = "log_cpu_metrics"
        values = cpu_percent_utilization
        if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple)) or not values:
            raise check.type_error(method, "cpu_percent_utilization",
                                   "a non-empty list of percentages", values)
        for v in values:
            _percent(method, "cpu_percent_utilization", v)
        self._sample(method, "cpu_metrics", {"cpuPercentUtilization": list(values)}, step,
                     epoch, context, timestamp)

    @tolerant
    def log_ram_metrics(self, total_ram: Any, used_ram: Any, step: Any = None, epoch: Any = None,
                        context: str | None = None, timestamp: Any = None) -> None:
        """One RAM sample, in bytes."""
        method = "log_ram_metrics"
        total = _bytes(method, "total_ram", total_ram)
        used = _bytes(method, "used_ram", used_ram)
        if used > total:
            raise check.value_error(method, "used_ram", f"must not exceed total_ram ({total})",
                                    used)
        self._sample(method, "ram_metrics", {"totalRam": total, "usedRam": used}, step, epoch,
                     context, timestamp)

    @tolerant
    def log_load_metrics(self, load_average: Any, step: Any = None, epoch: Any = None,
                         context: str | None = None, timestamp: Any = None) -> None:
        """One processor-load sample (the 1-minute load average)."""
        method = "log_load_metrics"
        if isinstance(load_average, bool) or not isinstance(load_average, numbers.Real) \
                or not 0 <= load_average < math.inf:
            raise check.type_error(method, "load_average", "a non-negative number", load_average)
        self._sample(method, "load_metrics", {"loadAverage": float(load_average)}, step, epoch,
                     context, timestamp)

    @tolerant
    def log_gpu_metrics(self, gpus: Any, step: Any = None, epoch: Any = None,
                        context: str | None = None, timestamp: Any = None) -> None:
        """One GPU sample: a list of dicts with gpuId, gpuUtilization (percent), and
        totalMemory/usedMemory/freeMemory (bytes)."""
        method = "log_gpu_metrics"
        if not isinstance(gpus, (list, tuple)) or not gpus:
            raise check.type_error(method, "gpus", "a non-empty list of dicts", gpus)
        rows = []
        for gpu in gpus:
            if not isinstance(gpu, dict):
                raise check.type_error(method, "gpus[]", "a dict", gpu)
            missing = [f for f in _GPU_FIELDS if f not in gpu]
            extra = [f for f in gpu if f not in _GPU_FIELDS]
            if missing or extra:
                raise check.value_error(method, "gpus[]", "needs exactly the keys "
                                        + ", ".join(_GPU_FIELDS), gpu)
            rows.append({"gpuId": _bytes(method, "gpuId", gpu["gpuId"]),
                         "gpuUtilization": int(_percent(method, "gpuUtilization",
                                                        gpu["gpuUtilization"])),
                         **{f: _bytes(method, f, gpu[f])
                            for f in ("totalMemory", "usedMemory", "freeMemory")}})
        self._sample(method, "gpu_metrics", {"gpus": rows}, step, epoch, context, timestamp)


def _percent(method: str, arg: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value <= 100:
        raise check.type_error(method, arg, "a percentage between 0 and 100", value)
    return value


def _bytes(method: str, arg: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise check.type_error(method, arg, "a non-negative integer", value)
    return int(value)
