"""``comet-upload status``: what is pending, per journal or for every journal under a directory."""

from __future__ import annotations

import dataclasses
import json
import os
import sys

import click

from comet_journal.schema.catalogue import ENDPOINTS
from comet_journal.schema.errors import JournalError
from comet_journal.uploader.cli.formatting import human_bytes, human_time_ms
from comet_journal.uploader.cli.options import (EXIT_ERROR, EXIT_OK, error, output_options,
                                                setup_logging, stale_after_option,
                                                target_config)
from comet_journal.uploader.cli.imports import state_option
from comet_journal.uploader.cli.upload import print_pending
from comet_journal.uploader.errors import ConfigError
from comet_journal.uploader.journal.dir_status import STATES, directory_status, uploaded_path
from comet_journal.uploader.journal.liveness import journal_liveness
from comet_journal.uploader.journal.status import pending_report, upload_targets


@click.command("status")
@click.argument("journals", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--url", help="Only this server (default: every server the journal was uploaded "
              "to; $COMET_URL_OVERRIDE or comet.com for a journal never uploaded).")
@click.option("--workspace", help="As given to the upload (progress is kept per target).")
@click.option("--project-name", help="As given to the upload.")
@stale_after_option
@state_option
@output_options()
def status_command(journals, url, workspace, project_name, stale_after, state_dir, as_json,
                   quiet, verbose) -> None:
    """Say what is uploaded and pending per journal, server and experiment: calls per
    endpoint, bytes, the oldest pending call, calls of unknown outcome, rejections, the
    current error and whether an uploader is running. Never writes.

    Without --url, every server the journal was uploaded to (or tried) is reported.
    Given a directory, summarise every journal under it in one word: uploaded, live,
    pending, stale or failed.

    \b
    Examples:
      comet-upload status run.db
      comet-upload status --url http://127.0.0.1:8080 run.db
      comet-upload status --json /scratch/journals
      comet-upload status --state ~/upload-state /scratch/journals
    """
    setup_logging(verbose, quiet)
    explicit = bool(url or workspace or project_name)
    try:
        cfg = target_config(url, workspace, project_name)
    except ConfigError as exc:
        error(exc.message, exc.hint)
        sys.exit(EXIT_ERROR)
    if any(os.path.isdir(p) for p in journals):  # a directory: one line per journal in it
        sys.exit(directory_status_command(list(journals), cfg, explicit, stale_after, as_json,
                                          state_dir))
    out, code = [], EXIT_OK
    for path in journals:
        try:
            out.append(_journal_status(path, cfg, explicit, stale_after, as_json, state_dir))
        except JournalError as exc:
            error(str(exc), exc.hint)
            out.append({"journal": path, "error": str(exc)})
            code = EXIT_ERROR
    if as_json:
        click.echo(json.dumps({"exit_code": code, "journals": out}, sort_keys=True))
    sys.exit(code)


def _journal_status(path: str, cfg, explicit: bool, stale_after: float, as_json: bool,
                    state_dir: str | None = None) -> dict:
    """Print (or return, for --json) one journal's run state and a report per target
    (progress from ``state_dir``: of the daemon's private copy for a sealed run)."""
    uploaded_as = uploaded_path(path, state_dir)
    targets = [(cfg.identity, cfg.url)] if explicit else upload_targets(uploaded_as, state_dir)
    never = not targets
    reports = [dataclasses.replace(pending_report(uploaded_as, identity, server, state_dir),
                                   journal=path)
               for identity, server in (targets or [(cfg.identity, cfg.url)])]
    liveness = journal_liveness(path, stale_after)
    if as_json:  # the first target's report at the top (one target with --url), all below
        targets = [dict(r.as_dict(), tried_only=not never and not r.acknowledged,
                        sdk_only_pending=sdk_only_pending(r)) for r in reports]
        return dict(targets[0], run=liveness.state, never_uploaded=never, targets=targets)
    click.echo(f"journal:   {path}")
    click.echo(f"run:       {liveness.state}")
    if never:
        click.echo(f"never uploaded (would go to {cfg.url}; see --url)")
    for report in reports:
        _print_report(report, never)
    return {}


def _print_report(report, never: bool) -> None:
    tried = not never and not report.acknowledged
    label = "tried:    " if tried else "server:   "
    click.echo(f"{label} {report.server}" + (" (nothing acknowledged)" if tried else ""))
    target = report.identity.split("|", 1)[1] if "|" in report.identity else ""
    if target and target != "ws=|project=":
        click.echo(f"  target:    {target.replace('|', ' ')}")
    click.echo(f"  calls:     {report.total_calls} ({report.uploaded} uploaded, "
               f"{report.pending} pending, {report.rejected} rejected)")
    if report.pending:
        click.echo(f"  pending:   {report.pending} calls, "
                   f"{human_bytes(report.pending_bytes)}, oldest "
                   f"{human_time_ms(report.oldest_pending_ms)}")
    if report.in_doubt:
        click.echo(f"  in doubt:  up to {report.in_doubt} calls may have been sent by an "
                   "uploader that stopped before their outcome was recorded (checked on the "
                   "server before resending)")
    sdk_only = sdk_only_pending(report)
    if sdk_only:
        kinds = ", ".join(f"{e} x{n}" for e, n in sdk_only.items())
        click.echo(f"  SDK-only:  {sum(sdk_only.values())} pending calls need the official "
                   f"SDK's routes ({kinds}); a server without them keeps them pending")
    if report.holder:
        click.echo(f"  uploader:  {report.holder}")
    if report.last_error:
        click.echo(f"  error ({human_time_ms(report.last_error_ms)}): {report.last_error}")
    for exp in report.experiments:
        if exp.link:
            click.echo(f"  experiment {exp.key}: {exp.link}")
    if report.pending and not tried:  # a server only tried: its error says enough
        print_pending(report)


def sdk_only_pending(report) -> dict[str, int]:
    """Pending calls, by endpoint, that only the official SDK's routes carry."""
    out: dict[str, int] = {}
    for exp in report.experiments:
        for endpoint, info in exp.per_endpoint.items():
            ep = ENDPOINTS.get(endpoint)
            if ep is not None and not ep.documented:
                out[endpoint] = out.get(endpoint, 0) + info["calls"]
    return dict(sorted(out.items()))


def directory_status_command(roots: list[str], config, explicit: bool, stale_after: float,
                             as_json: bool, state_dir: str | None = None) -> int:
    """``comet-upload status DIR``: one line per journal; exit 1 if any failed."""
    statuses = directory_status(roots, config.identity if explicit else None, config.url,
                                stale_after_s=stale_after, state_dir=state_dir)
    counts = {state: sum(1 for s in statuses if s.state == state) for state in STATES}
    code = EXIT_ERROR if counts["failed"] else 0
    if as_json:
        click.echo(json.dumps({"server": config.url if explicit else None, "counts": counts,
                               "exit_code": code,
                               "journals": [s.as_dict() for s in statuses]}, sort_keys=True))
        return code
    if explicit:
        click.echo(f"server: {config.url}")
    for s in statuses:
        extra = f"  {s.detail}" if s.detail else ""
        where = f"  server={s.server}" if not explicit and s.server else ""
        click.echo(f"{s.state:<9} {s.journal}  calls={s.total_calls} pending={s.pending}"
                   f"{where}{extra}")
    click.echo(", ".join(f"{n} {state}" for state, n in counts.items()))
    return code
