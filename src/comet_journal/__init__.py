"""comet-journal: log like ``comet_ml``, offline, into a journal; upload it later, exactly once.

Example (``import comet_journal as comet_ml`` works too: the calls are the SDK's)::

    import comet_journal
    exp = comet_journal.start(project_name="mnist", workspace="me")
    exp.log_metric("loss", 0.5, step=1)
    exp.end()

The parts live in subpackages: :mod:`comet_journal.recorder` (the ``Experiment``),
:mod:`comet_journal.uploader` (``comet-upload``), :mod:`comet_journal.schema` (the journal
format and the endpoint catalogue) and :mod:`comet_journal.emulator` (a local Comet-compatible
server). In the repository they are the top-level folders ``recorder/``, ``uploader/``,
``schema/`` and ``emulator/``; only the name ``comet_journal`` is installed.
"""

from comet_journal.recorder import Experiment, Project
from comet_journal.recorder.start import (ExistingExperiment, ExperimentConfig,
                                          OfflineExperiment, start)
from comet_journal.uploader import __version__

__all__ = ["Experiment", "ExistingExperiment", "ExperimentConfig", "OfflineExperiment",
           "Project", "start", "__version__"]
