"""Exit hooks for forked children, where ``atexit`` does not run.

``multiprocessing`` children (fork context: ``Process`` and ``Pool`` workers) leave through
``os._exit``; only ``multiprocessing.util``'s finalizers run before it, and ``Pool.terminate``
(what ``with Pool(...)`` does on exit) ends workers with ``SIGTERM``. So in every forked child:

* a ``multiprocessing`` finalizer is armed (through ``util.register_after_fork``, because a
  new ``Process`` clears the finalizers it inherited right after the fork);
* when ``SIGTERM`` still has its default action, a handler writes first, then lets the
  default action end the process (same exit status). A child stuck in C code for long runs
  the handler when the C code returns; only ``SIGKILL`` loses what was queued.

Hooks receive a short reason (``"multiprocessing exit"``, ``"SIGTERM"``); they must not raise.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Callable, Final

EXIT_FLUSH_TIMEOUT_S: Final = 10.0

_hooks: list[Callable[[str], None]] = []


class _Anchor:
    """Something ``register_after_fork`` can hold a weak reference to."""


_ANCHOR = _Anchor()


def arm(hook: Callable[[str], None]) -> None:
    """Run ``hook`` when this forked child leaves through multiprocessing or SIGTERM."""
    if hook not in _hooks:
        _hooks.append(hook)
    mp_util = sys.modules.get("multiprocessing.util")
    if mp_util is not None:
        mp_util.register_after_fork(_ANCHOR, _arm_multiprocessing_exit)
    try:
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _on_sigterm)
    except (ValueError, OSError):  # not the main thread of the child: nothing to arm
        pass


def _arm_multiprocessing_exit(_anchor: _Anchor) -> None:
    mp_util = sys.modules["multiprocessing.util"]
    mp_util.Finalize(None, run_hooks, args=("multiprocessing exit",), exitpriority=100)


def run_hooks(reason: str) -> None:
    for hook in list(_hooks):
        try:
            hook(reason)
        except Exception:  # leaving anyway: never turn an exit into a traceback
            pass


def _on_sigterm(signum, _frame) -> None:
    run_hooks("SIGTERM")
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
