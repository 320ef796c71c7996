"""The common half of the answer sinks that decode a read-back answer as it arrives
(:class:`~comet_journal.uploader.wire.requests.AnswerSink`): UTF-8 pieces decoded into
``_text`` for a subclass's ``_consume``, and a broken or short answer reported by
:meth:`problem`, never raised into the transfer."""

from __future__ import annotations

import codecs


class StreamedAnswer:
    """Subclasses set ``BROKEN`` (``{exc}`` is the error) and ``EARLY`` (the answer ended
    before :meth:`finished`), and implement ``_consume`` and ``finished``."""

    BROKEN = "the answer could not be read ({exc})"
    EARLY = "the answer ended early"

    def __init__(self):
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._text = ""
        self._error: str | None = None

    def finished(self) -> bool:
        raise NotImplementedError

    def _consume(self) -> None:
        raise NotImplementedError

    def feed(self, chunk: bytes) -> None:
        if self.finished() or self._error is not None:
            return
        self._text += self._utf8.decode(chunk)
        try:
            self._consume()
        except Exception as exc:  # a broken answer: reported by problem(), never raised
            self._error = self.BROKEN.format(exc=exc)

    def problem(self) -> str | None:
        if self._error is not None:
            return self._error
        if not self.finished():
            return self.EARLY
        return None
