"""Where the uploader keeps its own files (journals imported from OfflineExperiment archives).

Never beside the data it reads: an archive's directory may be read-only, shared, or on a
scratch disk. First found wins: ``--state DIR``, ``$COMET_JOURNAL_STATE``,
``$XDG_STATE_HOME/comet-journal``, ``~/.local/state/comet-journal`` (the XDG default).
"""

from __future__ import annotations

import os
from typing import Final

STATE_ENV: Final = "COMET_JOURNAL_STATE"
APP_DIR_NAME: Final = "comet-journal"


def default_state_dir(explicit: str | os.PathLike | None = None) -> str:
    """The uploader's state directory (absolute; not created here)."""
    if explicit:
        return os.path.abspath(os.path.expanduser(os.fspath(explicit)))
    from_env = os.environ.get(STATE_ENV)
    if from_env:
        return os.path.abspath(os.path.expanduser(from_env))
    xdg = os.environ.get("XDG_STATE_HOME")
    if xdg and os.path.isabs(xdg):  # the XDG spec: a relative value is invalid, ignore it
        return os.path.join(xdg, APP_DIR_NAME)
    return os.path.join(os.path.expanduser("~"), ".local", "state", APP_DIR_NAME)
