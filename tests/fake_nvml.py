"""A stand-in for the ``pynvml`` module (nvidia-ml-py), to test GPU paths without a GPU.

Use it as ``open_gpus(nvml=FakeNvml(...))`` or put it in ``sys.modules["pynvml"]``.
"""

from __future__ import annotations

import types
from dataclasses import dataclass

NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_GPU_IS_LOST = 15


class NVMLError(Exception):
    def __init__(self, value: int):
        super().__init__(f"NVML error {value}")
        self.value = value


@dataclass
class FakeGpu:
    name: str
    uuid: str
    total: int = 80 * 2**30
    used: int = 2**30
    utilization: int = 42
    power_limit: int = 300_000
    utilization_supported: bool = True
    power_limit_supported: bool = True
    lost: bool = False


@dataclass
class _Memory:
    total: int
    used: int
    free: int


@dataclass
class _Utilization:
    gpu: int
    memory: int = 0


def two_gpus() -> list[FakeGpu]:
    return [FakeGpu("NVIDIA Fake A100", "GPU-aaaa1111-0000-0000-0000-000000000000",
                    utilization=10),
            FakeGpu("NVIDIA Fake H100", "GPU-bbbb2222-0000-0000-0000-000000000000",
                    total=96 * 2**30, used=5 * 2**30, utilization=90, power_limit=700_000)]


class FakeNvml(types.ModuleType):
    """Module-like: the functions the recorder calls, over a list of :class:`FakeGpu`."""

    NVMLError = NVMLError
    NVML_ERROR_NOT_SUPPORTED = NVML_ERROR_NOT_SUPPORTED

    def __init__(self, gpus: list[FakeGpu] | None = None, *, library_missing: bool = False,
                 names_as_bytes: bool = False):
        super().__init__("pynvml")
        self.gpus = two_gpus() if gpus is None else gpus
        self.library_missing = library_missing
        self.names_as_bytes = names_as_bytes
        self.inits = 0
        self.shutdowns = 0
        self.samples = 0

    def _text(self, value: str):
        return value.encode() if self.names_as_bytes else value

    def _gpu(self, handle) -> FakeGpu:
        gpu = self.gpus[handle]
        if gpu.lost:
            raise NVMLError(NVML_ERROR_GPU_IS_LOST)
        return gpu

    def nvmlInit(self):
        if self.library_missing:
            raise NVMLError(NVML_ERROR_LIBRARY_NOT_FOUND)
        self.inits += 1

    def nvmlShutdown(self):
        self.shutdowns += 1

    def nvmlDeviceGetCount(self):
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index):
        if not 0 <= index < len(self.gpus):
            raise NVMLError(2)
        return index  # the handle is the index

    def nvmlDeviceGetName(self, handle):
        return self._text(self._gpu(handle).name)

    def nvmlDeviceGetUUID(self, handle):
        return self._text(self._gpu(handle).uuid)

    def nvmlDeviceGetMemoryInfo(self, handle):
        gpu = self._gpu(handle)
        self.samples += 1
        return _Memory(gpu.total, gpu.used, gpu.total - gpu.used)

    def nvmlDeviceGetUtilizationRates(self, handle):
        gpu = self._gpu(handle)
        if not gpu.utilization_supported:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return _Utilization(gpu.utilization)

    def nvmlDeviceGetEnforcedPowerLimit(self, handle):
        gpu = self._gpu(handle)
        if not gpu.power_limit_supported:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return gpu.power_limit

