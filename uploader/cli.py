"""``comet-upload``: the command line. A thin client of the ``uploader`` library.

Errors from the library become ``Error: ...`` on stderr with a documented exit code.
``comet-upload JOURNAL...`` is the ``upload`` command (the group's default).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time

import click

from comet_journal.schema.errors import JournalError
from comet_journal.uploader import __version__
from comet_journal.uploader.cli_import import import_command, journals_for_upload, state_option
from comet_journal.uploader.config import resolve
from comet_journal.uploader.errors import AuthError, ConfigError, UploadError, redact
from comet_journal.uploader.formatting import human_bytes, human_duration_s, human_time_ms
from comet_journal.uploader.inspect_journal import inspect_journal
from comet_journal.uploader.retry import DEFAULT_BASE_S, DEFAULT_CAP_S, DEFAULT_DEADLINE_S, RetryPolicy

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"]}

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_REJECTED = 3

EXIT_CODES_HELP = """\b
Exit codes:
  0  everything is on the server (including "nothing to upload")
  1  an error: bad API key (401/403), server unreachable past --deadline,
     unreadable journal, another uploader holds the journal (without --wait)
  2  usage error
  3  done, but some calls were permanently rejected by the server (listed;
     kept in the journal: send them again with --retry-rejected)"""


class _DefaultUpload(click.Group):
    """``comet-upload run.db`` means ``comet-upload upload run.db``."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in (
                "-h", "--help", "-V", "--version"):
            args = ["upload", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_DefaultUpload, context_settings=CONTEXT_SETTINGS,
             epilog=EXIT_CODES_HELP)
@click.version_option(__version__, "-V", "--version", prog_name="comet-upload")
def main() -> None:
    """Replay comet-journal journals to Comet, in order and exactly once.

    \b
    Examples:
      comet-upload run.db                    upload (same as: comet-upload upload run.db)
      comet-upload --dry-run run.db          what would be sent, sending nothing
      comet-upload status run.db             what is pending
      comet-upload status runs/              every journal under runs/, in one word each
      comet-upload watch runs/               upload journals as they appear and grow
      comet-upload inspect run.db            what a journal holds
    """


def _server_options(f):
    f = click.option("--api-key", envvar=None, help="Comet API key (default: $COMET_API_KEY, "
                     "then api_key in ~/.comet.config).")(f)
    f = click.option("--url", help="Server root, e.g. https://www.comet.com (default: "
                     "$COMET_URL_OVERRIDE, its /clientlib/ form accepted).")(f)
    f = click.option("--workspace", help="Upload into this workspace instead of the "
                     "journal's.")(f)
    f = click.option("--project-name", help="Upload into this project instead of the "
                     "journal's.")(f)
    return f


def _retry_options(f):
    """--backoff-base, --backoff-cap and --timeout (shared by upload and watch)."""
    f = click.option("--timeout", type=float, default=60.0, show_default=True,
                     help="Seconds to wait for an answer before the outcome counts as "
                     "unknown.")(f)
    f = click.option("--backoff-cap", type=float, default=DEFAULT_CAP_S, show_default=True,
                     help="Longest single backoff (seconds).")(f)
    f = click.option("--backoff-base", type=float, default=DEFAULT_BASE_S, show_default=True,
                     help="Retry backoff ceiling of the first retry (seconds; doubles each "
                     "retry).")(f)
    return f


def _resolve_or_exit(api_key, url, workspace, project_name, ca_bundle):
    """The upload configuration, or ``Error: ...`` and exit 1 (never showing the key)."""
    try:
        return resolve(api_key=api_key, url=url, workspace=workspace, project=project_name,
                       ca_bundle=ca_bundle)
    except ConfigError as exc:
        _error(exc.message, exc.hint)
        sys.exit(EXIT_ERROR)


def _pending_reports(journals, cfg) -> tuple[list, int]:
    """``pending_report`` for each journal: (reports or error dicts, exit code)."""
    from comet_journal.uploader.status import pending_report
    reports, code = [], EXIT_OK
    for path in journals:
        try:
            reports.append(pending_report(path, cfg.identity, cfg.url))
        except JournalError as exc:
            _error(str(exc), exc.hint)
            reports.append({"journal": path, "error": str(exc)})
            code = EXIT_ERROR
    return reports, code


