"""``Experiment``: what training code calls. Names, arguments and results follow
``comet_ml.Experiment`` 3.58.8.

Every accepted call becomes one immutable row of the journal. Arguments are checked and
converted here, at the call site, as the SDK converts them; a call that cannot be journaled is
refused with a warning and counted (``strict=True`` raises instead), and journals nothing.
Everything after that (writing to disk) happens in the background and never raises into the
training loop.

Example::

    from comet_journal.recorder import Experiment
    with Experiment(project_name="mnist", workspace="me") as exp:
        exp.log_parameters({"lr": 0.01, "optimizer": {"name": "adam"}})
        for step in range(1000):
            exp.log_metric("loss", 1.0 / (step + 1), step=step)
"""


from __future__ import annotations

import atexit
import contextlib
import logging
import os
import socket
import time
import uuid
from typing import Any

from comet_journal.recorder import auto_logging, compat, registry, sealing
from comet_journal.recorder import validation as check
from comet_journal.recorder.bundles import BundlesMixin
from comet_journal.recorder.charts import ChartsMixin
from comet_journal.recorder.encoding import storable_text
from comet_journal.recorder.environment import caller_file
from comet_journal.recorder.files import FilesMixin
from comet_journal.recorder.lifecycle import LifecycleMixin, register_atexit
from comet_journal.recorder.media import MediaMixin
from comet_journal.recorder.null_writer import EndedQueue, NullWriter
from comet_journal.recorder.params import ParamsMixin
from comet_journal.recorder.remote import RemoteMixin
from comet_journal.recorder.reporting import quiet_from_environment, say_how_to_upload
from comet_journal.recorder.run_info import RunInfoMixin
from comet_journal.recorder.pickling import NotPicklable
from comet_journal.recorder.samples import SamplesMixin
from comet_journal.recorder.secrets import SecretFilter, configured_api_keys
from comet_journal.recorder.tolerance import Refusals, strict_from_environment, tolerant, \
    tolerant_as
from comet_journal.recorder.writer import DEFAULT_FLUSH_INTERVAL_S, DEFAULT_MAX_QUEUE, encode_payload
from comet_journal.schema import writers
from comet_journal.schema.catalogue import ENDPOINTS, validate

logger = logging.getLogger(__name__)

_time = time.time

# comet_ml.Experiment options that have no meaning for an offline journal; accepted so that
# existing code runs unchanged.
_IGNORED_SDK_OPTIONS = frozenset({
    "log_graph", "auto_param_logging", "auto_metric_logging", "parse_args",
    "display_summary", "display_summary_level", "optimizer_data", "auto_weight_logging",
    "auto_log_co2", "auto_metric_step_rate", "auto_histogram_tensorboard_logging",
    "auto_histogram_epoch_rate", "auto_histogram_weight_logging",
    "auto_histogram_gradient_logging", "auto_histogram_activation_logging",
    "log_env_network", "log_env_disk", "distributed_node_identifier",
})


