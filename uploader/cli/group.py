"""The ``comet-upload`` command group; each command lives in its own module of this package."""

from __future__ import annotations

import click

from comet_journal.uploader import __version__
from comet_journal.uploader.cli.options import CONTEXT_SETTINGS, EXIT_CODES_HELP


class DefaultUpload(click.Group):
    """``comet-upload run.db`` means ``comet-upload upload run.db``."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in (
                "-h", "--help", "-V", "--version"):
            args = ["upload", *args]
        return super().parse_args(ctx, args)


@click.group(cls=DefaultUpload, context_settings=CONTEXT_SETTINGS,
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
