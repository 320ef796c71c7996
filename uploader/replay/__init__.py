"""The replay of one journal to one server: the pure scheduler, the ledger of outcomes, the
worker pool, the dispatch loop, and :class:`~.replayer.Replayer`, which wires them."""
