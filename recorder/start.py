"""``start()``: the SDK's entry point (``comet_ml.start``), returning a journaling Experiment."""

from __future__ import annotations

import os
from typing import Any

from comet_journal.recorder.experiment import Experiment

_CONFIG_FIELDS = ("experiment_name", "journal", "durability", "flush_interval")


def start(api_key: str | None = None, workspace: str | None = None,
          project_name: str | None = None, experiment_key: str | None = None,
          mode: str | None = None, online: bool | None = None,
          experiment_config: Any = None, **options: Any) -> Experiment:
    """Start (or continue) an experiment, like ``comet_ml.start``.

    Everything is journaled locally whatever ``mode``/``online`` say: uploading is
    ``comet-upload``'s job. ``experiment_key`` (default ``$COMET_EXPERIMENT_KEY``) continues
    that experiment. ``experiment_config`` may be a mapping (or an object with attributes) of
    Experiment options, e.g. ``{"experiment_name": ..., "journal": ...}``; ``options`` are
    passed to :class:`~comet_journal.recorder.Experiment` as they are.
    """
    if mode not in (None, "create", "get", "get_or_create"):
        raise ValueError(f"start(): mode must be 'create', 'get' or 'get_or_create', "
                         f"got {mode!r}")
    del online  # journaling is always offline; the uploader goes online later
    config: dict[str, Any] = {}
    if isinstance(experiment_config, dict):
        config.update(experiment_config)
    elif experiment_config is not None:
        config.update({k: getattr(experiment_config, k) for k in _CONFIG_FIELDS
                       if getattr(experiment_config, k, None) is not None})
    config.update(options)
    key = experiment_key or os.environ.get("COMET_EXPERIMENT_KEY") or None
    return Experiment(api_key=api_key, workspace=workspace, project_name=project_name,
                      experiment_key=key, **config)
