"""Refusing a bad logging call the way ``comet_ml`` does: a warning, not an exception.

A logging call must never kill a training loop: by default a call whose arguments cannot be
journaled is refused (nothing is journaled), warned about once per method and reason through
:mod:`logging`, and counted (``refused`` in ``Experiment.end()``'s summary). ``strict=True``
(or ``COMET_JOURNAL_STRICT=1``) raises instead, for tests that want mistakes to fail loudly.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from typing import Callable, TypeVar

logger = logging.getLogger(__name__)

# What a refused call raises: argument checks (TypeError, ValueError and the catalogue's
# ValueError subclass) and files that cannot be read (OSError). Anything else (a figure
# whose savefig() fails, a bug of ours) is refused too, but warned about with its traceback.
REFUSED_ERRORS = (TypeError, ValueError, OSError)

F = TypeVar("F", bound=Callable)


def strict_from_environment(strict: bool | None) -> bool:
    """The ``strict`` argument, or ``$COMET_JOURNAL_STRICT`` (1/true/yes) when it is None."""
    if strict is not None:
        if not isinstance(strict, bool):
            raise TypeError(f"Experiment(): strict must be True, False or None, got {strict!r}")
        return strict
    return os.environ.get("COMET_JOURNAL_STRICT", "").strip().lower() in ("1", "true", "yes")


def reason_of(exc: BaseException) -> str:
    """The part of an error message that does not depend on the value (for warn-once)."""
    text = str(exc)
    return f"{type(exc).__name__}: {text.split(', got ')[0]}"


class Refusals:
    """Counts refused calls; warns once per (method, reason)."""

    def __init__(self, strict: bool):
        self.strict = strict
        self.count = 0
        self._warned: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def refuse(self, method: str, exc: BaseException, expected: bool = True) -> None:
        reason = reason_of(exc)
        with self._lock:
            self.count += 1
            first = (method, reason) not in self._warned
            if first:
                self._warned.add((method, reason))
        if first:
            logger.warning("comet-journal: %s() call refused, nothing journaled: %s "
                           "(further refusals like this one are counted, not shown; "
                           "strict=True raises instead)", method, exc,
                           exc_info=None if expected else exc)


def tolerant(method: F) -> F:
    """Make a logging method refuse bad arguments (warn + count) unless the experiment is
    strict. The method's object must have a ``_refusals`` attribute (:class:`Refusals`)."""
    return _wrap(method, method.__name__)


def tolerant_as(name: str) -> Callable[[F], F]:
    """:func:`tolerant` for a helper that does a public method's work (warnings name it)."""
    return lambda method: _wrap(method, name)


def _wrap(method: F, name: str) -> F:
    @functools.wraps(method)
    def call(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except Exception as exc:
            refusals = self._refusals
            if refusals.strict:
                raise
            refusals.refuse(name, exc, expected=isinstance(exc, REFUSED_ERRORS))
            return None

    return call  # type: ignore[return-value]
