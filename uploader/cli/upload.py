"""``comet-upload [upload] JOURNAL...``: upload journals, with a progress bar and a summary."""

from __future__ import annotations

import dataclasses
import json
import sys

import click

from comet_journal.schema.errors import JournalError
from comet_journal.uploader.cli.imports import journals_for_upload, state_option
from comet_journal.uploader.cli.formatting import human_bytes, human_duration_s, human_time_ms
from comet_journal.uploader.cli.options import (EXIT_CODES_HELP, EXIT_ERROR, EXIT_OK,
                                                EXIT_REJECTED, batch_option, error,
                                                expand_directories, output_options,
                                                parse_deadline, pending_reports,
                                                rejection_text, resolve_or_exit,
                                                retry_options, server_options, setup_logging,
                                                stale_after_option, target_config)
from comet_journal.uploader.cli.progress import ProgressBar, finish_bar
from comet_journal.uploader.errors import AuthError, ConfigError, UploadError, redact
from comet_journal.uploader.wire.retry import DEFAULT_DEADLINE_S, RetryPolicy, ServerGate
from comet_journal.uploader.wire.capabilities import SDK_ROUTES_HINT


@click.command("upload", epilog=EXIT_CODES_HELP)
@click.argument("journals", nargs=-1, required=True, type=click.Path(exists=True))
@server_options
@click.option("--ca-bundle", type=click.Path(dir_okay=False),
              help="Verify TLS with this CA bundle (verification is always on).")
@click.option("--concurrency", type=click.IntRange(1, 256), default=8, show_default=True,
              help="Requests in flight at once (over independent streams).")
@batch_option
@click.option("--batch-size", type=click.IntRange(1, 1000), default=1000, show_default=True,
              help="Most metrics, parameters or output lines in one batch request.")
@click.option("--deadline", default=str(int(DEFAULT_DEADLINE_S)), show_default=True,
              help="Give up when the server has not answered successfully for this many "
                   "seconds ('forever' to keep trying). Progress is kept.")
@retry_options
@click.option("--retry-rejected", is_flag=True, help="Send calls the server rejected before "
              "once more.")
@click.option("--wait", is_flag=True, help="If another comet-upload is uploading this journal "
              "to this server, wait for it instead of refusing.")
@click.option("--dry-run", is_flag=True, help="Show what would be sent, per experiment and "
              "endpoint; send nothing, change nothing.")
@click.option("--progress/--no-progress", default=None,
              help="Progress bar on stderr (default: when stderr is a terminal).")
@output_options()
# (bad-input battery) how long to wait for a journal another process holds locked
@click.option("--busy-timeout", type=click.FloatRange(0, None), default=30.0,
              show_default=True, help="Seconds to wait for a journal that another process "
              "holds locked before giving up on it (exit 1).")
@stale_after_option
@state_option
def upload_command(journals, api_key, api_key_file, url, workspace, project_name, ca_bundle,
                   concurrency, batch, batch_size, deadline, backoff_base, backoff_cap,
                   timeout, retry_rejected, wait, dry_run, as_json, progress, quiet, verbose,
                   busy_timeout, stale_after, state_dir) -> None:
    """Upload each JOURNAL: every pending call, in journal order, exactly once. A directory
    means every journal (*.db) under it.

    Progress is recorded in the uploader's state directory (--state; never in the journal or
    its directory) as the server acknowledges each call: stop it at any point (even kill -9)
    and run the same command again to continue.

    A run that seals segments (a directory run) is read from its sealed segments through a
    private copy in the state directory, never by opening a journal another host may be
    writing; so is a journal whose writer died (no change for --stale-after).

    \b
    Examples:
      comet-upload run.db
      comet-upload runs/                          (every journal under runs/)
      COMET_API_KEY=... comet-upload --url https://comet.example.com runs/*.db
      comet-upload --json --deadline forever run.db
      comet-upload offline/<key>.zip   (an OfflineExperiment archive: imported, then uploaded)
      comet-upload /mnt/usb/runs       (every journal under a directory)
    """
    setup_logging(verbose, quiet)
    deadline_s = parse_deadline(deadline)
    from comet_journal.schema.journal import set_busy_timeout
    set_busy_timeout(busy_timeout)
    journals = expand_directories(journals)
    journals = journals_for_upload(journals, state_dir)  # ARCHIVE.zip: its imported journal
    journals = _readable_sources(journals, state_dir, stale_after, quiet or as_json)
    if dry_run:
        sys.exit(_dry_run(journals, url, workspace, project_name, as_json,
                          key_given=bool(api_key or api_key_file)))
    config = dataclasses.replace(resolve_or_exit(api_key, url, workspace, project_name,
                                                 ca_bundle, api_key_file), state_dir=state_dir)
    from comet_journal.uploader.replay.summary import Options
    from comet_journal.uploader.upload import upload_journal

    policy = RetryPolicy(base_s=backoff_base, cap_s=backoff_cap, deadline_s=deadline_s,
                         read_timeout_s=timeout)
    show_bar = progress if progress is not None else (sys.stderr.isatty() and not quiet)
    gate = ServerGate(policy, config.url)  # its retry state feeds the progress line
    results = []
    exit_code = EXIT_OK
    for path in journals:
        bar = ProgressBar(path, gate) if show_bar and not quiet else None
        options = Options(concurrency=concurrency, batch=batch, batch_size=batch_size,
                          retry_rejected=retry_rejected, policy=policy, gate=gate,
                          on_progress=bar.update if bar else None)
        try:
            summary = upload_journal(path, config, options, wait=wait)
        except JournalError as exc:
            finish_bar(bar)
            error(str(exc), exc.hint)
            results.append({"journal": path, "error": redact(str(exc))})
            exit_code = EXIT_ERROR
            continue
        except AuthError as exc:
            finish_bar(bar)
            error(exc.message, exc.hint)
            results.append({"journal": path, "error": redact(exc.message)})
            exit_code = EXIT_ERROR
            break  # the same key would be refused for every other journal
        except UploadError as exc:
            finish_bar(bar)
            error(exc.message, exc.hint)
            results.append({"journal": path, "error": redact(exc.message)})
            exit_code = EXIT_ERROR
            continue
        except KeyboardInterrupt:
            finish_bar(bar)
            error("interrupted; progress is saved in the state directory",
                   "run the same command again to continue")
            sys.exit(EXIT_ERROR)
        finish_bar(bar)
        results.append(summary.as_dict())
        if summary.rejected and exit_code == EXIT_OK:
            exit_code = EXIT_REJECTED
        if not as_json:
            _print_summary(summary, batch)
    if as_json:
        click.echo(json.dumps({"exit_code": exit_code, "journals": results}, sort_keys=True))
    sys.exit(exit_code)


