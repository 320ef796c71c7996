"""PyTorch Lightning: a ``Logger`` that journals with comet-journal (importing this module
imports Lightning: ``lightning`` or, failing that, ``pytorch_lightning``).

Example::

    from comet_journal.integrations.lightning import CometJournalLogger
    trainer = Trainer(logger=CometJournalLogger(project_name="mnist", workspace="me"))

Like Lightning's ``CometLogger``: only rank zero records (other ranks get a dummy experiment),
hyperparameters are flattened to ``outer/inner`` names, ``log_metrics`` passes ``epoch`` on,
``version`` is the experiment key and ``finalize`` flushes the journal.
"""

from __future__ import annotations

import uuid
from typing import Any, Mapping

try:
    from lightning.pytorch.loggers.logger import Logger, rank_zero_experiment
    from lightning.pytorch.utilities import rank_zero_only
except ImportError:  # the older package name
    from pytorch_lightning.loggers.logger import Logger, rank_zero_experiment
    from pytorch_lightning.utilities import rank_zero_only

from comet_journal.integrations import flatten, numeric_metrics, to_mapping
from comet_journal.recorder import Experiment


class CometJournalLogger(Logger):
    """:param experiment: an :class:`~comet_journal.recorder.Experiment` to log into;
        default: one created on rank zero with ``experiment_options`` (``project_name``,
        ``workspace``, ``journal``, ``offline_directory``, ...).
    :param prefix: put before every metric name (``prefix-name``, as ``CometLogger``).
    """

    LOGGER_JOIN_CHAR = "-"

    def __init__(self, experiment: Experiment | None = None, prefix: str = "",
                 **experiment_options: Any):
        super().__init__()
        self._experiment = experiment
        self._options = experiment_options
        self._prefix = prefix
        self._key = experiment.key if experiment is not None else \
            experiment_options.pop("experiment_key", None) or uuid.uuid4().hex

    @property
    @rank_zero_experiment
    def experiment(self) -> Experiment:
        if self._experiment is None:
            self._experiment = Experiment(experiment_key=self._key, **self._options)
        return self._experiment

    @property
    def name(self) -> str:
        return self._options.get("project_name") or "comet-journal"

    @property
    def version(self) -> str:
        return self._key

    @property
    def save_dir(self) -> None:
        return None

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        self.experiment.log_parameters(dict(flatten(to_mapping(params))))

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        metrics = dict(metrics)
        epoch = metrics.pop("epoch", None)
        epoch = int(epoch.item() if hasattr(epoch, "item") else epoch) \
            if epoch is not None else None
        values = numeric_metrics(metrics)
        if self._prefix:
            values = {f"{self._prefix}{self.LOGGER_JOIN_CHAR}{k}": v for k, v in values.items()}
        self.experiment.log_metrics(values, step=step, epoch=epoch)

    @rank_zero_only
    def log_graph(self, model: Any, input_array: Any = None) -> None:
        self.experiment.set_model_graph(model)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        if self._experiment is not None:
            self._experiment.flush()

    @rank_zero_only
    def save(self) -> None:
        if self._experiment is not None:
            self._experiment.flush()
