"""Exit hooks for forked children, where ``atexit`` does not run.

``multiprocessing`` children (fork context: ``Process`` and ``Pool`` workers) leave through
``os._exit``; only ``multiprocessing.util``'s finalizers run before it, and ``Pool.terminate``
(what ``with Pool(...)`` does on exit) ends workers with ``SIGTERM``. So in every forked child:

* a ``multiprocessing`` finalizer is armed (through ``util.register_after_fork``, because a
  new ``Process`` clears the finalizers it inherited right after the fork);
* when ``SIGTERM`` still has its default action, a handler writes first, then lets the
  default action end the process (same exit status); only ``SIGKILL`` loses what was queued.
  The handler runs in the main thread between any two bytecodes, possibly inside the
  writer's own locks (a deadlock if it wrote itself), so it only starts a low-level thread
  that writes and then re-sends the signal; the main thread goes on meanwhile.

Hooks receive a short reason (``"multiprocessing exit"``, ``"SIGTERM"``); they must not raise.
"""

from __future__ import annotations

import _thread
import os
import signal
import sys
import threading
from typing import Callable, Final

EXIT_FLUSH_TIMEOUT_S: Final = 10.0

_hooks: list[Callable[[str], None]] = []
_running = threading.Lock()


class _Anchor:
    """Something ``register_after_fork`` can hold a weak reference to."""


_ANCHOR = _Anchor()


def arm(hook: Callable[[str], None]) -> None:
    """Run ``hook`` when this forked child leaves through multiprocessing or SIGTERM."""
    global _running
    _running = threading.Lock()  # this child's own: the parent's may have been held at fork
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


def leave_termination_to_main_thread() -> None:
    """Called first by the recorder's own threads: the kernel gives a process's ``SIGTERM``
    to any thread that does not block it, and only a main thread interrupted by it runs the
    Python handler at once (even inside a blocking call such as a Pool worker's ``get()``)."""
    try:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    except (AttributeError, OSError, ValueError):  # no pthread_sigmask on this platform
        pass


def _arm_multiprocessing_exit(_anchor: _Anchor) -> None:
    mp_util = sys.modules["multiprocessing.util"]
    mp_util.Finalize(None, run_hooks, args=("multiprocessing exit",), exitpriority=100)


def run_hooks(reason: str) -> None:
    """Run the hooks once at a time (multiprocessing's exit and a SIGTERM may overlap)."""
    if not _running.acquire(timeout=2 * EXIT_FLUSH_TIMEOUT_S):
        return
    try:
        for hook in list(_hooks):
            try:
                hook(reason)
            except Exception:  # leaving anyway: never turn an exit into a traceback
                pass
    finally:
        _running.release()


def _on_sigterm(signum, _frame) -> None:
    signal.signal(signum, signal.SIG_DFL)  # a second SIGTERM ends the process at once
    _thread.start_new_thread(_run_hooks_then_resend, (signum,))


def _run_hooks_then_resend(signum: int) -> None:
    run_hooks("SIGTERM")
    os.kill(os.getpid(), signum)
