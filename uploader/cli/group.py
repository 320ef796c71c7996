"""The ``comet-upload`` command group; each command lives in its own module of this package."""

from __future__ import annotations

import difflib
import os

import click

from comet_journal.uploader import __version__
from comet_journal.uploader.cli.options import CONTEXT_SETTINGS, EXIT_CODES_HELP

_TOP_OPTIONS = ("-h", "--help", "-V", "--version")


class DefaultUpload(click.Group):
    """``comet-upload run.db`` means ``comet-upload upload run.db``.

    A first word that is neither a command nor an existing path but is close to a command's
    name is a typo (``stauts``), never a journal to upload: a usage error, before anything
    is sent.
    """

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in _TOP_OPTIONS:
            first = args[0]
            looks_like_a_path = any(c in first for c in "./\\")  # its own error: no such path
            if not first.startswith("-") and not looks_like_a_path and \
                    not os.path.exists(first):
                close = difflib.get_close_matches(first, list(self.commands), n=1,
                                                  cutoff=0.6)
                if close:
                    ctx.fail(f"no such command or file: {first!r}. Did you mean "
                             f"`{close[0]}`? (see comet-upload --help)")
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
      comet-upload runs/                     upload every journal under runs/
      comet-upload --dry-run run.db          what would be sent, sending nothing
      comet-upload status run.db             what is uploaded and pending, per server
      comet-upload status runs/              every journal under runs/, in one word each
      comet-upload watch runs/               upload journals as they appear and grow
      comet-upload inspect run.db            what a journal holds

    \b
    The API key: $COMET_API_KEY, api_key in ~/.comet.config, or --api-key-file PATH.
    The server: --url or $COMET_URL_OVERRIDE (default https://www.comet.com).
    """
