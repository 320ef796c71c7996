"""Did the server already apply these calls? Asked before resending a call of unknown outcome
(a previous run was killed after sending it, or the connection failed after the request left).

The per-endpoint checks are in :mod:`comet_journal.uploader.send.checks`; this module gives
them the server's read API (through the one retry loop, :meth:`Link.read`) and the journal's
history, and never lets a failing check break the upload: it answers "cannot tell" and the
call is resent.
"""

from __future__ import annotations

import logging
from typing import Any

from comet_journal.uploader.errors import AuthError, Stopped
from comet_journal.uploader.journal.calls import Call
from comet_journal.uploader.journal.history import History
from comet_journal.uploader.send.checks import CHECKS, NEEDS_NO_EXPERIMENT
from comet_journal.uploader.wire.exchange import Link
from comet_journal.uploader.wire.requests import Overrides

logger = logging.getLogger(__name__)


class ReadBack:
    """Read-backs for one replay: the server (``link``), the journal (``history``), and the
    workspace/project overrides the upload applies."""

    def __init__(self, link: Link, history: History, overrides: Overrides):
        self.link = link
        self.history = history
        self.overrides = overrides

    def read(self, path: str, **params: Any) -> Any:
        return self.link.read(path, **params)

    def applied(self, call: Call, key: str | None) -> bool | None:
        return self.applied_many([call], key)[0]

    def applied_many(self, calls: list[Call], key: str | None) -> list[bool | None]:
        """Verdicts for calls of one stream, in order (a batch, or a single call); ``None``
        means "cannot tell"."""
        endpoint = calls[0].endpoint
        check = CHECKS[endpoint]
        if check is None or (key is None and endpoint not in NEEDS_NO_EXPERIMENT):
            return [None] * len(calls)
        try:
            return check(self, calls, key)
        except (AuthError, Stopped):
            raise
        except Exception as exc:  # a read-back must never break the upload: resend instead
            logger.warning("read-back of %s failed (%s); sending it again", calls[0].label(),
                           exc)
            return [None] * len(calls)

    def find_experiment(self, payload: dict, claimed: set[str]) -> tuple[str, str | None] | None:
        """An experiment an interrupted ``write/experiment/create`` made: in the project, not
        claimed by this journal, with the journal's name."""
        data = self.read("experiments", workspaceName=payload.get("workspaceName"),
                         projectName=payload.get("projectName")) or {}
        for exp in data.get("experiments") or []:
            key = exp.get("experimentKey")
            if not key or key in claimed:
                continue
            if (exp.get("experimentName") or None) != (payload.get("experimentName") or None):
                continue
            logger.info("found experiment %s made by an interrupted create", key)
            return key, exp.get("link")
        return None

    def project_id(self, workspace: str, project: str) -> str | None:
        data = self.read("project", workspaceName=workspace, projectName=project)
        return data.get("projectId") if isinstance(data, dict) else None

    def experiment_named(self, key: str, name: str) -> bool:
        data = self.read("experiment/metadata", experimentKey=key)
        return isinstance(data, dict) and data.get("experimentName") == name
