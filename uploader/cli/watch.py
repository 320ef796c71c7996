"""``comet-upload watch``: the sync daemon's command line (a thin client of uploader.watch)."""

from __future__ import annotations

import dataclasses
import os
import signal
import sys

import click

from comet_journal.uploader.cli.options import (EXIT_ERROR, batch_option, error,
                                                output_options, parse_deadline,
                                                resolve_or_exit, retry_options,
                                                server_options, setup_logging,
                                                stale_after_option)
from comet_journal.uploader.cli.imports import state_option
from comet_journal.uploader.errors import UploadError
from comet_journal.uploader.watch.events import EventLog
from comet_journal.uploader.replay.summary import Options
from comet_journal.uploader.wire.retry import RetryPolicy
from comet_journal.uploader.watch.daemon import (DEFAULT_PARALLEL, DEFAULT_RESCAN_S, DEFAULT_TIME_SLICE_S,
                            WatchDaemon, WatchOptions)


def _after_upload(value: str) -> str:
    if value in ("keep", "delete") or (value.startswith("move:") and len(value) > 5):
        return value
    raise click.BadParameter("give keep, delete or move:DIR")


@click.command("watch")
@state_option  # OfflineExperiment archives (*.zip) in DIRECTORY are imported there
@click.option("--lease-dir", type=click.Path(file_okay=False), default=None,
              help="A directory shared by several daemons watching the same runs (on "
              "several hosts): each run is uploaded by one of them at a time.")
@click.argument("directories", nargs=-1, required=True,
                type=click.Path(exists=True, file_okay=False))
@server_options
@click.option("--ca-bundle", type=click.Path(dir_okay=False),
              help="Verify TLS with this CA bundle (verification is always on).")
@click.option("--pattern", default="*.db", show_default=True,
              help="File names to look at; a file is uploaded only if its header says it is "
                   "a journal.")
@click.option("--poll", "poll", type=float, default=None,
              help="Poll every this many seconds instead of using file events (chosen "
                   "automatically on NFS, Lustre, GPFS and other network file systems).")
@click.option("--parallel", type=click.IntRange(1, 64), default=DEFAULT_PARALLEL,
              show_default=True, help="Journals uploaded at once.")
@click.option("--concurrency", type=click.IntRange(1, 256), default=8, show_default=True,
              help="Requests in flight at once per journal.")
@batch_option
@click.option("--time-slice", type=float, default=DEFAULT_TIME_SLICE_S, show_default=True,
              help="Seconds one journal uploads before others get their turn.")
@click.option("--rescan", type=float, default=DEFAULT_RESCAN_S, show_default=True,
              help="Seconds between safety rescans of the directories.")
@stale_after_option
@click.option("--after-upload", callback=lambda c, p, v: _after_upload(v), default="keep",
              show_default=True, help="What to do with a journal whose run ended and is fully "
              "uploaded: keep, delete, or move:DIR.")
@click.option("--no-keepalive", is_flag=True, help="Do not keep live runs marked alive.")
@click.option("--deadline", default="forever", show_default=True,
              help="Give up on the server after this many seconds without a successful answer.")
@retry_options
@output_options(json_aliases=("--json-log",))
def watch_command(directories, api_key, api_key_file, url, workspace, project_name, ca_bundle, pattern, poll,
                  parallel, concurrency, batch, time_slice, rescan, stale_after, after_upload,
                  no_keepalive, deadline, backoff_base, backoff_cap, timeout, as_json, quiet,
                  verbose, state_dir, lease_dir) -> None:
    """Upload every journal under DIRECTORIES as it appears and grows, until stopped.

    Journals present at start are uploaded, new ones are picked up, and journals still being
    written are uploaded up to their end within seconds of each change; their experiments
    are kept alive on the server while the run lives. A journal that cannot be read or is
    rejected is reported and skipped; the daemon carries on. Safe next to other daemons and
    manual comet-upload runs: no call is ever uploaded twice.

    Ctrl-C or SIGTERM stops it cleanly within seconds (progress is kept); a second signal
    exits at once with status 1.

    \b
    Examples:
      comet-upload watch /scratch/$USER/journals
      comet-upload watch --poll 5 --after-upload move:/scratch/done /lustre/runs
      comet-upload watch --json runs/ 2>>watch.log
    """
    setup_logging(verbose, quiet)
    config = dataclasses.replace(resolve_or_exit(api_key, url, workspace, project_name,
                                                 ca_bundle, api_key_file), state_dir=state_dir)
    policy = RetryPolicy(base_s=backoff_base, cap_s=backoff_cap, deadline_s=parse_deadline(deadline),
                         read_timeout_s=timeout)
    options = WatchOptions(
        pattern=pattern, poll_interval=poll, parallel=parallel, time_slice_s=time_slice,
        rescan_interval_s=rescan, stale_after_s=stale_after, keepalive=not no_keepalive,
        after_upload=after_upload, state_dir=state_dir, lease_dir=lease_dir,
        replay=Options(concurrency=concurrency, batch=batch, policy=policy))
    log = EventLog(json_mode=as_json,  # --json (alias --json-log): one JSON object per event
                   min_level="warning" if quiet else ("debug" if verbose > 1 else "info"))
    try:
        daemon = WatchDaemon(list(directories), config, options, log)
    except UploadError as exc:
        error(exc.message, exc.hint)
        sys.exit(EXIT_ERROR)

    def on_signal(signum, _frame):
        if daemon.stopping:
            log("abort", f"second {signal.Signals(signum).name}: exiting now", level="warning")
            os._exit(1)
        log("stopping", f"{signal.Signals(signum).name}: finishing in-flight requests "
            "(send it again to exit at once)")
        daemon.stop()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    sys.exit(daemon.run())
