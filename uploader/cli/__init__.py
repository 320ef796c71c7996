"""``comet-upload``: the command line, a thin client of the uploader library.

One module per command; what they share (options, exit codes, errors) is in
:mod:`comet_journal.uploader.cli.options`. ``comet-upload JOURNAL...`` means
``comet-upload upload JOURNAL...``.
"""

import sys

try:  # Ctrl-C while the commands load: a clean exit, not a traceback
    from comet_journal.uploader.cli.group import main
    from comet_journal.uploader.cli.imports import import_command
    from comet_journal.uploader.cli.inspect import inspect_command
    from comet_journal.uploader.cli.status import status_command
    from comet_journal.uploader.cli.upload import upload_command
    from comet_journal.uploader.cli.view import export_command, view_command
    from comet_journal.uploader.cli.watch import watch_command
except KeyboardInterrupt:
    sys.stderr.write("comet-upload: interrupted\n")
    sys.exit(130)

for _command in (upload_command, status_command, inspect_command, watch_command,
                 view_command, export_command, import_command):
    main.add_command(_command)

__all__ = ["main"]
