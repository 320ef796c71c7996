"""``comet-upload status``: what is pending, per journal or for every journal under a directory."""

from __future__ import annotations

import json
import os
import sys

import click

from comet_journal.uploader.cli.formatting import human_bytes, human_time_ms
from comet_journal.uploader.cli.options import (EXIT_ERROR, error, pending_reports,
                                                target_config)
from comet_journal.uploader.errors import ConfigError
from comet_journal.uploader.journal.dir_status import STATES, directory_status


@click.command("status")
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
        cfg = target_config(url, workspace, project_name)
    except ConfigError as exc:
        error(exc.message, exc.hint)
        sys.exit(EXIT_ERROR)
    if any(os.path.isdir(p) for p in journals):  # a directory: one line per journal in it
        sys.exit(directory_status_command(list(journals), cfg, as_json))
    reports, code = pending_reports(journals, cfg)
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
        print_pending(report)
        for other in report.other_targets:
            click.echo(f"also uploaded to: {other}")
    if as_json:
        click.echo(json.dumps({"exit_code": code, "journals": [
            r if isinstance(r, dict) else r.as_dict() for r in reports]}, sort_keys=True))
    sys.exit(code)


def directory_status_command(roots: list[str], config, as_json: bool) -> int:
    """``comet-upload status DIR``: one line per journal; exit 1 if any failed."""
    statuses = directory_status(roots, config.identity, config.url)
    counts = {state: sum(1 for s in statuses if s.state == state) for state in STATES}
    code = EXIT_ERROR if counts["failed"] else 0
    if as_json:
        click.echo(json.dumps({"server": config.url, "counts": counts, "exit_code": code,
                               "journals": [s.as_dict() for s in statuses]}, sort_keys=True))
        return code
    click.echo(f"server: {config.url}")
    for s in statuses:
        extra = f"  {s.detail}" if s.detail else ""
        click.echo(f"{s.state:<9} {s.journal}  calls={s.total_calls} pending={s.pending}"
                   f"{extra}")
    click.echo(", ".join(f"{n} {state}" for state, n in counts.items()))
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
