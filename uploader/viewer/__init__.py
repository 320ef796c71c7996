"""``comet-upload view``: a local, read-only web viewer of journals (see ``server``)."""
