"""comet-journal's recorder: log like ``comet_ml.Experiment``, offline, into one SQLite file.

Example::

    from comet_journal.recorder import Experiment
    with Experiment(journal="run.db", project_name="mnist", workspace="me") as exp:
        exp.log_metric("loss", 0.5, step=1)
"""

from comet_journal.recorder.experiment import Experiment
from comet_journal.recorder.project import Project

__all__ = ["Experiment", "Project"]
