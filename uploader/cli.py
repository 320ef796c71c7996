"""``comet-upload``: the command line. A thin client of the ``uploader`` library.

Errors from the library become ``Error: ...`` on stderr with a documented exit code.
"""

from __future__ import annotations

import json
import sys

import click

from schema.errors import JournalError
from uploader import __version__
from uploader.formatting import human_bytes, human_duration_s, human_time_ms
from uploader.inspect_journal import inspect_journal

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"]}

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_REJECTED = 3


@click.group(context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "-V", "--version", prog_name="comet-upload")
def main() -> None:
    """Replay comet-journal journals to Comet, exactly once.

    \b
    Examples:
      comet-upload inspect run.db          what a journal holds
      comet-upload inspect --json run.db   the same, as one JSON object
    """


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
        _print_summary(summary)
    if failed:
        sys.exit(EXIT_ERROR)


def _print_summary(s) -> None:
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
    click.echo("calls per endpoint:")
    width = max((len(k) for k in s.calls_per_endpoint), default=0)
    for endpoint, count in s.calls_per_endpoint.items():
        click.echo(f"  {endpoint:<{width}}  {count}")


if __name__ == "__main__":
    main()
