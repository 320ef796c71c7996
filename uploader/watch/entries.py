"""What the sync daemon keeps per journal, and its options (every number has a default a
cluster can live with)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from comet_journal.uploader.journal.discovery import DEFAULT_PATTERN
from comet_journal.uploader.journal.liveness import DEFAULT_STALE_AFTER_S
from comet_journal.uploader.replay.summary import Options
from comet_journal.uploader.watch.lease import DEFAULT_TTL_S
from comet_journal.uploader.wire.retry import RetryPolicy

DEFAULT_PARALLEL: Final = 4
DEFAULT_TIME_SLICE_S: Final = 10.0
DEFAULT_RESCAN_S: Final = 5.0
BUSY_RETRY_S: Final = 2.0  # another uploader holds the journal: look again this much later
ERROR_RETRY_S: Final = 10.0  # an upload failed (server unreachable): try again this later

# States a journal is in, as the daemon sees it (``comet-upload status DIR`` uses the same).
QUEUED, UPLOADING, LIVE_STATE, UPLOADED, STALE_STATE, FAILED, BUSY, WAITING = (
    "queued", "uploading", "live", "uploaded", "stale", "failed", "busy", "waiting")


@dataclass
class WatchOptions:
    """How the daemon works; every number has a default a cluster can live with."""

    pattern: str = DEFAULT_PATTERN
    poll_interval: float | None = None  # None: native events where they work, else polling
    parallel: int = DEFAULT_PARALLEL
    time_slice_s: float = DEFAULT_TIME_SLICE_S
    rescan_interval_s: float = DEFAULT_RESCAN_S
    stale_after_s: float = DEFAULT_STALE_AFTER_S
    keepalive: bool = True
    after_upload: str = "keep"  # keep | delete | move:DIR
    state_dir: str | None = None  # where OfflineExperiment archives found are imported
    lease_dir: str | None = None  # shared with other daemons: one uploads a run at a time
    lease_ttl_s: float = DEFAULT_TTL_S
    replay: Options = field(default_factory=lambda: Options(
        policy=RetryPolicy(deadline_s=None)))  # a daemon never gives up on a server


@dataclass
class JournalEntry:
    path: str
    state: str = QUEUED
    detail: str = ""
    next_try: float = 0.0  # monotonic time before which it is not scheduled
    signature: tuple = ()  # journal_signature when last scheduled
    seen_end: int = 0  # the journal's last seq when its last upload started
    server_keys: tuple[str, ...] = ()
    uploaded_calls: int = 0
    live: bool = False  # its run was live at the end of the last upload
    last_started: float = 0.0  # monotonic time its last upload turn started (fairness)
    reported: str = ""  # the last state logged, so each change is logged once
    scanned: tuple = ()  # journal_signature when a scan last looked (unchanged: not opened again)
