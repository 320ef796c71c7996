"""When to retry, how long to wait, and when to give up.

Vocabulary after tenacity/urllib3: :class:`RetryPolicy` is
a small frozen dataclass holding the numbers and the injectable ``sleep``/``clock``/``random``
(so tests check the decisions without waiting); :class:`ServerGate` is the one piece of shared,
mutable state: the "pause all traffic until" time a 429 sets for the whole server (sentry's
``_disabled_until``), and the time of the last successful answer, from which the deadline is
measured.

Decisions:

* retried: connection errors, timeouts, 408, 429 and every 5xx; backoff is capped
  exponential with *full jitter* (``random() * min(cap, base * 2**attempt)``, the AWS
  article), so many uploaders finishing together do not stampede the server;
* ``Retry-After`` (seconds or an HTTP date) and Comet's ``Retry-After-Custom`` (seconds) replace
  the backoff and pause **every** request to that server, not one;
* the deadline bounds how long the server may stay unreachable: the upload gives up when no
  request has succeeded for ``deadline_s`` (or when the next wait would pass that point);
  ``None`` waits forever. A long but healthy upload is never cut by it.
"""

from __future__ import annotations

import email.utils
import logging
import random as _random
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Final, Mapping

from comet_journal.uploader.errors import ServerUnreachable

DEFAULT_DEADLINE_S: Final = 300.0
DEFAULT_BASE_S: Final = 0.5
DEFAULT_CAP_S: Final = 30.0
DEFAULT_CONNECT_TIMEOUT_S: Final = 10.0
DEFAULT_READ_TIMEOUT_S: Final = 60.0
DEFAULT_UPLOAD_TIMEOUT_S: Final = 900.0  # file uploads (the SDK's comet.timeout.file_upload)
RETRYABLE_4XX: Final = frozenset({408, 429})
MAX_PAUSE_S: Final = 3600.0

logger = logging.getLogger(__name__)

# What a person reads on the progress line, from the transport's long exception text.
_CAUSES: Final = (
    (re.compile(r"(HTTP \d{3}.*)", re.S), None),  # the server's answer, as described
    (re.compile(r"connection refused", re.I), "connection refused"),
    (re.compile(r"name or service not known|nodename nor servname|failed to resolve|"
                r"getaddrinfo failed|name resolution", re.I), "host not found (DNS)"),
    (re.compile(r"ssl|certificate", re.I), "TLS error"),
    (re.compile(r"timed? ?out|timeout", re.I), "no answer (timed out)"),
    (re.compile(r"connection (reset|aborted)|remote ?disconnected|broken pipe", re.I),
     "connection dropped"),
)


def short_cause(failure: str) -> str:
    """``"log_metric: ConnectionError: ... [Errno 111] Connection refused"`` ->
    ``"connection refused"``: why the retry loop waits, in a few words."""
    detail = failure.split(": ", 1)[-1]
    for pattern, words in _CAUSES:
        found = pattern.search(detail)
        if found:
            return words or _shorten(found.group(1))
    return _shorten(detail)


def _shorten(text: str, width: int = 70) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


@dataclass(frozen=True)
class RetryState:
    """Why and until when the uploader is waiting (for the progress line).

    ``retry_at``: the policy clock's time of the next attempt; ``give_up_at``: the wall-clock
    epoch at which the deadline ends the upload (None: never)."""

    cause: str
    attempt: int
    retry_at: float
    give_up_at: float | None


def _interruptible_sleep(event: threading.Event) -> Callable[[float], None]:
    return lambda seconds: event.wait(seconds) and None


@dataclass(frozen=True)
class RetryPolicy:
    """The numbers of the retry loop. Immutable: one policy is shared by every worker.

    :param base_s: first backoff ceiling; attempt ``n`` waits up to ``base_s * 2**n``.
    :param cap_s: no single backoff is longer than this.
    :param deadline_s: give up when the server has not answered successfully for this long;
        ``None`` means never give up.
    """

    base_s: float = DEFAULT_BASE_S
    cap_s: float = DEFAULT_CAP_S
    deadline_s: float | None = DEFAULT_DEADLINE_S
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S
    read_timeout_s: float = DEFAULT_READ_TIMEOUT_S
    upload_timeout_s: float = DEFAULT_UPLOAD_TIMEOUT_S
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False, compare=False)
    clock: Callable[[], float] = field(default=time.monotonic, repr=False, compare=False)
    random: Callable[[], float] = field(default=_random.random, repr=False, compare=False)

    def backoff(self, attempt: int) -> float:
        """Full-jitter backoff before retry number ``attempt`` (0-based)."""
        ceiling = min(self.cap_s, self.base_s * (2 ** min(attempt, 30)))
        return self.random() * ceiling

    @staticmethod
    def is_retryable_status(status: int) -> bool:
        return status >= 500 or status in RETRYABLE_4XX

    def with_stop_event(self, event: threading.Event) -> "RetryPolicy":
        """The same policy whose sleeps end early when ``event`` is set (Ctrl-C, shutdown)."""
        from dataclasses import replace
        return replace(self, sleep=_interruptible_sleep(event))


