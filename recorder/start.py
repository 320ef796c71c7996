"""The SDK's entry points: ``start()``, ``OfflineExperiment``, ``ExistingExperiment`` and
``ExperimentConfig``, each returning a journaling :class:`Experiment`.

Everything is journaled locally whatever ``mode``/``online``/``COMET_START_ONLINE`` say:
uploading is ``comet-upload``'s job. Continuing an experiment (``experiment_key``,
``COMET_EXPERIMENT_KEY``, ``ExistingExperiment``) appends to the journal that holds it: with
the default location (``<dir>/<key>.db``) a later job started from the same directory (or with
the same ``offline_directory``) finds it, and the uploader sends only what it has not sent.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from comet_journal.recorder.experiment import Experiment

logger = logging.getLogger(__name__)

_MODES = ("create", "get", "get_or_create")


def _warn_if_not_found(exp: Experiment) -> None:
    """Continuing needs the journal that holds the experiment; say so when it was not there."""
    if exp.created and not exp.disabled:
        logger.warning("comet-journal: experiment %s is not in %s, so it starts there as a new "
                       "experiment; to continue it, use the journal (or directory) that holds "
                       "it (default: <dir>/<key>.db)", exp.key, exp.path)

# ExperimentConfig attributes passed to Experiment as they are (``name`` and ``tags`` are
# handled apart); the SDK's other options are accepted and ignored by Experiment itself.
_CONFIG_OPTIONS = (
    "disabled", "log_code", "log_graph", "parse_args", "display_summary_level",
    "log_git_metadata", "log_git_patch", "log_env_details", "log_env_gpu", "log_env_host",
    "log_env_cpu", "log_env_network", "log_env_disk", "auto_output_logging",
    "auto_param_logging", "auto_metric_logging", "auto_metric_step_rate",
    "auto_histogram_epoch_rate", "auto_histogram_gradient_logging",
    "auto_histogram_activation_logging", "auto_histogram_tensorboard_logging",
    "auto_histogram_weight_logging", "offline_directory", "distributed_node_identifier",
    # comet-journal's own options
    "journal", "strict", "durability", "flush_interval", "max_queue", "max_journal_bytes",
    "experiment_name", "capture", "log_env_variables", "system_monitor_interval",
    "keep_alive_interval", "restart_in_child", "segments",
)


class ExperimentConfig:
    """Options for :func:`start`, like ``comet_ml.ExperimentConfig`` (any of the SDK's
    keyword arguments, plus ``journal``, ``strict``, ``durability``, ...)."""

    def __init__(self, name: str | None = None, tags: list[str] | None = None, **options: Any):
        unknown = set(options) - set(_CONFIG_OPTIONS)
        if unknown:
            raise TypeError(f"ExperimentConfig(): unexpected argument(s) "
                            f"{', '.join(sorted(unknown))}; known: name, tags, "
                            f"{', '.join(_CONFIG_OPTIONS)}")
        self.name = name
        self.tags = tags
        self.options = options  # as given: None means "off" for some (auto_output_logging)
        for key, value in options.items():
            setattr(self, key, value)


def _config_options(experiment_config: Any) -> tuple[dict, list[str] | None]:
    """(Experiment options, tags) from a mapping, an ExperimentConfig (ours or the SDK's)."""
    if experiment_config is None:
        return {}, None
    if isinstance(experiment_config, ExperimentConfig):
        options = dict(experiment_config.options)
        if experiment_config.name is not None:
            options["experiment_name"] = experiment_config.name
        return options, experiment_config.tags
    if isinstance(experiment_config, dict):
        source = dict(experiment_config)
    else:
        source = {k: getattr(experiment_config, k, None) for k in (*_CONFIG_OPTIONS, "name",
                                                                   "tags")}
        # comet_ml.ExperimentConfig keeps ``disabled`` as ``_disabled``
        if source.get("disabled") is None:
            source["disabled"] = getattr(experiment_config, "_disabled", None)
    source = {k: v for k, v in source.items() if v is not None}
    tags = source.pop("tags", None)
    if "name" in source:
        source["experiment_name"] = source.pop("name")
    return source, list(tags) if tags else None


def start(api_key: str | None = None, workspace: str | None = None,
          project: str | None = None, project_name: str | None = None,
          experiment_key: str | None = None, mode: str | None = None,
          online: bool | None = None, source: str | None = None,
          experiment_config: Any = None, **options: Any) -> Experiment:
    """Start (or continue) an experiment, like ``comet_ml.start``.

    :param experiment_key: continue that experiment (default ``$COMET_EXPERIMENT_KEY``);
        with ``mode="create"``, the key of the new experiment.
    :param mode: ``"get_or_create"`` (default), ``"get"`` (needs a key) or ``"create"``
        (default ``$COMET_START_MODE``).
    :param online: accepted and ignored: the journal is always written offline.
    :param experiment_config: an :class:`ExperimentConfig` (or ``comet_ml``'s, or a dict).
    :param options: :class:`Experiment` keyword arguments (``journal=...``, ``strict=...``).
    """
    mode = mode or os.environ.get("COMET_START_MODE") or None
    if mode not in (None, *_MODES):
        raise ValueError(f"start(): mode must be 'create', 'get' or 'get_or_create', "
                         f"got {mode!r}")
    del online, source  # journaling is always offline; the uploader goes online later
    key = experiment_key or os.environ.get("COMET_EXPERIMENT_KEY") or None
    if mode == "get" and not key:
        raise ValueError("start(): mode='get' needs an experiment_key (or "
                         "$COMET_EXPERIMENT_KEY) of the experiment to continue")
    config, tags = _config_options(experiment_config)
    config.update(options)
    exp = Experiment(api_key=api_key, workspace=workspace, project_name=project_name or project,
                     experiment_key=key, **config)
    if tags:
        exp.add_tags(tags)
    if mode == "get":
        _warn_if_not_found(exp)
    return exp


class OfflineExperiment(Experiment):
    """``comet_ml.OfflineExperiment``'s argument order; ``offline_directory`` holds the
    journal (``<dir>/<key>.db``) instead of a zip archive."""

    def __init__(self, project_name: str | None = None, workspace: str | None = None,
                 **options: Any):
        super().__init__(options.pop("api_key", None), project_name, workspace, **options)


class ExistingExperiment(Experiment):
    """Continue an experiment: ``previous_experiment`` (or ``$COMET_EXPERIMENT_KEY``) is its
    key. Calls are appended to the journal holding it (see the module's documentation)."""

    def __init__(self, api_key: str | None = None, previous_experiment: str | None = None,
                 **options: Any):
        key = previous_experiment or options.pop("experiment_key", None) \
            or os.environ.get("COMET_EXPERIMENT_KEY")
        if not key:
            raise ValueError("ExistingExperiment(): give previous_experiment (the key of the "
                             "experiment to continue) or set $COMET_EXPERIMENT_KEY")
        super().__init__(api_key, experiment_key=key, **options)
        _warn_if_not_found(self)
