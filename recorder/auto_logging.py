"""What an ``Experiment`` records by itself: system samples and keep-alives
(:mod:`comet_journal.recorder.monitor`), standard output and error (:mod:`comet_journal.recorder.output_capture`), and
the environment (:mod:`comet_journal.recorder.environment`).

:func:`check_options` validates the ``Experiment(...)`` options at the call site (a wrong
option raises and journals nothing); :class:`AutoLogging` starts the parts at the end of
``Experiment.__init__`` and stops them in ``Experiment.end()``: the monitor first, then the
environment capture is waited for (bounded), and output capture last, so that whatever the
others print while stopping is still journaled.

Setting ``COMET_JOURNAL_AUTO_LOG=0`` (or ``false``/``off``/``no``) in the environment turns
every part off whatever the options say: for test suites and benchmarks that need a journal
holding only their own calls.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from typing import Any, Final, Iterable

from comet_journal.recorder import environment, monitor, output_capture
from comet_journal.recorder import validation as check
from comet_journal.recorder.reporting import report_problem

logger = logging.getLogger(__name__)

KILL_SWITCH_ENV: Final = "COMET_JOURNAL_AUTO_LOG"
ENVIRONMENT_WAIT_S: Final = 15.0  # end() waits this long, at most, for the environment
_OUTPUT_MODES: Final = {"simple": "simple", "default": "simple", "fd": "fd", "native": "fd"}


@dataclass(frozen=True)
class AutoOptions:
    output: str | None  # "simple", "fd" or None
    env_details: bool
    env_host: bool
    env_gpu: bool
    env_cpu: bool
    env_variables: bool | tuple[str, ...]
    git_metadata: bool
    git_patch: bool
    code: bool
    monitor_interval: float | None
    keep_alive_interval: float | None
    restart_in_child: bool


def auto_logging_disabled() -> bool:
    return os.environ.get(KILL_SWITCH_ENV, "").strip().lower() in ("0", "false", "off", "no")


def check_options(*, auto_output_logging: Any = "simple", capture: Any = None,
                  log_env_details: Any = True, log_env_host: Any = True,
                  log_env_gpu: Any = True, log_env_cpu: Any = True,
                  log_env_variables: Any = False, log_git_metadata: Any = True,
                  log_git_patch: Any = True, log_code: Any = True,
                  system_monitor_interval: Any = monitor.DEFAULT_INTERVAL_S,
                  keep_alive_interval: Any = monitor.DEFAULT_KEEP_ALIVE_INTERVAL_S,
                  restart_in_child: Any = True) -> AutoOptions:
    """Validate the automatic-capture options of ``Experiment``; raise TypeError/ValueError."""
    output = _output_mode("auto_output_logging", auto_output_logging)
    if capture is not None:
        capture_mode = _output_mode("capture", capture)
        if auto_output_logging != "simple" and capture_mode != output:
            raise check.value_error("Experiment", "capture",
                                    f"contradicts auto_output_logging={auto_output_logging!r}",
                                    capture, "give one of them")
        output = capture_mode
    flags = {name: _flag(name, value) for name, value in (
        ("log_env_details", log_env_details), ("log_env_host", log_env_host),
        ("log_env_gpu", log_env_gpu), ("log_env_cpu", log_env_cpu),
        ("log_git_metadata", log_git_metadata), ("log_git_patch", log_git_patch),
        ("log_code", log_code), ("restart_in_child", restart_in_child))}
    env_variables = _env_variables(log_env_variables)
    options = AutoOptions(
        output=output, env_details=flags["log_env_details"],
        # As the SDK: without environment details there is no host, CPU or GPU either.
        env_host=flags["log_env_host"] and flags["log_env_details"],
        env_gpu=flags["log_env_gpu"] and flags["log_env_details"],
        env_cpu=flags["log_env_cpu"] and flags["log_env_details"],
        env_variables=env_variables, git_metadata=flags["log_git_metadata"],
        git_patch=flags["log_git_patch"], code=flags["log_code"],
        monitor_interval=_interval("system_monitor_interval", system_monitor_interval),
        keep_alive_interval=_interval("keep_alive_interval", keep_alive_interval),
        restart_in_child=flags["restart_in_child"])
    if auto_logging_disabled():
        return AutoOptions(None, False, False, False, False, False, False, False, False, None,
                           None, options.restart_in_child)
    return options


def _output_mode(arg: str, value: Any) -> str | None:
    if value is None or value is False:
        return None
    if value is True:
        return "simple"
    if isinstance(value, str) and value.lower() in _OUTPUT_MODES:
        return _OUTPUT_MODES[value.lower()]
    raise check.value_error("Experiment", arg, 'must be "simple", "fd" (or "native"), None or '
                            "False", value)


def _flag(arg: str, value: Any) -> bool:
    return True if value is None else check.boolean("Experiment", arg, value)


def _env_variables(value: Any) -> bool | tuple[str, ...]:
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise check.type_error("Experiment", "log_env_variables",
                               "True, False or a list of variable names", value)
    return tuple(check.string_list("Experiment", "log_env_variables", list(value)))


def _interval(arg: str, value: Any) -> float | None:
    if value is None or value is False:
        return None
    minimum = monitor.min_interval_s
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value < minimum:
        raise check.value_error("Experiment", arg, f"must be a number of seconds >= "
                                f"{monitor.MIN_INTERVAL_S:g}, or None to turn it off", value)
    return float(value)


class AutoLogging:
    """The automatic parts of one experiment (see the module docstring)."""

    def __init__(self, experiment: Any, options: AutoOptions, code_file: str | None = None,
                 secrets: environment.SecretFilter | None = None):
        self.options = options
        self._secrets = secrets
        self._exp = experiment
        self._code_file = code_file if options.code else None
        self.monitor: monitor.SystemMonitor | None = None
        self.environment: environment.EnvironmentCapture | None = None
        self.capture = None
        self._stopped = False

    def start(self) -> None:
        """Start every enabled part; a part that cannot start is reported, never raised."""
        o = self.options
        if o.output is not None:
            self._guard("output capture", self._start_capture)
        env = environment.EnvironmentCapture(
            self._exp, details=o.env_details, host=o.env_host, env_variables=o.env_variables,
            git_metadata=o.git_metadata, git_patch=o.git_patch, code_file=self._code_file,
            secrets=self._secrets)
        if env.wanted:
            self.environment = env
            self._guard("environment capture", env.start)
        sampler = monitor.SystemMonitor(
            self._exp, interval=o.monitor_interval if (o.env_cpu or o.env_gpu) else None,
            keep_alive_interval=o.keep_alive_interval, cpu=o.env_cpu, gpu=o.env_gpu,
            restart_in_child=o.restart_in_child)
        if sampler.active:
            self.monitor = sampler
            self._guard("system monitor", sampler.start)

    def _start_capture(self) -> None:
        self.capture = output_capture.make_capture(self.options.output, self._exp,
                                                   self.options.restart_in_child)

    def stop(self) -> None:
        """Stop everything, in order; idempotent, never raises."""
        if self._stopped:
            return
        self._stopped = True
        if self.monitor is not None:
            self._guard("system monitor", self.monitor.stop)
        if self.environment is not None:
            self._guard("environment capture", lambda: self.environment.wait(ENVIRONMENT_WAIT_S))
        if self.capture is not None:
            self._guard("output capture", self.capture.stop)

    @staticmethod
    def _guard(what: str, run) -> None:
        try:
            run()
        except Exception as exc:
            report_problem(f"{what} failed: {type(exc).__name__}: {exc}")