def parse_retry_after(headers: Mapping[str, str], now_epoch: float | None = None) -> float | None:
    """Seconds to wait according to ``Retry-After`` / ``Retry-After-Custom``; None if absent.

    The larger of the two wins. ``Retry-After`` may be seconds or an HTTP date.
    """
    waits = []
    custom = headers.get("Retry-After-Custom")
    if custom:
        try:
            waits.append(float(custom))
        except ValueError:
            pass
    standard = headers.get("Retry-After")
    if standard:
        try:
            waits.append(float(standard))
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(standard).timestamp()
                now = time.time() if now_epoch is None else now_epoch
                waits.append(when - now)
            except (TypeError, ValueError, IndexError):
                pass
    if not waits:
        return None
    return min(MAX_PAUSE_S, max(0.0, max(waits)))


class ServerGate:
    """Shared by all workers talking to one server: the 429 pause and the deadline clock.

    :meth:`wait_turn` is called before every request; it sleeps while the server asked us to
    pause and raises :class:`ServerUnreachable` once the deadline has passed.
    """

    def __init__(self, policy: RetryPolicy, url: str = ""):
        self.policy = policy
        self.url = url
        self._lock = threading.Lock()
        self._paused_until = 0.0
        self._last_ok = policy.clock()
        self.pauses = 0
        self.last_failure = ""
        self.retrying: RetryState | None = None  # None: not waiting on a failure
        self._logged_cause = ""

    def ok(self) -> None:
        """Progress (a write acknowledged or rejected for good, a call found by a read-back):
        the deadline clock starts again. A successful read alone is not progress."""
        self._last_ok = self.policy.clock()
        self.retrying = None
        self._logged_cause = ""

    def pause(self, seconds: float) -> None:
        """Stop all traffic to the server for ``seconds`` (a 429 with Retry-After)."""
        with self._lock:
            until = self.policy.clock() + seconds
            if until > self._paused_until:
                self._paused_until = until
                self.pauses += 1

    @property
    def paused_for(self) -> float:
        return max(0.0, self._paused_until - self.policy.clock())

    def check_deadline(self, next_wait: float = 0.0) -> None:
        deadline = self.policy.deadline_s
        if deadline is None:
            return
        now = self.policy.clock()
        if now + next_wait - self._last_ok > deadline:
            waited = now - self._last_ok
            raise ServerUnreachable(
                f"{self.url or 'the server'} gave no successful answer for {waited:.0f} s "
                f"(deadline {deadline:g} s); last problem: {self._last_problem()}",
                "progress is saved in the state directory: run the same command again later, or pass "
                "--deadline forever")

    def _last_problem(self) -> str:
        """The last failure; a transport error's long text in a few words (an HTTP answer
        keeps its description: what the server said matters)."""
        failure = self.last_failure
        if not failure:
            return "unknown"
        cause = short_cause(failure)
        if cause.startswith("HTTP "):
            return failure  # what the server answered, in full
        return f"{failure.split(': ', 1)[0]}: {cause}"

    def wait_turn(self, stop: threading.Event | None = None,
                  sleep: Callable[[float], None] | None = None) -> None:
        """Block while the server is paused (every worker waits, not only the throttled one).

        A gate may be shared by many uploads (the watch daemon): ``stop`` ends the wait early
        for the caller's upload only, and ``sleep`` is the caller's (interruptible) sleep.
        """
        sleep = sleep or self.policy.sleep
        while stop is None or not stop.is_set():
            remaining = self.paused_for
            if remaining <= 0:
                return
            self.check_deadline(remaining)
            sleep(min(remaining, 1.0))

    def backoff(self, attempt: int, failure: str,
                sleep: Callable[[float], None] | None = None) -> None:
        """Sleep the policy's backoff before retry ``attempt``, within the deadline."""
        self.last_failure = failure
        delay = self.policy.backoff(attempt)
        self.check_deadline(delay)
        self._note_retry(failure, attempt, delay)
        if delay > 0:
            (sleep or self.policy.sleep)(delay)

    def _note_retry(self, failure: str, attempt: int, delay: float) -> None:
        """Keep the retry state for the progress line; log each new cause once (-v)."""
        cause = short_cause(failure)
        now = self.policy.clock()
        deadline = self.policy.deadline_s
        give_up = None if deadline is None else time.time() + deadline - (now - self._last_ok)
        self.retrying = RetryState(cause, attempt + 1, now + delay, give_up)
        if cause != self._logged_cause:
            self._logged_cause = cause
            logger.info("retrying %s: %s (%s)", self.url or "the server", cause, failure)
