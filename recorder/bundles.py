"""Files logged in groups: models (``log_model``), asset folders (``log_asset_folder``) and
source code (``log_code``), with the SDK's asset types, names and metadata.

Every file is one ``upload-asset`` call; a folder's files are walked in sorted order and
named ``<folder name>/<path inside it>`` where the SDK names them so.
"""

from __future__ import annotations

import os
from typing import Any, Iterator

from comet_journal.recorder import validation as check
from comet_journal.recorder.tolerance import tolerant


def existing_folder(method: str, arg: str, value: Any) -> str:
    if not isinstance(value, (str, os.PathLike)):
        raise check.type_error(method, arg, "a folder path", value)
    path = os.fspath(value)
    if not os.path.isdir(path):
        raise NotADirectoryError(f"{method}(): {arg} {path!r} is not a folder")
    return path


def folder_files(folder: str, recursive: bool) -> Iterator[tuple[str, str]]:
    """(absolute path, path relative to ``folder``) of its files, sorted, '/'-separated."""
    if not recursive:
        for name in sorted(os.listdir(folder)):
            path = os.path.join(folder, name)
            if os.path.isfile(path):
                yield path, name
        return
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(root, name)
            yield path, os.path.relpath(path, folder).replace(os.sep, "/")


def _folder_name(folder: str) -> str:
    return os.path.basename(os.path.normpath(folder))


class BundlesMixin:
    """Part of :class:`comet_journal.recorder.Experiment`."""

    def _log_file_as(self, path: str, file_name: str, asset_type: str | None, step,
                     metadata, overwrite: bool = False, grouping: str | None = None) -> dict:
        ref = self._store_file(path)
        return self._record_asset(file_name, ref, overwrite, step, metadata, None, asset_type,
                                  None, grouping)

    @tolerant
    def log_model(self, name: Any, file_or_folder: Any, file_name: str | None = None,
                  overwrite: bool = False, metadata: Any = None, copy_to_tmp: bool = True,
                  prepend_folder_name: bool = True) -> dict | list:
        """A model's file, or every file of its folder, as ``model-element`` assets grouped
        under ``name``."""
        method = "log_model"
        check.name(method, "name", name)
        check.optional_str(method, "file_name", file_name)
        for arg, value in (("overwrite", overwrite), ("copy_to_tmp", copy_to_tmp),
                           ("prepend_folder_name", prepend_folder_name)):
            check.boolean(method, arg, value)
        metadata = self._asset_metadata(method, metadata)
        if hasattr(file_or_folder, "read"):
            data = file_or_folder.read()
            data = data.encode() if isinstance(data, str) else bytes(data)
            return self._record_asset(file_name or "model", self._store_bytes(data), overwrite,
                                      None, metadata, None, "model-element", None, name)
        if isinstance(file_or_folder, (str, os.PathLike)) and os.path.isdir(file_or_folder):
            folder = os.fspath(file_or_folder)
            prefix = f"{_folder_name(folder)}/" if prepend_folder_name else ""
            return [self._log_file_as(path, prefix + rel, "model-element", None, metadata,
                                      overwrite, name)
                    for path, rel in folder_files(folder, recursive=True)]
        path = check.existing_file(method, "file_or_folder", file_or_folder)
        return self._log_file_as(path, file_name or os.path.basename(path), "model-element",
                                 None, metadata, overwrite, name)

    @tolerant
    def log_asset_folder(self, folder: Any, step: Any = None, log_file_name: Any = None,
                         recursive: bool = False, metadata: Any = None) -> list:
        """Every file of ``folder`` as an asset; ``log_file_name=True`` names them
        ``<folder name>/<path>``. Returns ``[(path, result), ...]``."""
        method = "log_asset_folder"
        folder = existing_folder(method, "folder", folder)
        step = check.step(method, "step", step)
        check.boolean(method, "recursive", recursive)
        if log_file_name is not None:
            check.boolean(method, "log_file_name", log_file_name)
        metadata = self._asset_metadata(method, metadata)
        prefix = f"{_folder_name(folder)}/" if log_file_name else ""
        return [(path, self._log_file_as(path, prefix + (rel if log_file_name
                                                         else os.path.basename(rel)),
                                         None, step, metadata))
                for path, rel in folder_files(folder, recursive)]

    @tolerant
    def log_code(self, file_name: Any = None, folder: Any = None, code: Any = None,
                 code_name: Any = None, overwrite: bool = False, metadata: Any = None) -> list:
        """Source code as ``source_code`` assets: ``code`` text (named ``code_name``), a
        file, or every file of a folder."""
        method = "log_code"
        check.boolean(method, "overwrite", overwrite)
        extra = self._asset_metadata(method, metadata) or {}
        metadata = {**extra, "source_code_type": "manual"}
        given = [arg for arg, v in (("file_name", file_name), ("folder", folder),
                                    ("code", code)) if v is not None]
        if len(given) != 1:
            raise TypeError(f"{method}(): give exactly one of file_name, folder or code "
                            f"(got {', '.join(given) or 'none'})")
        if code is not None:
            if not isinstance(code, str):
                raise check.type_error(method, "code", "a string", code)
            check.name(method, "code_name", code_name)
            ref = self._store_bytes(code.encode())
            return [(code_name, self._record_asset(code_name, ref, overwrite, None, metadata,
                                                   None, "source_code", self._epoch))]
        if file_name is not None:
            path = check.existing_file(method, "file_name", file_name)
            return [(path, self._log_file_as(path, path, "source_code", None, metadata,
                                              overwrite))]
        folder = existing_folder(method, "folder", folder)
        prefix = f"{_folder_name(folder)}/"
        return [(path, self._log_file_as(path, prefix + rel, "source_code", None, metadata,
                                          overwrite))
                for path, rel in folder_files(folder, recursive=True)]
