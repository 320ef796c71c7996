"""The library entry point: upload one journal to one server, holding the upload lock.

Example::

    from comet_journal.uploader.config import resolve
    from comet_journal.uploader.upload import upload_journal
    summary = upload_journal("run.db", resolve(url="http://127.0.0.1:8080"))
    summary.rejected    # [] when everything is on the server
"""

from __future__ import annotations

import os
import sqlite3

from comet_journal.schema.journal import read_header, translate_error
from comet_journal.uploader.config import UploadConfig
from comet_journal.uploader.journal.integrity import verify_journal
from comet_journal.uploader.journal.lock import UploadLock
from comet_journal.uploader.journal.progress import Progress, holder_text
from comet_journal.uploader.journal.progress_store import upload_holder
from comet_journal.uploader.replay.replayer import Replayer
from comet_journal.uploader.replay.summary import Options, Summary


def upload_journal(path: str | os.PathLike, config: UploadConfig,
                   options: Options | None = None, *, wait: bool = False) -> Summary:
    """Upload everything pending in ``path`` (up to its end when the upload starts).

    :param wait: if another uploader holds this journal for this server, wait for it
        instead of raising :class:`~comet_journal.uploader.errors.LockedError`.
    :raises schema.errors.JournalError: the journal cannot be read, is damaged (naming the
        damaged calls by seq), or another process holds it locked past the busy timeout.
    :raises uploader.errors.UploadError: bad key, server unreachable past the deadline, ...
    """
    path = os.fspath(path)
    read_header(path)  # a clear error for a missing or foreign file, before any lock file
    # Damaged or locked: refused before the lock file, any write or any request.
    verify_journal(path, config.identity, config.state_dir)
    try:
        return _upload(path, config, options, wait)
    except sqlite3.Error as exc:  # met while uploading (a page damaged after the check...)
        raise translate_error(path, exc) from None


def _upload(path: str, config: UploadConfig, options: Options | None, wait: bool) -> Summary:

    def describe() -> str | None:
        return upload_holder(path, config.identity, config.state_dir)

    with UploadLock(path, config.identity, wait=wait, describe_holder=describe,
                    state_dir=config.state_dir):
        replayer = Replayer(path, config, options)
        replayer.progress.set_holder(holder_text())
        try:
            return replayer.run()
        finally:
            try:
                p = Progress(path, config.identity, config.url, config.workspace,
                             config.project, config.state_dir)
                p.set_holder(None)
                p.close()
            except Exception:
                pass
