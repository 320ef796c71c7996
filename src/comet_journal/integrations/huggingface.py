"""Hugging Face Transformers: a ``TrainerCallback`` that journals with comet-journal
(importing this module imports ``transformers``).

Example::

    from comet_journal.integrations.huggingface import CometJournalCallback
    trainer = Trainer(model, TrainingArguments(..., report_to="none"),
                      callbacks=[CometJournalCallback(project_name="glue")])

On the main process only: the training arguments as ``args/<name>`` parameters and the model
config as ``config/<name>`` (as ``transformers``' ``CometCallback``), ``on_log`` and
``on_evaluate`` metrics with the global step and the (whole) epoch; the journal is flushed at
the end of training.
"""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback

from comet_journal.integrations import numeric_metrics, to_mapping, whole_epoch
from comet_journal.recorder import Experiment


class CometJournalCallback(TrainerCallback):
    """:param experiment: an Experiment to log into; default: one created on the main
    process with ``experiment_options``."""

    def __init__(self, experiment: Experiment | None = None, **experiment_options: Any):
        self._experiment = experiment
        self._options = experiment_options
        self._logged_step: int | None = None
        self._logged_names: set[str] = set()

    @property
    def experiment(self) -> Experiment | None:
        return self._experiment

    def on_train_begin(self, args, state, control, model=None, **kwargs) -> None:
        if not state.is_world_process_zero:
            return
        if self._experiment is None:
            self._experiment = Experiment(**self._options)
        exp = self._experiment
        exp.log_parameters({f"args/{k}": v for k, v in to_mapping(args).items()})
        config = getattr(model, "config", None)
        if config is not None:
            exp.log_parameters({f"config/{k}": v for k, v in to_mapping(config).items()})

    def _log(self, state, metrics) -> None:
        if self._experiment is None or not state.is_world_process_zero or not metrics:
            return
        values = numeric_metrics(metrics)
        if self._logged_step != state.global_step:
            self._logged_step, self._logged_names = state.global_step, set()
        # Trainer.evaluate() passes its metrics to on_log, then to on_evaluate: once is enough.
        values = {k: v for k, v in values.items() if k not in self._logged_names}
        self._logged_names.update(values)
        if values:
            self._experiment.log_metrics(values, step=state.global_step,
                                         epoch=whole_epoch(state.epoch))

    def on_log(self, args, state, control, logs=None, **kwargs) -> None:
        self._log(state, logs)

    def on_evaluate(self, args, state, control, metrics=None, **kwargs) -> None:
        self._log(state, metrics)

    def on_train_end(self, args, state, control, **kwargs) -> None:
        if self._experiment is not None and state.is_world_process_zero:
            self._experiment.flush()
