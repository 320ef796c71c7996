"""The system monitor: one background thread that journals CPU, RAM, load and GPU samples
and the experiment's keep-alive signals.

Like the official SDK (``comet-wire.md`` section 7) the first sample is taken at start, then
one every ``interval`` seconds (default 30 s); a probe that fails ``MAX_FAILURES`` times in a
row is disabled and reported once. Unlike the SDK, samples go through the dedicated endpoints
(``cpu_metrics``, ``ram_metrics``, ``load_metrics``, ``gpu_metrics``), each carrying the
experiment's current step and epoch: the step/epoch of the last ``log_metric`` that gave one,
looked up lazily when a sample is taken (the newest calls still queued in memory first, then
the journal), so ``log_metric`` itself does no extra work.

Never breaks the host: every failure is caught and counted; the thread is a named daemon,
stopped promptly by :meth:`SystemMonitor.stop` (called by ``Experiment.end()``), and in a
forked child either restarted on the parent's schedule or left stopped (``restart_in_child``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from typing import Any, Callable, Final

from comet_journal.recorder import child_exit
# Imported for its fork hook's place: a child's writers must empty the queue they inherit
# before this module's threads restart there and journal (os.register_at_fork runs
# after_in_child hooks in registration order; the first import registers first).
from comet_journal.recorder import writer as _writer_first  # noqa: F401
from comet_journal.recorder import gpu as gpu_module
from comet_journal.recorder.reporting import report_problem

logger = logging.getLogger(__name__)

DEFAULT_INTERVAL_S: Final = 30.0  # like the official SDK's comet.system_*_interval
DEFAULT_KEEP_ALIVE_INTERVAL_S: Final = 60.0
MIN_INTERVAL_S: Final = 1.0  # the public minimum for both intervals
MAX_FAILURES: Final = 10  # consecutive failures before a probe is disabled (as the SDK)
STOP_TIMEOUT_S: Final = 2.0
FIRST_CPU_WINDOW_S: Final = 0.1  # psutil needs two readings for a meaningful first CPU sample
PEEK_QUEUED_CALLS: Final = 64  # newest queued calls looked at for the current step/epoch
SCAN_JOURNAL_ROWS: Final = 20_000  # newest journal rows looked at, at most, per sample

# Tests lower this to run the monitor fast; the public minimum stays MIN_INTERVAL_S.
min_interval_s: float = MIN_INTERVAL_S

_MONITORS: "weakref.WeakSet[SystemMonitor]" = weakref.WeakSet()
_said_no_gpu = False


class _Probe:
    """One thing sampled periodically; disabled after MAX_FAILURES consecutive failures."""

    __slots__ = ("name", "run", "successes", "failures", "total_failures", "disabled")

    def __init__(self, name: str, run: Callable[[], None]):
        self.name = name
        self.run = run
        self.successes = 0
        self.failures = 0
        self.total_failures = 0
        self.disabled = False


class SystemMonitor:
    """Samples the system for one experiment from a daemon thread ``recorder.monitor``.

    :param experiment: the :class:`comet_journal.recorder.Experiment` (held weakly).
    :param interval: seconds between system samples, or None for no samples.
    :param keep_alive_interval: seconds between keep-alive rows, or None for none.
    :param cpu: sample CPU (per core), RAM and load average.
    :param gpu: sample the visible GPUs through NVML, and journal their static information.
    :param nvml: an NVML module to use instead of ``pynvml`` (tests).
    :param restart_in_child: in a forked child, restart the thread on the parent's schedule.
    """

    def __init__(self, experiment: Any, *, interval: float | None = DEFAULT_INTERVAL_S,
                 keep_alive_interval: float | None = DEFAULT_KEEP_ALIVE_INTERVAL_S,
                 cpu: bool = True, gpu: bool = True, nvml: Any = None,
                 restart_in_child: bool = True):
        self._experiment = weakref.ref(experiment)
        self.interval = interval
        self.keep_alive_interval = keep_alive_interval
        self._want_cpu = cpu and interval is not None
        self._want_gpu = gpu and interval is not None
        self._nvml = nvml
        self.restart_in_child = restart_in_child
        self._gpu: gpu_module.GpuReader | None = None
        self._probes: list[_Probe] = []
        self._keep_alive_probe = _Probe("keep-alive", self._keep_alive)
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._pid = os.getpid()
        self._next_sample = 0.0
        self._next_keep_alive = 0.0
        self._position = _PositionTracker(experiment)
        self._position_now: tuple[int | None, int | None] = (None, None)
        # counters (read by stats() and the benchmark)
        self.samples = 0
        self.cpu_time_s = 0.0
        _MONITORS.add(self)

    @property
    def active(self) -> bool:
        return self.interval is not None or self.keep_alive_interval is not None

    def start(self) -> None:
        if not self.active or self._thread is not None or self._stopped:
            return
        now = time.monotonic()
        self._next_sample = now
        self._next_keep_alive = now + (self.keep_alive_interval or 0)
        self._start_thread(resumed=False)

    def _start_thread(self, resumed: bool) -> None:
        self._thread = threading.Thread(target=self._run, args=(resumed,),
                                        name="recorder.monitor", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Stop the thread (promptly: it waits on an event). Idempotent."""
        self._stopped = True
        self._stop_event.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread() \
                and thread.is_alive():
            thread.join(timeout)
            if thread.is_alive():
                logger.warning("comet-journal: the system monitor did not stop within %.1f s",
                               timeout)

    def stats(self) -> dict:
        """Counters: rounds of samples, rows journaled and failures per probe, the disabled
        probes, and the CPU time the thread spent working (``time.thread_time``)."""
        probes = self._probes + [self._keep_alive_probe]
        return {"samples": self.samples, "cpu_time_s": self.cpu_time_s,
                "journaled": {p.name: p.successes for p in probes},
                "failures": {p.name: p.total_failures for p in probes},
                "disabled": [p.name for p in probes if p.disabled]}

    # --- the thread -------------------------------------------------------------------------

    def _run(self, resumed: bool) -> None:
        child_exit.leave_termination_to_main_thread()
        try:
            self._setup(resumed)
            while not self._stopped:
                now = time.monotonic()
                due = []
                if self.interval is not None:
                    due.append(self._next_sample)
                if self.keep_alive_interval is not None:
                    due.append(self._next_keep_alive)
                if self._stop_event.wait(max(0.0, min(due) - now)):
                    break
                started = time.thread_time()
                now = time.monotonic()
                if self.interval is not None and now >= self._next_sample:
                    self._sample()
                    # Stay on the grid; after a long stall (suspend), skip the missed samples.
                    self._next_sample += self.interval
                    if self._next_sample <= now:
                        self._next_sample = now + self.interval
                if self.keep_alive_interval is not None and now >= self._next_keep_alive:
                    self._call(self._keep_alive_probe)
                    self._next_keep_alive += self.keep_alive_interval
                    if self._next_keep_alive <= now:
                        self._next_keep_alive = now + self.keep_alive_interval
                self.cpu_time_s += time.thread_time() - started
        except Exception as exc:  # a bug here must not go unnoticed, nor reach the host
            report_problem(f"the system monitor stopped: {type(exc).__name__}: {exc}")
        finally:
            if self._gpu is not None and self._pid == os.getpid():
                self._gpu.close()
            self._gpu = None

    def _setup(self, resumed: bool) -> None:
        started = time.thread_time()
        self._probes = []
        if self._want_cpu:
            import psutil

            try:
                psutil.cpu_percent(interval=None, percpu=True)  # starts psutil's CPU window
            except Exception:  # the cpu probe will fail (and be counted) on its own
                pass
            self._probes += [_Probe("cpu", self._sample_cpu), _Probe("ram", self._sample_ram),
                             _Probe("load", self._sample_load)]
        if self._want_gpu:
            self._open_gpu(journal_static=not resumed)
        self.cpu_time_s += time.thread_time() - started
        if not resumed and self._want_cpu and self._next_sample <= time.monotonic():
            self._stop_event.wait(FIRST_CPU_WINDOW_S)

    def _open_gpu(self, journal_static: bool) -> None:
        global _said_no_gpu
        reader, why_not = gpu_module.open_gpus(self._nvml)
        if reader is None:
            if not _said_no_gpu:  # once per process: a CPU-only machine is not an error
                _said_no_gpu = True
                logger.info("comet-journal: no GPU monitoring: %s", why_not)
            return
        self._gpu = reader
        if journal_static:
            probe = _Probe("gpu static info", self._journal_gpu_static)
            self._call(probe)
        self._probes.append(_Probe("gpu", self._sample_gpu))

    def _sample(self) -> None:
        self._position_now = self._position.current()
        for probe in self._probes:
            if not self._stopped:
                self._call(probe)
        self.samples += 1

    def _call(self, probe: _Probe) -> None:
        if probe.disabled or self._stopped:
            return
        try:
            probe.run()
        except _Gone:
            self._stopped = True
        except Exception as exc:
            probe.failures += 1
            probe.total_failures += 1
            logger.debug("comet-journal: %s sampling failed", probe.name, exc_info=True)
            if probe.failures >= MAX_FAILURES:
                probe.disabled = True
                report_problem(f"{probe.name} sampling failed {probe.failures} times in a row "
                        f"({type(exc).__name__}: {exc}); it is disabled for this run")
        else:
            probe.failures = 0
            probe.successes += 1

    def _exp(self):
        exp = self._experiment()
        if exp is None or exp.ended:
            self._stopped = True
            raise _Gone()
        return exp

    # --- probes -----------------------------------------------------------------------

    def _sample_cpu(self) -> None:
        import psutil

        values = [min(100.0, max(0.0, float(v)))
                  for v in psutil.cpu_percent(interval=None, percpu=True)]
        step, epoch = self._position_now
        self._exp().log_cpu_metrics(values, step=step, epoch=epoch, timestamp=time.time())

    def _sample_ram(self) -> None:
        import psutil

        memory = psutil.virtual_memory()
        total = int(memory.total)
        used = max(0, min(total, total - int(memory.available)))  # the SDK's "used"
        step, epoch = self._position_now
        self._exp().log_ram_metrics(total, used, step=step, epoch=epoch, timestamp=time.time())

    def _sample_load(self) -> None:
        import psutil

        load = float(psutil.getloadavg()[0])
        step, epoch = self._position_now
        self._exp().log_load_metrics(max(0.0, load), step=step, epoch=epoch,
                                     timestamp=time.time())

    def _sample_gpu(self) -> None:
        gpus = self._gpu.sample() if self._gpu is not None else []
        if gpus:
            step, epoch = self._position_now
            self._exp().log_gpu_metrics(gpus, step=step, epoch=epoch, timestamp=time.time())

    def _journal_gpu_static(self) -> None:
        info = self._gpu.static_info() if self._gpu is not None else []
        if info:
            self._exp().log_system_details(gpuStaticInfoList=info)

    def _keep_alive(self) -> None:
        self._exp().keep_alive()

    # --- fork -------------------------------------------------------------------------------

    def _after_fork_in_child(self) -> None:
        self._pid = os.getpid()
        self._stop_event = threading.Event()
        self._gpu = None  # the parent's NVML handles: never used (nor closed) here
        running = self._thread is not None and not self._stopped
        self._thread = None
        if not running:
            return
        if self.restart_in_child:
            self._position = _PositionTracker(self._experiment())
            self._start_thread(resumed=True)
        else:
            self._stopped = True


