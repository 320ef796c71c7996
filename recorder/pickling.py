"""An ``Experiment`` cannot travel to another process by pickling, and says what to do.

It owns a journal writer (a thread and an SQLite connection of this process), so it cannot
be pickled: that is what ``multiprocessing`` does with a ``Process`` target's arguments under
the ``spawn`` and ``forkserver`` start methods, and with ``Pool`` task arguments under every
start method. The fix is to create the experiment in the worker, continuing this one.
"""

from __future__ import annotations

from typing import NoReturn


def pickling_hint(journal: str, key: str) -> str:
    return (f"create the Experiment in the worker instead, continuing this one: "
            f"Experiment(journal={journal!r}, experiment_key={key!r}) (pass the path and "
            "the key to the worker; with the 'fork' start method a Process target may also "
            "use the parent's Experiment directly)")


class NotPicklable:
    """Mixin: pickling (and copying) fails with a ``TypeError`` naming the fix."""

    def __reduce_ex__(self, protocol) -> NoReturn:
        journal = getattr(self, "path", "?")
        key = getattr(self, "key", "?")
        raise TypeError(f"{type(self).__name__} {key} cannot be pickled, so it cannot be sent "
                        "to a process started with 'spawn' or 'forkserver' nor passed as a "
                        f"Pool task argument: {pickling_hint(journal, key)}")