class Experiment(RunInfoMixin, ParamsMixin, LifecycleMixin, SamplesMixin, FilesMixin,
                 MediaMixin, ChartsMixin, BundlesMixin, RemoteMixin, NotPicklable):
    """An experiment recorded into a journal file. Arguments in the SDK's order.

    :param api_key: accepted for compatibility and **never stored**: the uploader asks for it.
        This key, ``$COMET_API_KEY`` and the config file's are masked (``***``) wherever
        they appear in journaled text.
    :param project_name: Comet project (default ``$COMET_PROJECT_NAME``).
    :param workspace: Comet workspace (default ``$COMET_WORKSPACE``).
    :param journal: the journal file (created if missing); a directory means
        ``<dir>/<experiment key>.db``. Default: ``offline_directory``, then
        ``$COMET_JOURNAL``, then ``$COMET_OFFLINE_DIRECTORY`` (directories), then one file per
        experiment in ``./.comet-journal/``.
    :param offline_directory: a directory for the journal (``<dir>/<experiment key>.db``).
    :param experiment_name: the experiment's display name (also ``set_name``).
    :param experiment_key: continue an experiment (of this journal, or of an earlier job) or
        choose the key of a new one (32-50 letters and digits); default: a fresh key.
    :param disabled: True: every call is checked, nothing is journaled (no file is created).
    :param strict: True raises on a call that cannot be journaled; False (the default,
        unless ``COMET_JOURNAL_STRICT=1``) refuses it with a warning and counts it.
    :param flush_interval: seconds; a call is on disk within about this long (default 0.2).
    :param durability: ``"window"`` (default) or ``"call"``: every call is durable on return.
    :param max_queue: calls held in memory before the caller is slowed down.
    :param max_journal_bytes: stop growing the journal past this size (lost calls reported).
    :param quiet: end() prints no how-to-upload line (also ``COMET_JOURNAL_QUIET=1``).
    :param segments: seal the run into segments beside the journal for readers on other
        hosts; default on in a directory (``journal="/dir/"``), off for a single file
        (``$COMET_JOURNAL_SEGMENTS=0``/``1`` changes the default).

    Recorded automatically, as the official SDK does (see
    :mod:`comet_journal.recorder.auto_logging`; ``COMET_JOURNAL_AUTO_LOG=0`` turns all of it
    off): ``auto_output_logging`` (``"simple"``, ``"fd"``/``"native"``, None/False; also
    ``capture="fd"``), ``log_env_details``, ``log_env_host``, ``log_env_gpu``,
    ``log_env_cpu``, ``log_env_variables`` (False, True or a list of names; secret-looking
    ones redacted), ``log_git_metadata``, ``log_git_patch``, ``log_code``,
    ``system_monitor_interval`` (seconds, default 30, or None), ``keep_alive_interval``
    (seconds, default 60, or None) and ``restart_in_child`` (in a forked child, restart the
    sampler and keep journaling Python-level output; default True).
    """

    def __init__(self, api_key: str | None = None, project_name: str | None = None,
                 workspace: str | None = None, *, journal: str | os.PathLike | None = None,
                 offline_directory: str | os.PathLike | None = None,
                 experiment_name: str | None = None, experiment_key: str | None = None,
                 disabled: bool = False, strict: bool | None = None,
                 flush_interval: float = DEFAULT_FLUSH_INTERVAL_S, durability: str = "window",
                 max_queue: int = DEFAULT_MAX_QUEUE, max_journal_bytes: int | None = None,
                 auto_output_logging: Any = "simple", capture: Any = None,
                 log_env_details: Any = True, log_env_host: Any = True,
                 log_env_gpu: Any = True, log_env_cpu: Any = True,
                 log_env_variables: Any = False, log_git_metadata: Any = True,
                 log_git_patch: Any = True, log_code: Any = True,
                 system_monitor_interval: Any = 30.0, keep_alive_interval: Any = 60.0,
                 restart_in_child: Any = True, quiet: bool | None = None,
                 segments: bool | None = None, **sdk_options: Any):
        # Only fingerprints are kept, to mask the key in everything journaled as text.
        self._secrets = secrets = SecretFilter(configured_api_keys(api_key))
        del api_key  # never kept: not in the journal, not in memory, not in logs
        unknown = set(sdk_options) - _IGNORED_SDK_OPTIONS
        if unknown:
            raise TypeError(f"Experiment(): unexpected argument(s) {', '.join(sorted(unknown))}")
        self._refusals = Refusals(strict_from_environment(strict))
        self._quiet = quiet_from_environment(quiet)
        # --- automatic capture: options checked here, started at the end -----------------
        auto_options = auto_logging.check_options(
            auto_output_logging=auto_output_logging, capture=capture,
            log_env_details=log_env_details, log_env_host=log_env_host,
            log_env_gpu=log_env_gpu, log_env_cpu=log_env_cpu,
            log_env_variables=log_env_variables, log_git_metadata=log_git_metadata,
            log_git_patch=log_git_patch, log_code=log_code,
            system_monitor_interval=system_monitor_interval,
            keep_alive_interval=keep_alive_interval, restart_in_child=restart_in_child)
        self._auto: auto_logging.AutoLogging | None = None
        self._project_name = check.optional_str(
            "Experiment", "project_name", project_name or os.environ.get("COMET_PROJECT_NAME"))
        self._workspace = check.optional_str(
            "Experiment", "workspace", workspace or os.environ.get("COMET_WORKSPACE"))
        self._name = check.optional_str("Experiment", "experiment_name", experiment_name)
        check.boolean("Experiment", "disabled", disabled)
        check.writer_options(durability, flush_interval, max_queue)
        max_journal_bytes = check.positive_int("Experiment", "max_journal_bytes",
                                               max_journal_bytes, optional=True)
        check.journal_path("Experiment", journal)
        check.journal_path("Experiment", offline_directory)
        self.key = check.experiment_key(experiment_key) if experiment_key else uuid.uuid4().hex
        self.context: str | None = None
        self._step: int | None = None
        self._epoch: int | None = None
        self._tags: list[str] = []
        self._max_queue = max_queue
        self._calls_after_end = 0
        self._ended = False
        self._output_offset = 0
        self._start_ms = None
        self.disabled = disabled
        if disabled:
            self.path, self.created = None, True
            self._writer = NullWriter(max_queue)
            self._queue = self._writer.queue
            self._id = 0
            return
        path, directory_run = compat.journal_choice(journal, offline_directory, self.key)
        self._seals = sealing.segments_enabled(segments, directory_run)
        self._open_journal(path, flush_interval, max_queue, durability, max_journal_bytes)
        self._owner_pid = os.getpid()
        self._atexit = register_atexit(self)
        # --- automatic capture (recorder.auto_logging): never raises from here -------------
        self._auto = auto_logging.AutoLogging(self, auto_options, caller_file(), secrets)
        self._auto.start()

    # --- lifecycle -------------------------------------------------------------------------

    def _open_journal(self, path: str, flush_interval, max_queue, durability,
                      max_journal_bytes) -> None:
        """Acquire the journal's writer and register the experiment in it (creating it, or
        continuing the one the journal holds under this key)."""
        self.path = path
        self._writer = registry.acquire(
            path, flush_interval=flush_interval, max_queue=max_queue,
            synchronous="FULL" if durability == "call" else "NORMAL",
            max_journal_bytes=max_journal_bytes)
        self._queue = self._writer.queue
        self._sealer = sealing.acquire(path, getattr(self, "_seals", None))  # other hosts' copy
        self._writer_key = writers.writer_key(self.key)
        self._id, created = self._register()
        self.created = created  # False: an experiment this journal already held, continued
        if durability == "call":
            self._enqueue = self._enqueue_durable  # type: ignore[method-assign]
            self.log_metric = self._log_metric_durable  # type: ignore[method-assign]
        if created:
            payload = {"projectName": self._project_name, "workspaceName": self._workspace,
                       "experimentName": self._name}
            self._enqueue("experiment_create", {k: v for k, v in payload.items() if v})
            self._start_ms = self._now_ms()
            self._enqueue("experiment_start_end_time", {"startTimeMillis": self._start_ms})

    def _register(self) -> tuple[int, bool]:
        conn = self._writer.connection()
        try:
            conn.execute("BEGIN IMMEDIATE")
            row = conn.execute("SELECT id FROM experiments WHERE key=?", (self.key,)).fetchone()
            if row is not None:
                writers.register(conn, self._writer_key)
                conn.execute("COMMIT")
                return row[0], False
            cur = conn.execute(
                "INSERT INTO experiments (key, workspace, project, name, created_ms, host, pid) "
                "VALUES (?,?,?,?,?,?,?)",
                (self.key, *(storable_text(v) for v in (self._workspace, self._project_name,
                                                        self._name)),  # lone surrogates
                 self._now_ms(), socket.gethostname(), os.getpid()))
            writers.register(conn, self._writer_key)
            conn.execute("COMMIT")
            return cur.lastrowid, True
        finally:
            conn.close()

    @staticmethod
    def _now_ms() -> int:
        return int(_time() * 1000)

    def __enter__(self) -> "Experiment":
        return self

    def __exit__(self, *exc) -> None:
        self.end()

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Make every call made so far durable now. True when it all reached the disk."""
        return self._writer.flush(check.timeout("flush", timeout))

    def end(self, timeout: float = 30.0) -> dict:
        """Record the end, flush everything and release the journal. Idempotent.

        Returns the writer's counters: ``journaled``, ``lost`` (calls that could not be
        journaled), ``errors``, ``last_error``, and ``refused`` (calls refused for their
        arguments); a non-zero ``lost`` is also reported on stderr.
        """
        timeout = check.timeout("end", timeout)  # before anything is journaled or stopped
        if self._ended:
            return self._summary(self._writer.stats.as_dict())
        self._before_end()
        if self.disabled:
            self._ended = True
            return self._summary(self._writer.stats.as_dict())
        self._enqueue("experiment_start_end_time", {k: v for k, v in (
            ("startTimeMillis", self._start_ms), ("endTimeMillis", self._now_ms())) if v})
        self._ended = True
        self._queue = EndedQueue(self, logger)
        with contextlib.suppress(Exception):
            atexit.unregister(self._atexit)
        stats = registry.release(self._writer, timeout)
        if not stats["lost"]:  # its end row is durable: this writer has ended
            writers.mark_ended(self.path, self._writer_key)
        else:
            logger.error(f"comet-journal: {stats['lost']} calls of experiment {self.key} could "
                         f"not be journaled ({stats['last_error'] or 'see earlier messages'})")
        sealing.release(getattr(self, "_sealer", None),
                        writer_key=None if stats["lost"] else self._writer_key)
        say_how_to_upload(self.key, self.path, self._quiet)
        return self._summary(stats)

    def _summary(self, stats: dict) -> dict:
        stats["refused"] = self._refusals.count
        return stats

    def _before_end(self) -> None:
        """Hook for subclasses and mixins that own threads (monitor, output capture)."""
        auto = getattr(self, "_auto", None)  # absent when __init__ failed before it
        if auto is not None:
            auto.stop()

    @property
    def ended(self) -> bool:
        return self._ended

    # --- the journal -------------------------------------------------------------------

    def _enqueue(self, endpoint: str, payload: dict, experiment: bool = True) -> None:
        queue = self._queue
        queue.append((endpoint, self._id if experiment else None, _time(), payload))
        if len(queue) > self._max_queue:
            self._writer.wait_for_room()

    def _enqueue_durable(self, endpoint: str, payload: dict, experiment: bool = True) -> None:
        Experiment._enqueue(self, endpoint, payload, experiment)
        if not self._ended:
            self._writer.flush()

    def _record(self, endpoint: str, payload: dict, experiment: bool = True) -> None:
        """Check a payload against the catalogue, then journal it."""
        payload = self._secrets.mask_value({k: v for k, v in payload.items() if v is not None})
        validate(ENDPOINTS[endpoint], payload, journal_form=True)
        encode_payload(payload)  # refuse what cannot be journaled now, not in the background
        self._enqueue(endpoint, payload, experiment)

    # --- metrics (the hot path) -----------------------------------------------------------

    def log_metric(self, name: Any, value: Any, step: Any = None, epoch: Any = None,
                   include_context: bool = True, timestamp: Any = None) -> None:
        """Log one point of a metric's time series.

        ``step`` and ``epoch`` default to the current ones (``set_step``, or the last step
        given to ``log_metric``), as in the SDK.

        :param timestamp: seconds since the epoch (the SDK's convention); default: now.
        """
        # Fast path: plain str name, int/float value, int step; everything else is checked
        # (and normalised) by the slow path. Keep this body minimal: it runs ~1M times/s.
        vcls = value.__class__
        if (name.__class__ is not str or not name or (vcls is not float and vcls is not int)
                or epoch is not None or timestamp is not None or include_context is not True
                or (step is not None and (step.__class__ is not int or step < 0))):
            return self._log_metric_checked(name, value, step, epoch, include_context, timestamp)
        if step is None:
            step = self._step
        else:
            self._step = step
        queue = self._queue
        queue.append(("log_metric", self._id, _time(),
                      (name, value, step, self._epoch, self.context)))
        if len(queue) > self._max_queue:
            self._writer.wait_for_room()

    def _log_metric_durable(self, *args, **kwargs) -> None:
        Experiment.log_metric(self, *args, **kwargs)
        if not self._ended:
            self._writer.flush()

    @tolerant_as("log_metric")
    def _log_metric_checked(self, name, value, step, epoch, include_context, timestamp) -> None:
        method = "log_metric"
        check.name(method, "name", name)
        if self._refusals.strict:
            value = check.metric_value(method, value)
        else:
            value = compat.metric_value(value)
        check.boolean(method, "include_context", include_context)
        step = check.step(method, "step", step)
        epoch = check.step(method, "epoch", epoch)
        ts_ms = check.timestamp_seconds(method, timestamp)
        context = self.context if include_context else None
        if step is None:
            step = self._step
        else:
            self._step = step
        if epoch is None:
            epoch = self._epoch
        else:
            self._epoch = epoch
        if ts_ms is None:
            self._enqueue("log_metric", (name, value, step, epoch, context))
            return
        payload = {"metricName": name, "metricValue": value, "step": step, "epoch": epoch,
                   "context": context, "timestamp": ts_ms}
        self._enqueue("log_metric", {k: v for k, v in payload.items() if v is not None})

    @tolerant
    def log_metrics(self, dic: Any, prefix: str | None = None, step: Any = None,
                    epoch: Any = None, include_context: bool = True) -> None:
        """Log several metrics: ``prefix_name``; nested dicts become ``outer/inner``."""
        check.mapping("log_metrics", "dic", dic)
        check.optional_str("log_metrics", "prefix", prefix)
        items = list(compat.flatten(dic, prefix, compat.METRIC_PREFIX_SEP,
                                    compat.METRIC_NEST_SEP))
        check.step("log_metrics", "step", step)
        check.step("log_metrics", "epoch", epoch)
        check.boolean("log_metrics", "include_context", include_context)
        if self._refusals.strict:
            # Check everything before journaling anything: a refused call journals nothing.
            for name, value in items:
                check.name("log_metrics", "key", name)
                check.metric_value("log_metrics", value)
        # Tolerant: like the SDK, a bad value (None) skips that metric only.
        for name, value in items:
            self.log_metric(name, value, step=step, epoch=epoch, include_context=include_context)

    def __repr__(self) -> str:
        return f"<Experiment {self.key} journal={self.path!r}>"
