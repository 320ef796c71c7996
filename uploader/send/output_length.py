"""The length of an experiment's output text on the server, counted as the answer arrives.

The output read-back needs only how many characters the server has (lines are sent in order,
so a length says which were applied), and a long run's output can be hundreds of megabytes:
:class:`OutputLength` counts the characters of the answer's ``"output"`` string piece by
piece (an :class:`~comet_journal.uploader.wire.requests.AnswerSink`), holding at most one
piece, never the text. Characters are counted as Python's ``len`` of the decoded string
would (a ``\\uD83D\\uDE00`` pair is one).
"""

from __future__ import annotations

import re

from comet_journal.uploader.send.streamed import StreamedAnswer

_KEY = re.compile(r'"output"\s*:\s*("|null)')
_SPECIAL = re.compile(r'["\\]')
_HEX4 = re.compile(r"[0-9a-fA-F]{4}")
_KEEP = 16  # characters kept when the key's start may be cut between pieces


class OutputLength(StreamedAnswer):
    """Counts the characters of the ``output`` string of an ``experiment/output`` answer.

    ``length`` is the count so far; :meth:`problem` says why the count cannot be trusted (the
    answer ended early, or has no ``output`` string). ``feed`` never raises.
    """

    BROKEN = "the output answer could not be read ({exc})"
    EARLY = "the output answer ended early (or has no output text)"

    def __init__(self):
        super().__init__()
        self.length = 0
        self._state = "key"  # key -> string -> done
        self._high_surrogate = False  # the last escape was a high surrogate (\uD800-\uDBFF)

    def finished(self) -> bool:
        return self._state == "done"

    def _consume(self) -> None:
        text, i = self._text, 0
        if self._state == "key":
            match = _KEY.search(text)
            if match is None:
                self._text = text[-_KEEP:]
                return
            if match.group(1) == "null":  # no output at all
                self._state, self._text = "done", ""
                return
            self._state, i = "string", match.end()
        n = len(text)
        while i < n:
            special = _SPECIAL.search(text, i)
            if special is None:
                self._count(n - i)
                i = n
                break
            self._count(special.start() - i)
            i = special.start()
            if text[i] == '"':
                self._state = "done"
                i += 1
                break
            if i + 1 >= n:
                break  # the escape goes on in the next piece
            if text[i + 1] != "u":
                self._count(1)
                i += 2
                continue
            if i + 6 > n:
                break
            if not _HEX4.fullmatch(text, i + 2, i + 6):
                raise ValueError(f"bad escape {text[i:i + 6]!r}")
            code = int(text[i + 2:i + 6], 16)
            if 0xDC00 <= code <= 0xDFFF and self._high_surrogate:
                self._high_surrogate = False  # the pair's second half: one character
            else:
                self._count(1)
                self._high_surrogate = 0xD800 <= code <= 0xDBFF
            i += 6
        self._text = text[i:]

    def _count(self, n: int) -> None:
        if n:
            self.length += n
            self._high_surrogate = False

