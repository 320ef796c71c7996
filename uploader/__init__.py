"""comet-journal's uploader: replay journals to Comet (library; the CLI is ``uploader.cli``)."""

__version__ = "0.1.0"
