"""``Experiment``: what training code calls. Method names follow ``comet_ml.Experiment``.

Every accepted call becomes one immutable row of the journal. Arguments are checked here, at
the call site, and a refused call journals nothing; everything after that (writing to disk)
happens in the background and never raises into the training loop.

Example::

    from comet_journal.recorder import Experiment
    with Experiment(journal="run.db", project_name="mnist", workspace="me") as exp:
        exp.log_parameter("lr", 0.01)
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
import weakref
from typing import Any, Iterator

from comet_journal.recorder import auto_logging, registry
from comet_journal.recorder import validation as check
from comet_journal.recorder.environment import caller_file
from comet_journal.recorder.secrets import SecretFilter, configured_api_keys
from comet_journal.recorder.files import FilesMixin
from comet_journal.recorder.pickling import NotPicklable
from comet_journal.recorder.samples import SamplesMixin
from comet_journal.recorder.encoding import storable_text
from comet_journal.recorder.writer import DEFAULT_FLUSH_INTERVAL_S, DEFAULT_MAX_QUEUE, encode_payload
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
    "log_env_network", "log_env_disk", "offline_directory", "disabled",
})


class _EndedQueue:
    """Stands in for the writer queue once the experiment has ended: calls are refused with
    one warning (and counted) instead of an extra check on every hot-path call."""

    def __init__(self, experiment: "Experiment"):
        self._experiment = experiment

    def append(self, item) -> None:
        exp = self._experiment
        exp._calls_after_end += 1
        if exp._calls_after_end == 1:
            logger.warning("comet-journal: experiment %s has ended; later calls are ignored",
                           exp.key)

    def __len__(self) -> int:
        return 0


class Experiment(SamplesMixin, FilesMixin, NotPicklable):
    """An experiment recorded into a journal file.

    :param journal: the journal file (created if missing); a directory means
        ``<dir>/<experiment key>.db``. Default: ``$COMET_JOURNAL`` or ``./comet-journal.db``.
    :param project_name: Comet project (default ``$COMET_PROJECT_NAME``).
    :param workspace: Comet workspace (default ``$COMET_WORKSPACE``).
    :param experiment_name: the experiment's display name.
    :param experiment_key: continue an experiment of this journal (another rank or process)
        or choose the key of a new one (32-50 letters and digits); default: a fresh key.
    :param api_key: accepted for compatibility and **never stored**: the uploader asks for it.
        This key, ``$COMET_API_KEY`` and the config file's are masked (``***``) wherever
        they appear in journaled text.
    :param flush_interval: seconds; a call is on disk within about this long (default 0.2).
    :param durability: ``"window"`` (default) or ``"call"``: every call is durable on return.
    :param max_queue: calls held in memory before the caller is slowed down.
    :param max_journal_bytes: stop growing the journal past this size (calls are then
        counted as lost and reported).

    Recorded automatically, as the official SDK does (see :mod:`comet_journal.recorder.auto_logging`;
    ``COMET_JOURNAL_AUTO_LOG=0`` turns all of it off):

    :param auto_output_logging: ``"simple"`` (default: ``sys.stdout``/``sys.stderr``),
        ``"fd"`` (file descriptors 1 and 2: also C extensions and child processes; the SDK's
        ``"native"`` is accepted) or None/False (off). ``capture="fd"`` is the same.
    :param log_env_details: system details and installed packages (False also turns off
        host details and CPU/GPU sampling, as in the SDK).
    :param log_env_host: command, executable, hostname, IPs, OS, Python, pid, user.
    :param log_env_gpu: GPU static information and GPU samples (NVML: ``[gpu]`` extra).
    :param log_env_cpu: CPU (per core), RAM and load-average samples.
    :param log_env_variables: False (default), True or a list of names: environment
        variables, with secret-looking ones redacted.
    :param log_git_metadata: git user, root, branch, parent and origin.
    :param log_git_patch: the uncommitted changes, as a git patch.
    :param log_code: the source of the file that creates the experiment.
    :param system_monitor_interval: seconds between system samples (default 30, >= 1),
        or None for none.
    :param keep_alive_interval: seconds between keep-alive records (default 60, >= 1), or
        None for none.
    :param restart_in_child: in a forked child, restart the sampler (on the parent's
        schedule) and keep journaling Python-level output (default True); False leaves the
        child without them.
    """

    def __init__(self, journal: str | os.PathLike | None = None, project_name: str | None = None,
                 workspace: str | None = None, experiment_name: str | None = None,
                 experiment_key: str | None = None, api_key: str | None = None, *,
                 flush_interval: float = DEFAULT_FLUSH_INTERVAL_S, durability: str = "window",
                 max_queue: int = DEFAULT_MAX_QUEUE, max_journal_bytes: int | None = None,
                 auto_output_logging: Any = "simple", capture: Any = None,
                 log_env_details: Any = True, log_env_host: Any = True,
                 log_env_gpu: Any = True, log_env_cpu: Any = True,
                 log_env_variables: Any = False, log_git_metadata: Any = True,
                 log_git_patch: Any = True, log_code: Any = True,
                 system_monitor_interval: Any = 30.0, keep_alive_interval: Any = 60.0,
                 restart_in_child: Any = True,
                 **sdk_options: Any):
        # Only fingerprints are kept, to mask the key in everything journaled as text.
        self._secrets = secrets = SecretFilter(configured_api_keys(api_key))
        del api_key  # never kept: not in the journal, not in memory, not in logs
        unknown = set(sdk_options) - _IGNORED_SDK_OPTIONS
        if unknown:
            raise TypeError(f"Experiment(): unexpected argument(s) {', '.join(sorted(unknown))}")
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
        project_name = check.optional_str("Experiment", "project_name",
                                          project_name or os.environ.get("COMET_PROJECT_NAME"))
        workspace = check.optional_str("Experiment", "workspace",
                                       workspace or os.environ.get("COMET_WORKSPACE"))
        check.optional_str("Experiment", "experiment_name", experiment_name)
        if durability not in ("window", "call"):
            raise check.value_error("Experiment", "durability", 'must be "window" or "call"',
                                    durability)
        if not (isinstance(flush_interval, (int, float)) and 0 < flush_interval <= 60):
            raise check.value_error("Experiment", "flush_interval",
                                    "must be a number of seconds in (0, 60]", flush_interval)
        if isinstance(max_queue, bool) or not (isinstance(max_queue, int) and max_queue >= 1):
            raise check.value_error("Experiment", "max_queue", "must be a positive integer",
                                    max_queue)
        max_journal_bytes = check.positive_int("Experiment", "max_journal_bytes",
                                               max_journal_bytes, optional=True)
        check.journal_path("Experiment", journal)
        key = check.experiment_key(experiment_key) if experiment_key else uuid.uuid4().hex
        self.key = key
        self.path = _journal_path(journal, key)
        self._writer = registry.acquire(
            self.path, flush_interval=flush_interval, max_queue=max_queue,
            synchronous="FULL" if durability == "call" else "NORMAL",
            max_journal_bytes=max_journal_bytes)
        self._queue = self._writer.queue
        self._max_queue = max_queue
        self.context: str | None = None
        self._calls_after_end = 0
        self._ended = False
        self._output_offset = 0
        self._id, created = self._register(workspace, project_name, experiment_name)
        if durability == "call":
            self._enqueue = self._enqueue_durable  # type: ignore[method-assign]
            self.log_metric = self._log_metric_durable  # type: ignore[method-assign]
        if created:
            payload = {"projectName": project_name, "workspaceName": workspace,
                       "experimentName": experiment_name}
            self._enqueue("experiment_create", {k: v for k, v in payload.items() if v})
            self._start_ms = int(_time() * 1000)
            self._enqueue("experiment_start_end_time", {"startTimeMillis": self._start_ms})
        else:
            self._start_ms = None
        self._owner_pid = os.getpid()
        self._atexit = _register_atexit(self)
        # --- automatic capture (recorder.auto_logging): never raises from here -------------
        self._auto = auto_logging.AutoLogging(self, auto_options, caller_file(), secrets)
        self._auto.start()

    # --- lifecycle -------------------------------------------------------------------------

    def _register(self, workspace, project, name) -> tuple[int, bool]:
        conn = self._writer.connection()
        try:
            conn.execute("BEGIN IMMEDIATE")
            row = conn.execute("SELECT id FROM experiments WHERE key=?", (self.key,)).fetchone()
            if row is not None:
                conn.execute("COMMIT")
                return row[0], False
            names = [storable_text(v) for v in (workspace, project, name)]  # lone surrogates
            cur = conn.execute(
                "INSERT INTO experiments (key, workspace, project, name, created_ms, host, pid) "
                "VALUES (?,?,?,?,?,?,?)", (self.key, *names,
                                           int(_time() * 1000), socket.gethostname(), os.getpid()))
            conn.execute("COMMIT")
            return cur.lastrowid, True
        finally:
            conn.close()

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
        journaled), ``errors`` and ``last_error``; a non-zero ``lost`` is also reported on
        stderr.
        """
        timeout = check.timeout("end", timeout)  # before anything is journaled or stopped
        if self._ended:
            return self._writer.stats.as_dict()
        self._before_end()
        start = self._start_ms
        self._enqueue("experiment_start_end_time",
                      {k: v for k, v in (("startTimeMillis", start),
                                         ("endTimeMillis", int(_time() * 1000))) if v})
        self._ended = True
        self._queue = _EndedQueue(self)
        with contextlib.suppress(Exception):
            atexit.unregister(self._atexit)
        stats = registry.release(self._writer, timeout)
        if stats["lost"]:
            msg = (f"comet-journal: {stats['lost']} calls of experiment {self.key} could not be "
                   f"journaled ({stats['last_error'] or 'see earlier messages'})")
            logger.error(msg)
        return stats

    def _before_end(self) -> None:
        """Hook for subclasses and mixins that own threads (monitor, output capture)."""
        auto = getattr(self, "_auto", None)  # absent when __init__ failed before it
        if auto is not None:
            auto.stop()

    @property
    def ended(self) -> bool:
        return self._ended

    def get_key(self) -> str:
        return self.key

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

        :param timestamp: seconds since the epoch (the SDK's convention); default: now.
        """
        # Fast path: plain str name, int/float value, int step; everything else is checked
        # (and normalised) by the slow path. Keep this body minimal: it runs ~1M times/s.
        vcls = value.__class__
        if (name.__class__ is not str or not name or (vcls is not float and vcls is not int)
                or epoch is not None or timestamp is not None or include_context is not True
                or (step is not None and (step.__class__ is not int or step < 0))):
            return self._log_metric_checked(name, value, step, epoch, include_context, timestamp)
        queue = self._queue
        queue.append(("log_metric", self._id, _time(),
                      (name, value, step, None, self.context if include_context else None)))
        if len(queue) > self._max_queue:
            self._writer.wait_for_room()

    def _log_metric_durable(self, *args, **kwargs) -> None:
        Experiment.log_metric(self, *args, **kwargs)
        if not self._ended:
            self._writer.flush()

    def _log_metric_checked(self, name, value, step, epoch, include_context, timestamp) -> None:
        method = "log_metric"
        check.name(method, "name", name)
        value = check.metric_value(method, value)
        check.boolean(method, "include_context", include_context)
        step = check.step(method, "step", step)
        epoch = check.step(method, "epoch", epoch)
        ts_ms = check.timestamp_seconds(method, timestamp)
        context = self.context if include_context else None
        if ts_ms is None:
            self._enqueue("log_metric", (name, value, step, epoch, context))
            return
        payload = {"metricName": name, "metricValue": value, "step": step, "epoch": epoch,
                   "context": context, "timestamp": ts_ms}
        self._enqueue("log_metric", {k: v for k, v in payload.items() if v is not None})

    def log_metrics(self, dic: Any, prefix: str | None = None, step: Any = None,
                    epoch: Any = None, include_context: bool = True) -> None:
        """Log several metrics at once; nested dicts become ``outer.inner`` names."""
        check.mapping("log_metrics", "dic", dic)
        check.optional_str("log_metrics", "prefix", prefix)
        items = list(_flatten(dic, prefix, "."))
        # Check everything before journaling anything: a refused call journals nothing.
        for name, value in items:
            check.name("log_metrics", "key", name)
            check.metric_value("log_metrics", value)
        check.step("log_metrics", "step", step)
        check.step("log_metrics", "epoch", epoch)
        check.boolean("log_metrics", "include_context", include_context)
        for name, value in items:
            self.log_metric(name, value, step=step, epoch=epoch, include_context=include_context)

    def context_manager(self, context: str):
        """Prefix metrics logged inside with ``context`` (as ``comet_ml`` does)."""
        check.name("context_manager", "context", context)  # at the call, not at ``with``
        return self._context(context)

    @contextlib.contextmanager
    def _context(self, context: str) -> Iterator["Experiment"]:
        previous, self.context = self.context, context
        try:
            yield self
        finally:
            self.context = previous

    def train(self):
        return self.context_manager("train")

    def validate(self):
        return self.context_manager("validate")

    def test(self):
        return self.context_manager("test")

    # --- parameters, others, html, tags ------------------------------------------------

    def log_parameter(self, name: Any, value: Any, step: Any = None) -> None:
        method = "log_parameter"
        check.name(method, "name", name)
        self._record("log_parameter", {"parameterName": name,
                                       "parameterValue": check.param_value(method, value),
                                       "step": check.step(method, "step", step)})

    def log_parameters(self, parameters: Any, prefix: str | None = None, step: Any = None,
                       nested_support: bool = True) -> None:
        """Log several parameters; nested dicts become ``outer|inner`` names (as the SDK)."""
        method = "log_parameters"
        check.mapping(method, "parameters", parameters)
        check.optional_str(method, "prefix", prefix)
        check.boolean(method, "nested_support", nested_support)
        step = check.step(method, "step", step)
        items = list(_flatten(parameters, prefix, "|") if nested_support
                     else ((f"{prefix}{k}" if prefix else k, v) for k, v in parameters.items()))
        payloads = []
        for name, value in items:
            check.name(method, "key", name)
            payloads.append({"parameterName": name,
                             "parameterValue": check.param_value(method, value), "step": step})
        for payload in payloads:
            self._record("log_parameter", payload)

    def log_other(self, key: Any, value: Any) -> None:
        check.name("log_other", "key", key)
        self._record("log_other", {"key": key, "value": check.scalar("log_other", "value",
                                                                    value)})

    def log_others(self, dictionary: Any) -> None:
        check.mapping("log_others", "dictionary", dictionary)
        items = [(check.name("log_others", "key", k), check.scalar("log_others", "value", v))
                 for k, v in dictionary.items()]
        for key, value in items:
            self._record("log_other", {"key": key, "value": value})

    def log_html(self, html: Any, clear: bool = False) -> None:
        """Append to the experiment's HTML, or replace it with ``clear=True``."""
        if not isinstance(html, str):
            raise check.type_error("log_html", "html", "a string", html)
        self._record("log_html", {"html": html,
                                  "override": check.boolean("log_html", "clear", clear)})

    def add_tag(self, tag: Any) -> None:
        self.add_tags([check.name("add_tag", "tag", tag)])

    def add_tags(self, tags: Any) -> None:
        tags = check.string_list("add_tags", "tags", tags)
        if tags:
            self._record("add_tags", {"addedTags": tags})

    # --- output, start/end time, keep-alive, the experiment's life ---------------------------

    def log_output(self, output: Any, stderr: bool = False, context: str | None = None,
                   timestamp: Any = None) -> None:
        """Journal one line (or chunk) of standard output or standard error."""
        if not isinstance(output, str):
            raise check.type_error("log_output", "output", "a string", output)
        check.boolean("log_output", "stderr", stderr)
        check.optional_str("log_output", "context", context)
        ts = check.timestamp_seconds("log_output", timestamp) or int(_time() * 1000)
        offset = self._output_offset
        self._output_offset += 1
        self._record("log_output", {"context": context, "outputLines": [
            {"output": output, "stderr": stderr, "localTimestamp": ts, "offset": offset}]})

    def set_start_time(self, start_ms: Any) -> None:
        self._record("experiment_start_end_time", {
            "startTimeMillis": _required_millis("set_start_time", "start_ms", start_ms)})

    def set_end_time(self, end_ms: Any) -> None:
        self._record("experiment_start_end_time", {
            "endTimeMillis": _required_millis("set_end_time", "end_ms", end_ms)})

    def keep_alive(self) -> None:
        """Journal a keep-alive signal (replayed as ``set-status``)."""
        self._record("experiment_keepalive", {})

    def stop(self) -> None:
        """Journal a stop request for the experiment (replayed after everything before it)."""
        self._record("experiment_stop", {})

    def archive(self) -> None:
        self._record("experiment_archive", {})

    def delete(self) -> None:
        self._record("experiment_delete", {})

    def restore(self) -> None:
        self._record("experiment_restore", {})

    def create_symlink(self, project_name: Any) -> None:
        """Link this experiment into another project (``write/project/symlink``)."""
        self._record("project_symlink",
                     {"projectName": check.name("create_symlink", "project_name", project_name)})

    def log_git_metadata(self, branch: Any, origin: Any, parent: Any, root: Any,
                         user: Any) -> None:
        values = {"branch": branch, "origin": origin, "parent": parent, "root": root,
                  "user": user}
        for arg, value in values.items():
            if not isinstance(value, str):
                raise check.type_error("log_git_metadata", arg, "a string", value)
        self._record("git_metadata", values)

    def log_system_details(self, **details: Any) -> None:
        """Journal system details; keyword names are the endpoint's wire fields
        (``hostname``, ``os``, ``pythonVersion``, ``installedPackages``, ...)."""
        endpoint = ENDPOINTS["system_details"]
        for arg in details:
            if arg == "experimentKey" or not any(f.name == arg for f in endpoint.fields):
                names = ", ".join(f.name for f in endpoint.fields if f.name != "experimentKey")
                raise TypeError(f"log_system_details(): unknown detail {arg!r}; known: {names}")
        try:
            self._record("system_details", dict(details))
        except ValueError as exc:
            raise TypeError(f"log_system_details(): {exc}") from None

    def __repr__(self) -> str:
        return f"<Experiment {self.key} journal={self.path!r}>"


def _required_millis(method: str, arg: str, value: Any) -> int:
    if value is None:
        raise check.type_error(method, arg, "epoch milliseconds (a non-negative integer)",
                               value)
    return check.epoch_millis(method, arg, value)


def _flatten(dic: dict, prefix: str | None, sep: str):
    for key, value in dic.items():
        if not isinstance(key, str):
            key = str(key)
        name = f"{prefix}{sep}{key}" if prefix else key
        if isinstance(value, dict) and value:
            yield from _flatten(value, name, sep)
        else:
            yield name, value


def _journal_path(journal, key: str) -> str:
    journal = journal if journal is not None else (os.environ.get("COMET_JOURNAL")
                                                   or "comet-journal.db")
    path = os.fspath(journal)
    if os.path.isdir(path) or path.endswith(os.sep):
        os.makedirs(path, exist_ok=True)
        return os.path.join(path, f"{key}.db")
    return path


def _register_atexit(experiment: Experiment):
    ref = weakref.ref(experiment)

    def _end_at_exit():
        exp = ref()
        if exp is not None and not exp.ended:
            if os.getpid() != exp._owner_pid:
                # A forked child leaving: write what it logged, but the run is the parent's
                # to end (a child must not journal the experiment's end time).
                exp.flush()
                return
            pending = len(exp._queue)
            if pending:
                import sys
                sys.stderr.write(f"comet-journal: writing {pending} pending calls of "
                                 f"experiment {exp.key} before exit\n")
            exp.end()

    atexit.register(_end_at_exit)
    return _end_at_exit
