"""Reading what ``comet_ml.OfflineExperiment`` leaves behind, without changing any of it.

Three shapes of the same data:

* an archive ``<key>.zip`` (written by ``end()``): ``experiment.json``, ``messages.json`` and
  the files the messages refer to, flat;
* that archive unpacked into a directory;
* the temporary directory of a run killed before ``end()`` (``$TMPDIR/tmpXXXXXXXX``): the
  same ``messages.json`` (flushed line by line) and files, but no ``experiment.json``. Its key
  is only in the name of the empty placeholder zip the SDK left in its offline directory.

``messages.json`` is read one line at a time and files are opened as streams, so an archive
of any size is read with bounded memory. Nothing is ever extracted to disk.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import zipfile
from dataclasses import dataclass, field
from typing import BinaryIO, Final, Iterator

EXPERIMENT_FILE: Final = "experiment.json"
MESSAGES_FILE: Final = "messages.json"
_KEY_RE: Final = re.compile(r"^[0-9a-zA-Z]{32,50}$")
PLACEHOLDER_MAX_BYTES: Final = 22  # an empty zip: what OfflineExperiment writes at start


class ArchiveError(Exception):
    """A source that cannot be imported as it is: names the source, the line and the problem."""

    def __init__(self, source: str, problem: str, line: int | None = None, hint: str = ""):
        self.source = source
        self.problem = problem
        self.line = line
        self.hint = hint
        where = f"{source}, messages.json line {line}" if line else source
        super().__init__(f"{where}: {problem}" + (f" ({hint})" if hint else ""))


@dataclass
class ExperimentInfo:
    """What ``experiment.json`` says (or what a rescued run lets us rebuild)."""

    key: str
    workspace: str | None = None
    project: str | None = None
    start_ms: int | None = None
    stop_ms: int | None = None
    tags: list[str] = field(default_factory=list)
    ended: bool = True  # False: a run rescued from its temporary directory


def key_from_placeholder(path: str) -> str:
    """The experiment key in the name of an OfflineExperiment zip (``<key>.zip`` or, for the
    get strategies, ``<key>-<random>.zip``)."""
    stem = os.path.basename(path)
    stem = stem[:-4] if stem.lower().endswith(".zip") else stem
    key = stem.split("-", 1)[0]
    if not _KEY_RE.match(key):
        raise ArchiveError(path, f"the file name does not start with an experiment key "
                                 f"(32-50 letters and digits), got {key!r}",
                           hint="give the <key>.zip that OfflineExperiment created")
    return key


def is_placeholder(path: str) -> bool:
    """The empty zip OfflineExperiment creates at start and fills only in ``end()``."""
    try:
        return os.path.getsize(path) <= PLACEHOLDER_MAX_BYTES
    except OSError:
        return False


def member_name_problem(name: str) -> str | None:
    """Why a member name is unsafe, or None. Archives are flat: a name with a folder, ``..``
    or a drive would escape the directory it is extracted into."""
    if (not name or "/" in name or "\\" in name or name in (".", "..")
            or os.path.isabs(name) or ":" in name):
        return f"the path {name!r} escapes the archive's directory"
    return None


class OfflineSource:
    """One source (zip, unpacked directory or rescued temporary directory), opened read-only.

    :param placeholder: for a temporary directory, the run's placeholder ``<key>.zip``: its
        key is the experiment key (without it, a key derived from the directory's content is
        used, the same on every import of the same directory).
    """

    def __init__(self, path: str | os.PathLike, placeholder: str | None = None):
        self.path = os.path.abspath(os.fspath(path))
        self._zip: zipfile.ZipFile | None = None
        self.unsafe_members: list[str] = []
        if os.path.isdir(self.path):
            self.members = self._dir_members()
        elif os.path.isfile(self.path):
            self._open_zip()
            self.members = self._zip_members()
        else:
            raise ArchiveError(self.path, "does not exist")
        if MESSAGES_FILE not in self.members:
            raise ArchiveError(self.path, "holds no messages.json, so it is not an "
                               "OfflineExperiment archive, unpacked archive or run directory")
        if EXPERIMENT_FILE in self.members:
            self.kind = "archive" if self._zip else "unpacked archive"
            self.info = self._read_experiment_json()
        else:
            self.kind = "rescued run"
            key = key_from_placeholder(placeholder) if placeholder else self._derived_key()
            self.info = ExperimentInfo(key=key, ended=False)

    # --- opening ------------------------------------------------------------------------

    def _open_zip(self) -> None:
        if is_placeholder(self.path):
            raise ArchiveError(
                self.path, "is the empty placeholder OfflineExperiment writes at start: the run "
                "never reached end(), so its data is in a temporary directory",
                hint="import that directory ($TMPDIR/tmpXXXXXXXX, holding messages.json) with "
                     f"--placeholder {os.path.basename(self.path)}")
        try:
            self._zip = zipfile.ZipFile(self.path)
        except (zipfile.BadZipFile, OSError) as exc:
            raise ArchiveError(self.path, f"is not a readable zip archive ({exc}): truncated "
                               "or damaged", hint="copy the archive again") from None

    def _zip_members(self) -> set[str]:
        names = set()
        for info in self._zip.infolist():
            if member_name_problem(info.filename):
                self.unsafe_members.append(info.filename)  # never opened
            else:
                names.add(info.filename)
        return names

    def _dir_members(self) -> set[str]:
        return {name for name in os.listdir(self.path)
                if os.path.isfile(os.path.join(self.path, name))}

    def _read_experiment_json(self) -> ExperimentInfo:
        try:
            with self.open_member(EXPERIMENT_FILE) as fh:
                data = json.loads(fh.read().decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise ArchiveError(self.path, f"experiment.json is not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise ArchiveError(self.path, "experiment.json is not a JSON object")
        key = data.get("offline_id")
        if not key and self._zip is not None:
            key = key_from_placeholder(self.path)  # legacy archives: the key is the file name
        if not isinstance(key, str) or not _KEY_RE.match(key):
            raise ArchiveError(self.path, f"experiment.json has no valid offline_id ({key!r})")
        tags = data.get("tags") or []
        return ExperimentInfo(key=key, workspace=data.get("workspace") or None,
                              project=data.get("project_name") or None,
                              start_ms=_int_or_none(data.get("start_time")),
                              stop_ms=_int_or_none(data.get("stop_time")),
                              tags=sorted(str(t) for t in tags), ended=True)

    def _derived_key(self) -> str:
        """A stable key for a rescued run without its placeholder: the first line of
        ``messages.json`` identifies the run (message 1 with its own timestamp)."""
        with self.open_member(MESSAGES_FILE) as fh:
            head = fh.read(65536)
        return hashlib.sha256(b"comet-journal rescued run\0" + head).hexdigest()[:32]

    # --- reading ------------------------------------------------------------------------

    def open_member(self, name: str) -> BinaryIO:
        """A binary stream of one file of the source (never a path outside it)."""
        if member_name_problem(name) or name not in self.members:
            raise KeyError(name)
        if self._zip is not None:
            try:
                return self._zip.open(name)
            except (zipfile.BadZipFile, OSError) as exc:
                raise ArchiveError(self.path, f"cannot read {name} ({exc}): truncated or "
                                   "damaged") from None
        full = os.path.realpath(os.path.join(self.path, name))
        if os.path.dirname(full) != os.path.realpath(self.path):
            raise ArchiveError(self.path, f"the path {name!r} escapes the directory "
                               "(a link to elsewhere)")
        return open(full, "rb")

    def lines(self) -> Iterator[tuple[int, bytes]]:
        """``(line number, raw line)`` of messages.json, one at a time."""
        try:
            with self.open_member(MESSAGES_FILE) as raw:
                for number, line in enumerate(raw, start=1):
                    if line.strip():
                        yield number, line
        except (zipfile.BadZipFile, EOFError) as exc:
            raise ArchiveError(self.path, f"messages.json cannot be read to its end ({exc}): "
                               "truncated or damaged", hint="copy the archive again") from None

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()

    def __enter__(self) -> "OfflineSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _int_or_none(value) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