def _deadline(value: str) -> float | None:
    if value.strip().lower() in ("forever", "never", "none", "inf"):
        return None
    try:
        seconds = float(value)
    except ValueError:
        raise click.BadParameter("give seconds (e.g. 300) or 'forever'") from None
    if seconds <= 0:
        raise click.BadParameter("must be positive (or 'forever')")
    return seconds


def _setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.ERROR if quiet else (logging.DEBUG if verbose > 1 else
                                         logging.INFO if verbose else logging.WARNING)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("comet-upload: %(levelname)s: %(message)s"))
    handler.addFilter(_RedactFilter())
    for name in ("comet_journal.uploader", "urllib3"):
        log = logging.getLogger(name)
        log.handlers[:] = [handler]
        log.setLevel(level if name == "comet_journal.uploader" else max(level, logging.INFO))
        log.propagate = False


class _RedactFilter(logging.Filter):
    """No log line ever carries the API key, whatever a library put into it."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = ()
        return True


def _error(message: str, hint: str = "") -> None:
    if hint and message.endswith(f" ({hint})"):  # a JournalError's text carries its hint
        message = message[: -len(hint) - 3]
    click.echo(f"Error: {redact(message)}", err=True)
    if hint:
        click.echo(f"Hint: {redact(hint)}", err=True)


@main.command("upload", epilog=EXIT_CODES_HELP)
@click.argument("journals", nargs=-1, required=True, type=click.Path(dir_okay=False))
@_server_options
@click.option("--ca-bundle", type=click.Path(dir_okay=False),
              help="Verify TLS with this CA bundle (verification is always on).")
@click.option("--concurrency", type=click.IntRange(1, 256), default=8, show_default=True,
              help="Requests in flight at once (over independent streams).")
@click.option("--batch", is_flag=True, help="Send metrics, parameters and output lines in the "
              "SDK's gzip batches where the server offers them (lossless).")
@click.option("--batch-size", type=click.IntRange(1, 1000), default=1000, show_default=True)
@click.option("--deadline", default=str(int(DEFAULT_DEADLINE_S)), show_default=True,
              help="Give up when the server has not answered successfully for this many "
                   "seconds ('forever' to keep trying). Progress is kept.")
@_retry_options
@click.option("--retry-rejected", is_flag=True, help="Send calls the server rejected before "
              "once more.")
@click.option("--wait", is_flag=True, help="If another comet-upload is uploading this journal "
              "to this server, wait for it instead of refusing.")
@click.option("--dry-run", is_flag=True, help="Show what would be sent, per experiment and "
              "endpoint; send nothing, change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
@click.option("--progress/--no-progress", default=None,
              help="Progress bar on stderr (default: when stderr is a terminal).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors on stderr.")
@click.option("-v", "--verbose", count=True, help="More log lines on stderr (-vv: debug).")
# (bad-input battery) how long to wait for a journal another process holds locked
@click.option("--busy-timeout", type=click.FloatRange(0, None), default=30.0,
              show_default=True, help="Seconds to wait for a journal that another process "
              "holds locked before giving up on it (exit 1).")
@state_option
def upload_command(journals, api_key, url, workspace, project_name, ca_bundle, concurrency,
                   batch, batch_size, deadline, backoff_base, backoff_cap, timeout,
                   retry_rejected, wait, dry_run, as_json, progress, quiet, verbose,
                   busy_timeout, state_dir) -> None:
    """Upload each JOURNAL: every pending call, in journal order, exactly once.

    Progress is recorded in the journal as the server acknowledges each call: stop it at any
    point (even kill -9) and run the same command again to continue.

    \b
    Examples:
      comet-upload run.db
      COMET_API_KEY=... comet-upload --url https://comet.example.com runs/*.db
      comet-upload --json --deadline forever run.db
      comet-upload offline/<key>.zip   (an OfflineExperiment archive: imported, then uploaded)
    """
    _setup_logging(verbose, quiet)
    deadline_s = _deadline(deadline)
    from comet_journal.schema.journal import set_busy_timeout
    set_busy_timeout(busy_timeout)
    journals = journals_for_upload(journals, state_dir)  # ARCHIVE.zip: its imported journal
    if dry_run:
        sys.exit(_dry_run(journals, url, workspace, project_name, as_json))
    config = _resolve_or_exit(api_key, url, workspace, project_name, ca_bundle)
    from comet_journal.uploader.replay import Options
    from comet_journal.uploader.upload import upload_journal

    policy = RetryPolicy(base_s=backoff_base, cap_s=backoff_cap, deadline_s=deadline_s,
                         read_timeout_s=timeout)
    show_bar = progress if progress is not None else (sys.stderr.isatty() and not quiet)
    results = []
    exit_code = EXIT_OK
    for path in journals:
        bar = _ProgressBar(path) if show_bar and not quiet else None
        options = Options(concurrency=concurrency, batch=batch, batch_size=batch_size,
                          retry_rejected=retry_rejected, policy=policy,
                          on_progress=bar.update if bar else None)
        try:
            summary = upload_journal(path, config, options, wait=wait)
        except JournalError as exc:
            _finish_bar(bar)
            _error(str(exc), exc.hint)
            results.append({"journal": path, "error": redact(str(exc))})
            exit_code = EXIT_ERROR
            continue
        except AuthError as exc:
            _finish_bar(bar)
            _error(exc.message, exc.hint)
            results.append({"journal": path, "error": redact(exc.message)})
            exit_code = EXIT_ERROR
            break  # the same key would be refused for every other journal
        except UploadError as exc:
            _finish_bar(bar)
            _error(exc.message, exc.hint)
            results.append({"journal": path, "error": redact(exc.message)})
            exit_code = EXIT_ERROR
            continue
        except KeyboardInterrupt:
            _finish_bar(bar)
            _error("interrupted; progress is saved in the journal",
                   "run the same command again to continue")
            sys.exit(EXIT_ERROR)
        _finish_bar(bar)
        results.append(summary.as_dict())
        if summary.rejected and exit_code == EXIT_OK:
            exit_code = EXIT_REJECTED
        if not as_json:
            _print_summary(summary)
    if as_json:
        click.echo(json.dumps({"exit_code": exit_code, "journals": results}, sort_keys=True))
    sys.exit(exit_code)


def _print_summary(s) -> None:
    click.echo(f"journal:   {s.journal}")
    click.echo(f"server:    {s.server}")
    for exp in s.experiments:
        label = f" ({exp.name})" if exp.name else ""
        click.echo(f"  experiment {exp.key}{label} -> {exp.server_key or 'not created'}"
                   + (f"  {exp.link}" if exp.link else ""))
    click.echo(f"uploaded:  {s.uploaded} calls ({human_bytes(s.bytes_sent)}) in "
               f"{human_duration_s(s.elapsed_s)}"
               + (f", {s.batches} batches" if s.batches else ""))
    click.echo(f"skipped:   {s.skipped + s.found_by_readback} already uploaded"
               + (f" ({s.found_by_readback} found on the server by read-back)"
                  if s.found_by_readback else ""))
    click.echo(f"retried:   {s.retried} (throttled {s.throttled})")
    click.echo(f"rejected:  {len(s.rejected)}")
    for r in s.rejected[:50]:
        status = f"HTTP {r['status']}" if r["status"] else "not sent"
        click.echo(f"  call {r['seq']} ({r['endpoint']}): {status}: {r['message']}")
    if len(s.rejected) > 50:
        click.echo(f"  ... and {len(s.rejected) - 50} more (see --json)")
    if s.rejected:
        click.echo("  (kept in the journal: send them again with --retry-rejected)")


class _ProgressBar:
    """``[#####     ] 1234/5000 calls  1.2 MiB  850 calls/s  ETA 4s`` on stderr."""

    def __init__(self, path: str):
        self.path = path
        self.started = time.monotonic()
        self.lock = threading.Lock()
        self.drawn = False

    def update(self, s) -> None:
        with self.lock:
            done, total = s.done, max(s.pending, 1)
            elapsed = max(time.monotonic() - self.started, 1e-6)
            rate = done / elapsed
            eta = (total - done) / rate if rate > 0 and done < total else 0
            width = 24
            filled = int(width * min(done, total) / total)
            line = (f"\r{self.path}: [{'#' * filled}{' ' * (width - filled)}] {done}/{s.pending}"
                    f" calls  {human_bytes(s.bytes_sent)}  {rate:,.0f} calls/s  "
                    f"ETA {human_duration_s(eta)} ")
            sys.stderr.write(line)
            sys.stderr.flush()
            self.drawn = True


def _finish_bar(bar) -> None:
    if bar is not None and bar.drawn:
        sys.stderr.write("\n")
        sys.stderr.flush()


def _target(url, workspace, project_name):
    """The target identity without requiring an API key (status and dry runs)."""
    import os
    from comet_journal.uploader.config import UploadConfig, Secret, normalise_url, read_config_file, \
        url_from_api_key, DEFAULT_URL
    section, _ = read_config_file()
    key = os.environ.get("COMET_API_KEY") or section.get("api_key") or ""
    raw = (url or os.environ.get("COMET_URL_OVERRIDE") or section.get("url_override")
           or (url_from_api_key(key) if key else None) or DEFAULT_URL)
    return UploadConfig(api_key=Secret(key), url=normalise_url(raw), key_source="",
                        workspace=workspace, project=project_name)


def _dry_run(journals, url, workspace, project_name, as_json) -> int:
    try:
        cfg = _target(url, workspace, project_name)
    except ConfigError as exc:
        _error(exc.message, exc.hint)
        return EXIT_ERROR
    reports, code = _pending_reports(journals, cfg)
    for report in reports:
        if not as_json and not isinstance(report, dict):
            click.echo(f"dry run: would upload {report.pending} calls "
                       f"({human_bytes(report.pending_bytes)}) of {report.journal} to "
                       f"{report.server} (nothing sent)")
            _print_pending(report)
    if as_json:
        click.echo(json.dumps({"dry_run": True, "exit_code": code, "journals": [
            r if isinstance(r, dict) else r.as_dict() for r in reports]}, sort_keys=True))
    return code


def _print_pending(report) -> None:
    for exp in report.experiments:
        who = f"experiment {exp.key}" if exp.key else "project calls"
        where = f" {exp.workspace or '-'}/{exp.project or '-'}" if exp.key else ""
        click.echo(f"  {who}{where}: {exp.pending} calls, {human_bytes(exp.bytes)}, oldest "
                   f"{human_time_ms(exp.oldest_pending_ms)}")
        width = max((len(k) for k in exp.per_endpoint), default=0)
        for endpoint, info in sorted(exp.per_endpoint.items()):
            click.echo(f"    {endpoint:<{width}}  {info['calls']:>8}  "
                       f"{human_bytes(info['bytes'])}")


@main.command("status")
@click.argument("journals", nargs=-1, required=True, type=click.Path(dir_okay=True))
@click.option("--url", help="Server root (default: $COMET_URL_OVERRIDE, config, comet.com).")
@click.option("--workspace", help="As given to the upload (progress is kept per target).")
@click.option("--project-name", help="As given to the upload.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def status_command(journals, url, workspace, project_name, as_json) -> None:
    """Say what is pending per journal and experiment: calls per endpoint, bytes, the oldest
    pending call, calls of unknown outcome, rejections and the last error. Never writes.

    Given a directory, summarise every journal under it in one word: uploaded, live,
    pending, stale or failed.

    \b
    Examples:
      comet-upload status --url http://127.0.0.1:8080 run.db
      comet-upload status --json /scratch/journals
    """
    try:
        cfg = _target(url, workspace, project_name)
    except ConfigError as exc:
        _error(exc.message, exc.hint)
        sys.exit(EXIT_ERROR)
    if any(os.path.isdir(p) for p in journals):  # a directory: one line per journal in it
        from comet_journal.uploader.cli_watch import directory_status_command
        sys.exit(directory_status_command(list(journals), cfg, as_json))
    reports, code = _pending_reports(journals, cfg)
    for report in reports:
        if as_json or isinstance(report, dict):
            continue
        click.echo(f"journal:   {report.journal}")
        click.echo(f"server:    {report.server}")
        click.echo(f"calls:     {report.total_calls} ({report.uploaded} uploaded, "
                   f"{report.pending} pending, {report.rejected} rejected)")
        click.echo(f"pending:   {report.pending} calls, {human_bytes(report.pending_bytes)}, "
                   f"oldest {human_time_ms(report.oldest_pending_ms)}")
        if report.in_doubt:
            click.echo(f"in doubt:  {report.in_doubt} calls sent by a run that stopped before "
                       "their outcome was recorded (checked on the server before resending)")
        if report.holder:
            click.echo(f"uploading: {report.holder}")
        if report.last_error:
            click.echo(f"last error ({human_time_ms(report.last_error_ms)}): "
                       f"{report.last_error}")
        _print_pending(report)
        for other in report.other_targets:
            click.echo(f"also uploaded to: {other}")
    if as_json:
        click.echo(json.dumps({"exit_code": code, "journals": [
            r if isinstance(r, dict) else r.as_dict() for r in reports]}, sort_keys=True))
    sys.exit(code)


@main.command("inspect")
@click.argument("journals", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per journal.")
def inspect_command(journals: tuple[str, ...], as_json: bool) -> None:
    """Show what a journal holds: experiments, calls per endpoint, asset bytes, time span
    and format version. Never writes to the journal.

    \b
    Example:
      comet-upload inspect run.db
    """
    failed = False
    for path in journals:
        try:
            summary = inspect_journal(path)
        except JournalError as exc:
            click.echo(f"Error: {exc}", err=True)
            failed = True
            continue
        if as_json:
            click.echo(json.dumps(summary.as_dict(), sort_keys=True))
            continue
        _print_inspect(summary)
    if failed:
        sys.exit(EXIT_ERROR)


def _print_inspect(s) -> None:
    span = ((s.last_ms - s.first_ms) / 1000) if s.first_ms is not None else 0
    click.echo(f"journal:        {s.path}")
    click.echo(f"format version: {s.format_version}")
    click.echo(f"size on disk:   {human_bytes(s.file_bytes)}")
    click.echo(f"calls:          {s.calls}")
    click.echo(f"time span:      {human_time_ms(s.first_ms)} .. {human_time_ms(s.last_ms)} "
               f"({human_duration_s(span)})")
    click.echo(f"asset bytes:    {human_bytes(s.asset_bytes)} in {s.asset_blobs} blobs "
               "(deduplicated)")
    click.echo(f"experiments:    {len(s.experiments)}")
    for exp in s.experiments:
        state = "ended" if exp.ended else "not ended"
        click.echo(f"  {exp.key}  {exp.workspace or '-'}/{exp.project or '-'}  "
                   f"name={exp.name or '-'}  calls={exp.calls}  {state}")
    if s.project_calls:
        click.echo(f"project calls:  {s.project_calls}")
    if s.imported:
        click.echo(f"imported from:  {s.imported['source']} ({s.imported['kind']})")
        for kind, count in sorted(s.imported["not_sent"].items()):
            click.echo(f"  kept, not sent (no documented endpoint): {kind} x{count}")
    click.echo("calls per endpoint:")
    width = max((len(k) for k in s.calls_per_endpoint), default=0)
    for endpoint, count in s.calls_per_endpoint.items():
        click.echo(f"  {endpoint:<{width}}  {count}")


main.add_command(import_command)
from comet_journal.uploader import cli_watch  # noqa: E402,F401  (registers the "watch" command on main)

if __name__ == "__main__":
    # Run the package's own module object, on which cli_watch registered its command
    # (``python -m`` executes this file a second time under the name __main__).
    from comet_journal.uploader.cli import main as _main
    _main()
