"""GPU facts through NVML (``nvidia-ml-py``, the optional extra ``gpu``).

:class:`GpuReader` opens NVML, finds the GPUs this process may use (``CUDA_VISIBLE_DEVICES``,
as CUDA reads it) and answers two questions: the GPUs' static information (for the system
details' ``gpuStaticInfoList``) and one usage sample (for ``gpu_metrics``). ``pynvml`` is
imported lazily, on first use, and only by :func:`open_gpus`; tests pass a stand-in module
with ``nvml=`` (or put one in ``sys.modules["pynvml"]``).

GPU ids: ``gpuId`` in samples and ``gpuIndex`` in the static information are both the NVML
index of the device (the order of ``nvidia-smi``), so the two can be joined. With the default
``CUDA_DEVICE_ORDER=FASTEST_FIRST`` CUDA may number GPUs differently on a machine with mixed
models; index-based ``CUDA_VISIBLE_DEVICES`` entries are read as NVML indices, as the official
SDK does.

Example::

    reader, why_not = open_gpus()
    if reader is None:
        print("no GPU monitoring:", why_not)
    else:
        reader.static_info()   # [{"gpuIndex": 0, "name": ..., "uuid": ..., ...}]
        reader.sample()        # [{"gpuId": 0, "gpuUtilization": 12, ...}]
"""

from __future__ import annotations

import logging
import os
from typing import Any

logger = logging.getLogger(__name__)

# CUDA_VISIBLE_DEVICES values meaning "no GPU" (CUDA also stops at the first invalid entry).
_NO_DEVICES = ("", "-1")


class GpuReader:
    """The visible GPUs of one process, read through one NVML module.

    Not thread-safe: one thread (the monitor's) uses a reader. Re-open a reader in a forked
    child rather than reusing the parent's handles.
    """

    def __init__(self, nvml: Any, devices: list[tuple[int, Any]]):
        self._nvml = nvml
        self._devices = devices  # (NVML index, handle), in CUDA_VISIBLE_DEVICES order
        self._no_utilization: set[int] = set()
        self._closed = False

    @property
    def indices(self) -> list[int]:
        return [index for index, _ in self._devices]

    def static_info(self) -> list[dict]:
        """``gpuStaticInfoList`` entries: gpuIndex, name, uuid, powerLimit (mW), totalMemory."""
        nvml = self._nvml
        info = []
        for index, handle in self._devices:
            try:
                power_limit = int(nvml.nvmlDeviceGetEnforcedPowerLimit(handle))
            except nvml.NVMLError:  # not supported on some boards: 0 rather than no entry
                power_limit = 0
            info.append({"gpuIndex": index, "name": _text(nvml.nvmlDeviceGetName(handle)),
                         "uuid": _text(nvml.nvmlDeviceGetUUID(handle)),
                         "powerLimit": power_limit,
                         "totalMemory": int(nvml.nvmlDeviceGetMemoryInfo(handle).total)})
        return info

    def sample(self) -> list[dict]:
        """One usage sample per visible GPU: gpuId, gpuUtilization (%), total/used/free memory
        (bytes). Raises the NVML error when a GPU cannot be read at all."""
        nvml = self._nvml
        gpus = []
        for index, handle in self._devices:
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            utilization = 0
            if index not in self._no_utilization:
                try:
                    utilization = int(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
                except nvml.NVMLError as exc:
                    if _code(exc) != getattr(nvml, "NVML_ERROR_NOT_SUPPORTED", 3):
                        raise
                    # MIG and some virtual GPUs: memory is known, utilisation is not
                    self._no_utilization.add(index)
                    logger.info("comet-journal: GPU %d does not report its utilization; "
                                "recorded as 0", index)
            total, used = int(memory.total), int(memory.used)
            gpus.append({"gpuId": index, "gpuUtilization": max(0, min(100, utilization)),
                         "totalMemory": total, "usedMemory": min(used, total),
                         "freeMemory": int(memory.free)})
        return gpus

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            try:
                self._nvml.nvmlShutdown()
            except Exception:  # NVML is refcounted; a failed shutdown changes nothing for us
                pass


def open_gpus(nvml: Any = None,
              visible: str | None = None) -> tuple[GpuReader | None, str | None]:
    """Open NVML and the visible GPUs.

    :param nvml: the NVML module (default: ``import pynvml``); tests pass a stand-in.
    :param visible: ``CUDA_VISIBLE_DEVICES`` (default: read from the environment).
    :returns: ``(reader, None)``, or ``(None, reason)`` when there is nothing to monitor:
        ``nvidia-ml-py`` missing, no NVML library (no driver), no GPU, or none visible.
    """
    if nvml is None:
        try:
            import pynvml as nvml  # optional dependency: pip install comet-journal[gpu]
        except ImportError:
            return None, "nvidia-ml-py is not installed (pip install 'comet-journal[gpu]')"
    try:
        nvml.nvmlInit()
    except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
        return None, f"NVML is not available ({exc})"
    try:
        count = int(nvml.nvmlDeviceGetCount())
        if visible is None:
            visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        indices = _visible_indices(nvml, count, visible)
        devices = [(i, nvml.nvmlDeviceGetHandleByIndex(i)) for i in indices]
    except Exception as exc:
        _shutdown(nvml)
        return None, f"NVML could not list the GPUs ({exc})"
    if not devices:
        _shutdown(nvml)
        if count == 0:
            return None, "no GPU found"
        return None, f"no GPU is visible (CUDA_VISIBLE_DEVICES={visible!r})"
    return GpuReader(nvml, devices), None


def _visible_indices(nvml: Any, count: int, visible: str | None) -> list[int]:
    """NVML indices of the GPUs CUDA would use, in CUDA's order.

    Like CUDA: unset means every GPU; entries are indices or (prefixes of) ``GPU-`` UUIDs;
    the first invalid, unknown, ambiguous or repeated entry ends the list.
    """
    if visible is None:
        return list(range(count))
    if visible.strip() in _NO_DEVICES:
        return []
    uuids: list[str] | None = None
    indices: list[int] = []
    for entry in visible.split(","):
        entry = entry.strip()
        index: int | None = None
        if entry.isdigit():
            index = int(entry) if int(entry) < count else None
        elif entry.startswith("GPU-"):
            if uuids is None:
                uuids = [_text(nvml.nvmlDeviceGetUUID(nvml.nvmlDeviceGetHandleByIndex(i)))
                         for i in range(count)]
            matches = [i for i, uuid in enumerate(uuids) if uuid.startswith(entry)]
            index = matches[0] if len(matches) == 1 else None
        if index is None or index in indices:  # MIG-... entries are not followed either
            if entry:
                logger.info("comet-journal: CUDA_VISIBLE_DEVICES entry %r is not a visible "
                            "GPU; it and the entries after it are ignored", entry)
            break
        indices.append(index)
    return indices


def _shutdown(nvml: Any) -> None:
    try:
        nvml.nvmlShutdown()
    except Exception:
        pass


def _text(value: Any) -> str:
    """NVML strings are bytes in old ``pynvml`` versions and str in new ones."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _code(exc: BaseException) -> Any:
    return getattr(exc, "value", None)
