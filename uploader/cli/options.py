"""What the commands of ``comet-upload`` share: exit codes, options, errors, logging, config."""

from __future__ import annotations

import logging
import os
import sys

import click

from comet_journal.schema.errors import JournalError
from comet_journal.uploader.config import (DEFAULT_URL, Secret, UploadConfig, normalise_url,
                                           read_config_file, resolve, url_from_api_key)
from comet_journal.uploader.errors import ConfigError, redact
from comet_journal.uploader.journal.status import pending_report
from comet_journal.uploader.wire.retry import DEFAULT_BASE_S, DEFAULT_CAP_S

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


def server_options(f):
    f = click.option("--api-key-file", type=click.Path(exists=True, dir_okay=False),
                     help="Read the Comet API key from this file (keeps it out of the "
                     "process list).")(f)
    f = click.option("--api-key", envvar=None, help="Comet API key (default: $COMET_API_KEY, "
                     "then api_key in ~/.comet.config). Visible to other users in `ps`: "
                     "prefer --api-key-file or $COMET_API_KEY.")(f)
    f = click.option("--url", help="Server root, e.g. https://www.comet.com (default: "
                     "$COMET_URL_OVERRIDE, its /clientlib/ form accepted).")(f)
    f = click.option("--workspace", help="Upload into this workspace instead of the "
                     "journal's.")(f)
    f = click.option("--project-name", help="Upload into this project instead of the "
                     "journal's.")(f)
    return f


def batch_option(f):
    """Batching is the default (lossless, probed once, per-call fallback); --no-batch opts
    out. --batch stays accepted for the scripts that ask for it."""
    return click.option("--batch/--no-batch", default=True, show_default=True,
                        help="Send metrics, parameters and output lines in the SDK's gzip "
                        "batches where the server offers them (lossless; the rest goes one "
                        "request per call). --no-batch: one request per call.")(f)


def expand_directories(paths) -> list[str]:
    """``comet-upload DIR``: every journal under DIR (files whose header says journal)."""
    from comet_journal.uploader.journal.discovery import DEFAULT_PATTERN, iter_matching
    from comet_journal.schema.journal import read_header
    out: list[str] = []
    for path in paths:
        if not os.path.isdir(path):
            out.append(path)
            continue
        found = []
        for candidate in iter_matching([path], DEFAULT_PATTERN):
            try:
                read_header(candidate)
            except JournalError:
                continue
            found.append(candidate)
        if not found:
            raise click.UsageError(f"{path} is a directory with no journal ({DEFAULT_PATTERN}) "
                                   "in it: give journal files or a directory holding some")
        out.extend(found)
    return out


def rejection_text(rejection: dict) -> str:
    """``HTTP 400: bad value`` or ``not sent: <why>`` (the reason may say "not sent" itself)."""
    message = rejection["message"] or ""
    if rejection["status"]:
        return f"HTTP {rejection['status']}: {message}"
    return message if message.startswith("not sent") else f"not sent: {message}"


def stale_after_option(f):
    """One live/stale rule for ``status`` and ``watch`` (journal.liveness)."""
    from comet_journal.uploader.journal.liveness import DEFAULT_STALE_AFTER_S
    return click.option("--stale-after", type=float, default=DEFAULT_STALE_AFTER_S,
                        show_default=True, help="A run with no growth and no live writer for "
                        "this many seconds is stale (its writer died without ending it).")(f)


def retry_options(f):
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


def output_options(json_aliases: tuple[str, ...] = ()):
    """--json, -q and -v, meaning the same for every command."""
    def decorate(f):
        f = click.option("-v", "--verbose", count=True,
                         help="More detail on stderr (-vv: debug).")(f)
        f = click.option("-q", "--quiet", is_flag=True,
                         help="Only warnings and errors on stderr; no progress.")(f)
        f = click.option("--json", *json_aliases, "as_json", is_flag=True,
                         help="Machine output: JSON on stdout.")(f)
        return f
    return decorate


def api_key_option_value(api_key: str | None, api_key_file: str | None) -> str | None:
    """The key given on the command line or in --api-key-file (None: env or config file).

    ``--api-key`` works but is visible to every user of the machine in ``ps`` for the whole
    run: say so, once, on stderr."""
    if api_key_file:
        try:
            with open(api_key_file, encoding="utf-8") as fh:
                key = fh.read().strip()
        except OSError as exc:
            error(f"--api-key-file {api_key_file}: cannot be read: {exc.strerror}")
            sys.exit(EXIT_ERROR)
        if not key:
            error(f"--api-key-file {api_key_file} is empty",
                  "put the API key on the file's first line")
            sys.exit(EXIT_ERROR)
        return key
    if api_key:
        click.echo("Warning: --api-key is visible to other users of this machine (ps); "
                   "prefer --api-key-file PATH, $COMET_API_KEY or api_key in ~/.comet.config",
                   err=True)
    return api_key


def resolve_or_exit(api_key, url, workspace, project_name, ca_bundle, api_key_file=None):
    """The upload configuration, or ``Error: ...`` and exit 1 (never showing the key)."""
    api_key = api_key_option_value(api_key, api_key_file)
    try:
        return resolve(api_key=api_key, url=url, workspace=workspace, project=project_name,
                       ca_bundle=ca_bundle)
    except ConfigError as exc:
        error(exc.message, exc.hint)
        sys.exit(EXIT_ERROR)


def pending_reports(journals, cfg) -> tuple[list, int]:
    """``pending_report`` for each journal: (reports or error dicts, exit code)."""
    reports, code = [], EXIT_OK
    for path in journals:
        try:
            reports.append(pending_report(path, cfg.identity, cfg.url))
        except JournalError as exc:
            error(str(exc), exc.hint)
            reports.append({"journal": path, "error": str(exc)})
            code = EXIT_ERROR
    return reports, code


def parse_deadline(value: str) -> float | None:
    if value.strip().lower() in ("forever", "never", "none", "inf"):
        return None
    try:
        seconds = float(value)
    except ValueError:
        raise click.BadParameter("give seconds (e.g. 300) or 'forever'") from None
    if seconds <= 0:
        raise click.BadParameter("must be positive (or 'forever')")
    return seconds


def setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else
                                         logging.INFO if verbose else logging.WARNING)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("comet-upload: %(levelname)s: %(message)s"))
    handler.addFilter(RedactFilter())
    for name in ("comet_journal.uploader", "urllib3"):
        log = logging.getLogger(name)
        log.handlers[:] = [handler]
        log.setLevel(level if name == "comet_journal.uploader" else max(level, logging.INFO))
        log.propagate = False


class RedactFilter(logging.Filter):
    """No log line ever carries the API key, whatever a library put into it."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = ()
        return True


def error(message: str, hint: str = "") -> None:
    if hint and message.endswith(f" ({hint})"):  # a JournalError's text carries its hint
        message = message[: -len(hint) - 3]
    click.echo(f"Error: {redact(message)}", err=True)
    if hint:
        click.echo(f"Hint: {redact(hint)}", err=True)


def target_config(url, workspace, project_name) -> UploadConfig:
    """The target identity without requiring an API key (status and dry runs)."""
    section, _ = read_config_file()
    key = os.environ.get("COMET_API_KEY") or section.get("api_key") or ""
    raw = (url or os.environ.get("COMET_URL_OVERRIDE") or section.get("url_override")
           or (url_from_api_key(key) if key else None) or DEFAULT_URL)
    return UploadConfig(api_key=Secret(key), url=normalise_url(raw), key_source="",
                        workspace=workspace, project=project_name)
