"""How the recorder reports a problem of its own background work: through ``logging`` and one
line on stderr, never raising (it runs inside someone's training job)."""

from __future__ import annotations

import logging
import sys

logger = logging.getLogger(__name__)


def report_problem(message: str) -> None:
    logger.error("comet-journal: %s", message)
    try:
        sys.stderr.write(f"comet-journal: {message}\n")
    except Exception:
        pass
