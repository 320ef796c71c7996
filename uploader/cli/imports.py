"""``comet-upload import``: turn OfflineExperiment archives into journals (a thin client of
``uploader.importer``), and the archive side of ``comet-upload ARCHIVE.zip``."""

from __future__ import annotations

import json
import os
import sys

import click

from comet_journal.uploader.cli.options import output_options, setup_logging
from comet_journal.uploader.errors import redact
from comet_journal.uploader.importer import ArchiveError, ImportResult, import_source

EXIT_ERROR = 1
EXIT_USAGE = 2
STATE_HELP = ("The uploader's state directory, where upload progress, upload locks and "
              "imported journals live (default: "
              "$COMET_JOURNAL_STATE, else $XDG_STATE_HOME/comet-journal, else "
              "~/.local/state/comet-journal).")


def state_option(f):
    return click.option("--state", "state_dir", type=click.Path(file_okay=False),
                        help=STATE_HELP)(f)


def _fail(exc: ArchiveError) -> None:
    message = str(exc)
    if exc.hint and message.endswith(f" ({exc.hint})"):
        message = message[: -len(exc.hint) - 3]
    click.echo(f"Error: {redact(message)}", err=True)
    if exc.hint:
        click.echo(f"Hint: {redact(exc.hint)}", err=True)


@click.command("import")
@click.argument("sources", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--journal", type=click.Path(),
              help="The journal to create (one SOURCE), or a directory for <key>.db files. "
                   "Default: <state>/imported/<key>.db.")
@click.option("--placeholder", type=click.Path(exists=True, dir_okay=False),
              help="For a run killed before end(): the empty <key>.zip OfflineExperiment "
                   "left in its offline directory (it names the experiment key).")
@click.option("--partial", is_flag=True, help="Import what can be imported from a damaged "
              "archive and list what was skipped (default: refuse it whole).")
@click.option("--workspace", help="For a source that names none (a rescued run): default "
              "$COMET_WORKSPACE.")
@click.option("--project-name", help="For a source that names none (a rescued run): default "
              "$COMET_PROJECT_NAME.")
@output_options()
@state_option
def import_command(sources, journal, placeholder, partial, workspace, project_name, as_json,
                   quiet, verbose, state_dir) -> None:
    """Convert each SOURCE into a journal: an OfflineExperiment archive (<key>.zip), its
    unpacked directory, or the temporary directory (holding messages.json) of a run that
    never reached end(). Importing the same run again changes nothing.

    \b
    Examples:
      comet-upload import offline/*.zip
      comet-upload import /tmp/tmpab12cd34 --placeholder offline/<key>.zip \\
          --workspace ws --project-name proj
      comet-upload import run.zip --journal run.db && comet-upload run.db
    """
    setup_logging(verbose, quiet)
    if journal and len(sources) > 1 and not os.path.isdir(journal):
        raise click.UsageError("--journal names one journal file: give one SOURCE, or an "
                               "existing directory")
    results, exit_code = [], 0
    for source in sources:
        try:
            result = import_source(source, journal=journal, state_dir=state_dir,
                                   placeholder=placeholder, partial=partial,
                                   workspace=workspace, project=project_name)
        except ArchiveError as exc:
            _fail(exc)
            results.append({"source": source, "error": redact(str(exc))})
            exit_code = EXIT_ERROR
            continue
        results.append(result.as_dict())
        if not as_json:
            _print_result(result)
    if as_json:
        click.echo(json.dumps({"exit_code": exit_code, "imports": results}, sort_keys=True,
                              default=list))
    sys.exit(exit_code)


def _print_result(r: ImportResult) -> None:
    if not r.imported:
        click.echo(f"{r.source}: already imported (experiment {r.key}) in {r.journal}")
        return
    rep = r.report
    click.echo(f"{r.source}: {r.kind}, experiment {r.key} -> {r.journal} ({r.calls} calls"
               + ("" if r.ended else "; the run was killed before end()") + ")")
    if rep.not_sendable:
        kinds = ", ".join(f"{k} x{n}" for k, n in sorted(rep.as_dict()["not_sendable"].items()))
        click.echo(f"  kept in the journal, not sent (no route carries it): {kinds}")
    if rep.dropped_fields:
        kinds = ", ".join(f"{k} x{n}" for k, n in sorted(rep.dropped_fields.items()))
        click.echo(f"  fields no route carries (not sent): {kinds}")
    if rep.orphans:
        click.echo(f"  {rep.orphans} file(s) no message refers to: ignored")
    for line, problem in rep.skipped:
        click.echo(f"  skipped{f' line {line}' if line else ''}: {problem}")


def journals_for_upload(paths, state_dir: str | None) -> list[str]:
    """``comet-upload ARCHIVE.zip``: each ``*.zip`` becomes its imported journal (imported
    now unless it already was, in the state directory); other paths pass through."""
    out = []
    for path in paths:
        if str(path).lower().endswith(".zip"):
            try:
                result = import_source(path, state_dir=state_dir)
            except ArchiveError as exc:
                _fail(exc)
                sys.exit(EXIT_ERROR)
            path = result.journal
        out.append(path)
    return out
