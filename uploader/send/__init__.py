"""Sending one job exactly once, in worker threads: the sender, experiment creation, batches,
read-back checks, and the destination contract (Comet over HTTP, or a test's own)."""