class _PositionTracker:
    """The experiment's current step and epoch, found lazily (see the module docstring)."""

    def __init__(self, experiment: Any):
        self._experiment = weakref.ref(experiment) if experiment is not None else lambda: None
        self._step: int | None = None
        self._epoch: int | None = None
        self._scanned_seq = 0

    def current(self) -> tuple[int | None, int | None]:
        exp = self._experiment()
        if exp is None:
            return self._step, self._epoch
        try:
            step, epoch = self._from_queue(exp)
            if step is None or epoch is None:
                db_step, db_epoch = self._from_journal(exp)
                step = step if step is not None else db_step
                epoch = epoch if epoch is not None else db_epoch
        except Exception:  # a best-effort annotation: never fail a sample for it
            logger.debug("comet-journal: could not find the current step", exc_info=True)
            return self._step, self._epoch
        if step is not None:
            self._step = step
        if epoch is not None:
            self._epoch = epoch
        return self._step, self._epoch

    @staticmethod
    def _from_queue(exp: Any) -> tuple[int | None, int | None]:
        """The newest step/epoch among the calls still queued in memory (newest first).

        Queued ``log_metric`` items are ``(endpoint, experiment id, time, payload)`` where the
        payload is the hot path's tuple ``(name, value, step, epoch, context)`` or a dict.
        The writer thread pops from the left meanwhile: an index gone is just the end.
        """
        queue, exp_id = exp._queue, exp._id
        step = epoch = None
        try:
            n = min(len(queue), PEEK_QUEUED_CALLS)
            for k in range(1, n + 1):
                item = queue[-k]
                if item.__class__ is not tuple or item[0] != "log_metric" or item[1] != exp_id:
                    continue
                payload = item[3]
                if payload.__class__ is tuple and len(payload) == 5:
                    s, e = payload[2], payload[3]
                elif isinstance(payload, dict):
                    s, e = payload.get("step"), payload.get("epoch")
                else:
                    continue
                if step is None and isinstance(s, int):
                    step = s
                if epoch is None and isinstance(e, int):
                    epoch = e
                if step is not None and epoch is not None:
                    break
        except (IndexError, TypeError, AttributeError):
            pass
        return step, epoch

    def _from_journal(self, exp: Any) -> tuple[int | None, int | None]:
        """The newest step/epoch journaled since the last look (bounded scan)."""
        from comet_journal.schema.journal import sqlite_connect

        conn = sqlite_connect(exp.path, readonly=True, timeout=1.0)
        try:
            top = conn.execute("SELECT max(seq) FROM calls").fetchone()[0] or 0
            low = max(self._scanned_seq, top - SCAN_JOURNAL_ROWS)
            found = []
            for field in ("step", "epoch"):
                row = conn.execute(
                    "SELECT json_extract(payload, ?) FROM calls WHERE seq > ? AND seq <= ? "
                    "AND experiment_id = ? AND endpoint = 'log_metric' "
                    "AND json_extract(payload, ?) IS NOT NULL ORDER BY seq DESC LIMIT 1",
                    (f"$.{field}", low, top, exp._id, f"$.{field}")).fetchone()
                found.append(row[0] if row and isinstance(row[0], int) else None)
            self._scanned_seq = top
            return found[0], found[1]
        finally:
            conn.close()


class _Gone(Exception):
    """The experiment ended or was garbage-collected: the monitor stops."""




def _after_fork_in_child() -> None:
    for monitor in list(_MONITORS):
        try:
            monitor._after_fork_in_child()
        except Exception:
            pass


os.register_at_fork(after_in_child=_after_fork_in_child)