def _readable_sources(journals, state_dir, stale_after_s: float, silent: bool) -> list[str]:
    """The file to read for each journal (:class:`RunSources`: sealed segments or a dead
    writer's journal through a private copy); exits when one may be live on another host."""
    from comet_journal.uploader.watch.sources import WAITING_DETAIL, RunSources

    sources = RunSources(state_dir, stale_after_s)
    out = []
    for path in journals:
        source = sources.upload_path(path)
        if source is None:
            error(f"{path}: not uploaded now: {WAITING_DETAIL}",
                  "upload it where it is written, run 'comet-upload watch' here, or wait")
            sys.exit(EXIT_ERROR)
        if source != path and not silent:
            click.echo(f"{path}: read through a private copy, {source}", err=True)
        out.append(source)
    return out


def _print_summary(s, batch: bool) -> None:
    click.echo(f"journal:   {s.journal}")
    click.echo(f"server:    {s.server}")
    for exp in s.experiments:
        label = f" ({exp.name})" if exp.name else ""
        click.echo(f"  experiment {exp.key}{label} -> {exp.server_key or 'not created'}"
                   + (f"  {exp.link}" if exp.link else ""))
    click.echo(f"uploaded:  {s.uploaded} calls ({human_bytes(s.bytes_sent)}) in "
               f"{human_duration_s(s.elapsed_s)}"
               + (f", in {s.batches} batches" if batch and s.batches else ""))
    click.echo(f"skipped:   {s.skipped + s.found_by_readback} already uploaded"
               + (f" ({s.found_by_readback} found on the server by read-back)"
                  if s.found_by_readback else ""))
    click.echo(f"retried:   {s.retried} (throttled {s.throttled})")
    click.echo(f"rejected:  {len(s.rejected)}")
    for r in s.rejected[:50]:
        click.echo(f"  call {r['seq']} ({r['endpoint']}): {rejection_text(r)}")
    if len(s.rejected) > 50:
        click.echo(f"  ... and {len(s.rejected) - 50} more (see --json)")
    if s.rejected:
        click.echo("  (kept in the journal: send them again with --retry-rejected)")
    _print_not_sendable(s.not_sendable)


def _print_not_sendable(held: dict[str, int]) -> None:
    """Calls kept pending: SDK routes this server lacks."""
    if held:
        kinds = ", ".join(f"{name} x{n}" for name, n in sorted(held.items()))
        click.echo(f"not sent:  {sum(held.values())} calls this server cannot take "
                   f"({kinds}); {SDK_ROUTES_HINT}")


def _dry_run(journals, url, workspace, project_name, as_json, key_given: bool) -> int:
    try:
        cfg = target_config(url, workspace, project_name)
    except ConfigError as exc:
        error(exc.message, exc.hint)
        return EXIT_ERROR
    reports, code = pending_reports(journals, cfg)
    if not key_given and not cfg.api_key.reveal() and not as_json:
        click.echo("Warning: no API key is set: the real upload needs one "
                   "($COMET_API_KEY, --api-key-file or ~/.comet.config)", err=True)
    for report in reports:
        if not as_json and not isinstance(report, dict):
            click.echo(f"dry run: would upload {report.pending} calls of {report.journal} to "
                       f"{report.server} (nothing sent); payload and assets "
                       f"{human_bytes(report.pending_bytes)}, plus the requests' encoding "
                       "and headers")
            print_pending(report)
    if as_json:
        click.echo(json.dumps({"dry_run": True, "exit_code": code, "journals": [
            r if isinstance(r, dict) else r.as_dict() for r in reports]}, sort_keys=True))
    return code


def print_pending(report) -> None:
    for exp in report.experiments:
        who = f"experiment {exp.key}" if exp.key else "project calls"
        where = f" {exp.workspace or '-'}/{exp.project or '-'}" if exp.key else ""
        click.echo(f"  {who}{where}: {exp.pending} calls, {human_bytes(exp.bytes)}, oldest "
                   f"{human_time_ms(exp.oldest_pending_ms)}")
        width = max((len(k) for k in exp.per_endpoint), default=0)
        for endpoint, info in sorted(exp.per_endpoint.items()):
            click.echo(f"    {endpoint:<{width}}  {info['calls']:>8}  "
                       f"{human_bytes(info['bytes'])}")
