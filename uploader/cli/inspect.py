"""``comet-upload inspect``: what a journal holds (never writes)."""

from __future__ import annotations

import json
import sys

import click

from comet_journal.schema.errors import JournalError
from comet_journal.uploader.cli.formatting import human_bytes, human_duration_s, human_time_ms
from comet_journal.uploader.cli.options import (EXIT_ERROR, expand_directories,
                                                output_options, setup_logging)
from comet_journal.uploader.journal.inspect import inspect_journal


@click.command("inspect")
@click.argument("journals", nargs=-1, required=True, type=click.Path(exists=True))
@output_options()
def inspect_command(journals: tuple[str, ...], as_json: bool, quiet: bool,
                    verbose: int) -> None:
    """Show what a journal holds (a directory: every journal under it): experiments, calls
    per endpoint, asset bytes, time span and format version. Never writes to the journal.

    \b
    Example:
      comet-upload inspect run.db
    """
    setup_logging(verbose, quiet)
    failed = False
    for path in expand_directories(journals):  # a directory: every journal under it
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
    blobs = "1 blob" if s.asset_blobs == 1 else f"{s.asset_blobs} blobs"
    click.echo(f"asset bytes:    {human_bytes(s.asset_bytes)} in {blobs} (deduplicated)")
    click.echo(f"experiments:    {len(s.experiments)}")
    for exp in s.experiments:
        state = "ended" if exp.ended else "not ended"
        click.echo(f"  {exp.key}  {exp.workspace or '-'}/{exp.project or '-'}  "
                   f"name={exp.name or '-'}  calls={exp.calls}  {state}")
    if s.project_calls:
        click.echo(f"project calls:  {s.project_calls}")
    if s.sdk_only_calls:
        kinds = ", ".join(f"{e} x{n}" for e, n in s.sdk_only_calls.items())
        click.echo(f"SDK-only calls: {sum(s.sdk_only_calls.values())} ({kinds}): sent only to "
                   "a server with the official SDK's routes, else kept pending")
    if s.imported:
        click.echo(f"imported from:  {s.imported['source']} ({s.imported['kind']})")
        for kind, count in sorted(s.imported["not_sent"].items()):
            click.echo(f"  kept, not sent (no route carries it): {kind} x{count}")
        for name, count in sorted(s.imported["dropped_fields"].items()):
            click.echo(f"  field not sent (no route carries it): {name} x{count}")
    click.echo("calls per endpoint:")
    width = max((len(k) for k in s.calls_per_endpoint), default=0)
    for endpoint, count in s.calls_per_endpoint.items():
        click.echo(f"  {endpoint:<{width}}  {count}")
