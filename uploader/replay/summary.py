"""What a replay is asked to do (:class:`Options`) and what it did (:class:`Summary`)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable

from comet_journal.uploader.wire.retry import RetryPolicy, ServerGate

DEFAULT_CONCURRENCY = 8
STOP_GRACE_S = 2.0  # after a stop, how long requests on the wire may take before abandoning


@dataclass
class Options:
    """How to replay. ``batch``: use the SDK's batch endpoints where the server has them.

    ``gate``: a :class:`ServerGate` shared with other uploads to the same server (one 429
    pause, back-off and deadline for all of them); by default the replay makes its own.
    ``time_slice_s``: stop admitting calls after this long and return once what is in flight
    has settled (``Summary.more_pending`` says whether calls are left). ``stop``: an event any
    thread may set for the same graceful end (requests on the wire get ``STOP_GRACE_S``).
    """

    concurrency: int = DEFAULT_CONCURRENCY
    window: int = 0  # 0: derived from concurrency
    batch: bool = True  # lossless; probed once, each call falls back on its own
    batch_size: int = 1000
    retry_rejected: bool = False
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    on_progress: Callable[["Summary"], None] | None = None
    stop: threading.Event | None = None
    gate: ServerGate | None = None
    time_slice_s: float | None = None


@dataclass
class ExperimentResult:
    key: str  # the journal's key
    name: str | None
    server_key: str | None
    link: str | None
    created_by: str | None


@dataclass
class Summary:
    """What one upload of one journal did (``as_dict`` is the ``--json`` form)."""

    journal: str
    server: str
    total: int = 0  # calls in the journal
    pending: int = 0  # calls to upload when this run started
    uploaded: int = 0
    skipped: int = 0  # already on the server (earlier runs or found by read-back)
    found_by_readback: int = 0
    rejected: list[dict] = field(default_factory=list)
    retried: int = 0  # retry attempts (transient failures)
    bytes_sent: int = 0
    throttled: int = 0
    elapsed_s: float = 0.0
    experiments: list[ExperimentResult] = field(default_factory=list)
    batches: int = 0
    parked: int = 0  # jobs of unknown outcome parked, then resolved together (read once)
    error: str | None = None
    more_pending: bool = False  # stopped early (time slice, stop): calls are left to upload
    # calls left pending because this server lacks the SDK route they need, by endpoint
    not_sendable: dict[str, int] = field(default_factory=dict)

    @property
    def done(self) -> int:
        return self.uploaded + self.found_by_readback + len(self.rejected)

    def as_dict(self) -> dict:
        return {
            "journal": self.journal, "server": self.server, "calls_total": self.total,
            "calls_pending_at_start": self.pending, "uploaded": self.uploaded,
            "skipped_already_uploaded": self.skipped + self.found_by_readback,
            "found_by_readback": self.found_by_readback,
            "rejected": len(self.rejected), "rejected_calls": self.rejected,
            "retried": self.retried, "throttled": self.throttled,
            "bytes_sent": self.bytes_sent, "batches": self.batches, "parked": self.parked,
            "elapsed_s": round(self.elapsed_s, 3),
            "calls_per_s": round(self.uploaded / self.elapsed_s, 1) if self.elapsed_s else None,
            "experiments": [e.__dict__ for e in self.experiments], "error": self.error,
            "more_pending": self.more_pending,
            "not_sendable": sum(self.not_sendable.values()),
            "not_sendable_calls": dict(sorted(self.not_sendable.items())),
        }
