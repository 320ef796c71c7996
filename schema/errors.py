"""Errors about journal files.

::

    JournalError                 any problem with a journal file (names the file)
      JournalNotFoundError       the path does not exist
      NotAJournalError           a text file, random bytes, an unrelated SQLite database
      TruncatedJournalError      shorter than its own header says
      NewerFormatError           written by a newer comet-journal
      JournalLockedError         another process holds a lock for too long
      CorruptJournalError        SQLite reports damage, a tampered row, a missing blob chunk

Every message says what failed, names the file, and gives a hint where one helps.
"""

from __future__ import annotations

import os


class JournalError(Exception):
    """A journal file cannot be used. ``path`` names it; ``hint`` says what to do."""

    def __init__(self, path: str | os.PathLike, problem: str, hint: str = ""):
        self.path = os.fspath(path)
        self.problem = problem
        self.hint = hint
        message = f"{self.path}: {problem}"
        if hint:
            message += f" ({hint})"
        super().__init__(message)


class JournalNotFoundError(JournalError):
    """The journal path does not exist."""


class NotAJournalError(JournalError):
    """The file is not a comet-journal journal."""


class TruncatedJournalError(JournalError):
    """The file is shorter than its SQLite header says: it was cut while copying."""


class NewerFormatError(JournalError):
    """The journal was written by a newer comet-journal than this one."""


class JournalLockedError(JournalError):
    """Another process holds the journal locked."""


class CorruptJournalError(JournalError):
    """The journal's contents are damaged."""
