"""Errors of the uploader library. The CLI maps them to exit codes (see ``uploader.cli``).

::

    UploadError                  anything that stops an upload (exit 1)
      ConfigError                no API key, a malformed URL or config file
      AuthError                  the server answered 401/403: the key is wrong or lacks access
      ServerUnreachable          no success from the server for longer than the deadline
      LockedError                another uploader holds this journal for this server
      ServerProtocolError        the server answered something we cannot use (no key on create,
                                 a redirect, a page that is not Comet's JSON)
      CertificateError           the server's TLS certificate cannot be verified (--ca-bundle)
      JournalDamagedError        damage found while sending (a blob's bytes do not match their
                                 hash); names the journal and the call

    (journal problems are ``schema.errors.JournalError``, also exit 1; a journal is checked
    for damage before anything is sent: ``uploader.integrity``)

Permanent rejections (other 4xx) are not exceptions: they are recorded per call and reported
in the summary (exit 3). No message here ever contains the API key: :func:`redact` removes it
from anything that came back from the network.
"""

from __future__ import annotations

from comet_journal.schema.errors import CorruptJournalError


class UploadError(Exception):
    """An upload cannot continue. ``hint`` says what to do about it."""

    def __init__(self, message: str, hint: str = ""):
        self.message = message
        self.hint = hint
        super().__init__(message)


class ConfigError(UploadError):
    """The configuration is missing or malformed (API key, URL, config file)."""


class AuthError(UploadError):
    """The server refused the API key (401) or its access (403)."""


class ServerUnreachable(UploadError):
    """The server gave no successful answer for longer than the deadline."""


class LockedError(UploadError):
    """Another ``comet-upload`` is uploading this journal to this server."""


class ServerProtocolError(UploadError):
    """The server's answer cannot be used (e.g. a create without an experiment key)."""


class CertificateError(UploadError):
    """The server's TLS certificate cannot be verified: not retried (``--ca-bundle``)."""


class JournalDamagedError(UploadError, CorruptJournalError):
    """Damage found in the journal while uploading it (a blob's bytes no longer match their
    hash); names the file and the call. The upload stops; the calls already acknowledged stay
    recorded. Both an :class:`UploadError` (the replay records it as the last error) and a
    ``schema.errors.CorruptJournalError`` (callers treat the journal as damaged)."""

    def __init__(self, path: str, problem: str, hint: str = ""):
        CorruptJournalError.__init__(self, path, problem, hint)
        self.message = str(self)


class Stopped(Exception):
    """Not an error: the upload is stopping (a stop was requested, its time slice is over, or
    another worker failed), so a job is left unsettled. ``started``: False only when the job
    certainly never reached the network (a worker refused it before sending anything)."""

    def __init__(self, started: bool = True):
        self.started = started
        super().__init__("stopped")


_SECRETS: set[str] = set()


def register_secret(secret: str | None) -> None:
    """Remember a secret (the API key) so :func:`redact` removes it from any text."""
    if secret and len(secret) >= 4:
        _SECRETS.add(secret)


def redact(text: str) -> str:
    """``text`` with every registered secret replaced by ``***``."""
    for secret in _SECRETS:
        if secret in text:
            text = text.replace(secret, "***")
    return text
