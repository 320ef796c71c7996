"""The API key never enters the journal: finding it (by fingerprint) in what is journaled.

The key is the one the official SDK would use: the ``api_key`` argument, ``$COMET_API_KEY``,
or ``api_key`` in the ``[comet]`` section of the config file (``$COMET_CONFIG``, else
``~/.comet.config``, else ``./.comet.config``). Only fingerprints are kept
(:class:`SecretFilter`); the key itself is dropped once they are made. Every string the
recorder journals, except metric names and values on the hot path, goes through
:meth:`SecretFilter.mask_value` (parameters, others, html, output lines, system details) or
:meth:`SecretFilter.mask` (text samples, code, the git patch).
"""

from __future__ import annotations

import configparser
import hashlib
import os
import re
from typing import Any, Final, Iterable

REDACTED: Final = "***"


def configured_api_keys(api_key: str | None = None) -> list[str]:
    """Every API key this process could be using: the argument, the environment variable and
    the config file's. Never raises (a broken config file is not our problem here)."""
    keys = [api_key, os.environ.get("COMET_API_KEY")]
    for path in (os.environ.get("COMET_CONFIG"), os.path.expanduser("~/.comet.config"),
                 ".comet.config"):
        if not path:
            continue
        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read(os.path.expanduser(path), encoding="utf-8")
            keys.append(parser.get("comet", "api_key", fallback=None))
        except (configparser.Error, OSError, UnicodeDecodeError):
            continue
    return [k.strip() for k in keys if isinstance(k, str) and k.strip()]


class SecretFilter:
    """Masks known secrets in text, holding only their fingerprints (length, sha256 and the
    kinds of characters they use), never the secrets themselves.

    A secret is found where it is a word of its own, or inside a word up to four times its
    length (``Bearer:KEY``, ``KEY123``): enough for keys written in code, configs and diffs.
    """

    MIN_LENGTH: Final = 8  # shorter values would mask ordinary words

    def __init__(self, secrets: Iterable[str | None] = ()):
        self._prints: set[tuple[int, str]] = set()
        classes: set[str] = set()
        for secret in secrets:
            if isinstance(secret, str) and len(secret) >= self.MIN_LENGTH:
                self._prints.add((len(secret), _sha(secret.encode())))
                for c in secret:
                    classes.add("a-z" if c.islower() and c.isascii() else
                                "A-Z" if c.isupper() and c.isascii() else
                                "0-9" if c.isdigit() and c.isascii() else re.escape(c))
        pattern = "[" + "".join(sorted(classes)) + "]+" if classes else None
        self._word = re.compile(pattern.encode()) if pattern else None
        self._lengths = sorted({n for n, _ in self._prints})

    def __bool__(self) -> bool:
        return bool(self._prints)

    def __repr__(self) -> str:
        return f"<SecretFilter of {len(self._prints)} secret(s)>"

    def mask(self, data: bytes) -> bytes:
        if not self._prints or self._word is None:
            return data
        return self._word.sub(self._mask_word, data)

    def mask_text(self, text: str) -> str:
        if not self._prints:
            return text
        return self.mask(text.encode("utf-8", "surrogateescape")).decode(
            "utf-8", "surrogateescape")

    def _mask_word(self, match: re.Match) -> bytes:
        word = match.group(0)
        for n in self._lengths:
            if len(word) == n and (n, _sha(word)) in self._prints:
                return REDACTED.encode()
            if n < len(word) <= 4 * n:
                for i in range(len(word) - n + 1):
                    if (n, _sha(word[i:i + n])) in self._prints:
                        return word[:i] + REDACTED.encode() + self._mask_word_rest(word[i + n:])
        return word

    def _mask_word_rest(self, rest: bytes) -> bytes:
        match = self._word.fullmatch(rest) if rest else None
        return self._mask_word(match) if match else rest

    def mask_value(self, value: Any) -> Any:
        """``value`` with the secrets masked in every string inside it (dicts, lists)."""
        if not self._prints:
            return value
        if isinstance(value, str):
            return self.mask_text(value)
        if isinstance(value, dict):
            return {k: self.mask_value(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.mask_value(v) for v in value]
        return value


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
