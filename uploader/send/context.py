"""What sending needs to know of the replay it serves (and nothing else of it)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from typing import Callable

from comet_journal.uploader.wire.exchange import Unresolvable
from comet_journal.uploader.wire.requests import Overrides


@dataclass
class SendContext:
    """Facts of one replay, read by the worker threads.

    ``claimed`` (server keys of this journal's experiments), ``adopted`` and ``project_ids``
    grow while the replay runs; single additions and lookups are atomic under the GIL.
    """

    journal_path: str
    journal_id: str
    connect: Callable[[], sqlite3.Connection]  # the calling thread's read connection
    target_id: int  # the upload target in the journal's progress
    overrides: Overrides  # workspace/project overrides of this upload
    started_ms: int  # when this replay started (epoch ms)
    sent_at_start: int  # the highest seq an earlier run may have sent
    batch: bool  # use the SDK's batch routes where the server has them
    experiment_keys: dict[int, str]  # journal experiment id -> the journal's client key
    claimed: set[str] = field(default_factory=set)
    # Journal experiments found already on the server, made by an upload of another copy of
    # this journal (another host, no shared state): any of their calls may be there too.
    adopted: set[int] = field(default_factory=set)
    project_ids: dict[tuple[str, str], str] = field(default_factory=dict)

    def may_be_on_server(self, experiment_id: int | None) -> bool:
        """Whether another copy's upload may have sent any call of this experiment."""
        return experiment_id is not None and experiment_id in self.adopted

    def idempotency_key(self, seq: int | str) -> str:
        return f"{self.journal_id}-{seq}"

    def project_id(self, workspace: str, project: str) -> str:
        """The server's id of a project (for ``$project`` references in requests)."""
        pid = self.project_ids.get((workspace, project))
        if not pid:
            raise Unresolvable(f"project {workspace}/{project} does not exist on the server "
                               "(its id is needed for this call)")
        return pid
