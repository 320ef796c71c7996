"""The sync daemon (``comet-upload watch``): discovery, file events, fair time-sliced uploads,
keep-alive, and its event log."""
