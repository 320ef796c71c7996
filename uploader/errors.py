"""Errors of the uploader library. The CLI maps them to exit codes (see ``uploader.cli``).

::

    UploadError                  anything that stops an upload (exit 1)
      ConfigError                no API key, a malformed URL or config file
      AuthError                  the server answered 401/403: the key is wrong or lacks access
      ServerUnreachable          no success from the server for longer than the deadline
      LockedError                another uploader holds this journal for this server
      ServerProtocolError        the server answered something we cannot use (no key on create)

    (journal problems are ``schema.errors.JournalError``, also exit 1)

Permanent rejections (other 4xx) are not exceptions: they are recorded per call and reported
in the summary (exit 3). No message here ever contains the API key: :func:`redact` removes it
from anything that came back from the network.
"""

from __future__ import annotations


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
