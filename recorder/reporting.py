"""How the recorder reports a problem of its own background work: through ``logging`` and one
line on stderr, never raising (it runs inside someone's training job)."""

from __future__ import annotations

import logging
import os
import shlex
import sys

logger = logging.getLogger(__name__)


def report_problem(message: str) -> None:
    logger.error("comet-journal: %s", message)
    try:
        sys.stderr.write(f"comet-journal: {message}\n")
    except Exception:
        pass


def quiet_from_environment(quiet: bool | None) -> bool:
    """``Experiment(quiet=...)``; unset: ``COMET_JOURNAL_QUIET=1`` silences the end line."""
    if quiet is not None:
        return bool(quiet)
    return os.environ.get("COMET_JOURNAL_QUIET", "").strip().lower() in ("1", "true", "yes")


def say_how_to_upload(key: str, path: str, quiet: bool) -> None:
    """Like comet_ml's offline runs at their end: where the run is and the command that
    uploads it, one line on stderr. Never raises."""
    if quiet:
        return
    try:
        sys.stderr.write(f"comet-journal: experiment {key} is in {path}; upload it with: "
                         f"comet-upload {shlex.quote(os.fspath(path))}\n")
    except Exception:
        pass
