"""The uploader's local layer (SQLite only, no network): reading pending calls and their
ordering, metric groups, upload progress, integrity checks, locks, discovery, liveness and
status. Imports nothing of the layers above (wire, send, replay, watch, cli)."""
