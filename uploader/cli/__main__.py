"""``python -m comet_journal.uploader.cli``: the same as ``comet-upload``."""

from comet_journal.uploader.cli import main

main()
