"""Keras 3: a ``keras.callbacks.Callback`` for ``fit`` that journals with comet-journal
(importing this module imports ``keras``; any backend).

Example::

    from comet_journal.integrations.keras import CometJournalCallback
    model.fit(x, y, epochs=3, callbacks=[CometJournalCallback(project_name="mnist")])

Batch metrics are journaled as ``batch_<name>`` at every step (the global batch count),
epoch metrics (``loss``, ``val_loss``, ...) under their own names at the epoch's last step;
``epochs`` and ``steps`` as parameters; the journal is flushed at the end of ``fit``.
"""

from __future__ import annotations

from typing import Any

import keras

from comet_journal.integrations import numeric_metrics
from comet_journal.recorder import Experiment


class CometJournalCallback(keras.callbacks.Callback):
    """:param experiment: an Experiment to log into; default: one created with
        ``experiment_options`` when training begins.
    :param log_batches: journal batch metrics too (default True)."""

    def __init__(self, experiment: Experiment | None = None, log_batches: bool = True,
                 **experiment_options: Any):
        super().__init__()
        self.experiment = experiment
        self._options = experiment_options
        self._log_batches = log_batches
        self._global_step = 0
        self._epoch = 0

    def on_train_begin(self, logs=None) -> None:
        if self.experiment is None:
            self.experiment = Experiment(**self._options)
        params = {k: v for k, v in (self.params or {}).items() if k in ("epochs", "steps")}
        if params:
            self.experiment.log_parameters(params)

    def on_epoch_begin(self, epoch, logs=None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None) -> None:
        self._global_step += 1
        if self._log_batches and logs:
            self.experiment.log_metrics(numeric_metrics(logs), prefix="batch",
                                        step=self._global_step, epoch=self._epoch)

    def on_epoch_end(self, epoch, logs=None) -> None:
        if logs:
            self.experiment.log_metrics(numeric_metrics(logs), step=self._global_step,
                                        epoch=epoch)

    def on_train_end(self, logs=None) -> None:
        if self.experiment is not None:
            self.experiment.flush()
