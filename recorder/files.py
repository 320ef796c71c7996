"""Calls that carry bytes: assets, text samples, code, model graphs and git patches.

The bytes are copied into the journal's blob store *before* the call returns (so the caller
may delete or change the file right after), streaming one chunk at a time; the journal row
then refers to the blob by its sha256.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from typing import Any

from comet_journal.recorder import validation as check
from comet_journal.recorder.tolerance import tolerant
from comet_journal.schema.blobs import blob_ref


class FilesMixin:
    """Part of :class:`comet_journal.recorder.Experiment`; split out to keep each module small."""

    def _store_stream(self, stream) -> dict:
        sha, size = self._writer.put_blob_stream(stream)
        return blob_ref(sha, size)

    def _store_bytes(self, data: bytes) -> dict:
        return self._store_stream(io.BytesIO(data))

    def _store_text(self, data: bytes) -> dict:
        """Like :meth:`_store_bytes`, for text: the API key is masked first."""
        secrets = getattr(self, "_secrets", None)
        return self._store_bytes(secrets.mask(data) if secrets else data)


    def _store_file(self, path: str) -> dict:
        with open(path, "rb") as fh:
            return self._store_stream(fh)

    def _asset_metadata(self, method: str, metadata: Any) -> dict | None:
        """``metadata`` checked: None or a JSON-serialisable dict."""
        return _check_metadata(method, metadata)

    @tolerant
    def log_asset(self, file_data: Any, file_name: str | None = None, overwrite: bool = False,
                  copy_to_tmp: bool = True, step: Any = None, metadata: dict | None = None,
                  context: str | None = None, asset_type: str | None = None) -> dict:
        """Journal a file (a path, or a binary file-like object) as an asset.

        Returns ``{"fileName": ..., "sha256": ..., "size": ...}``. ``copy_to_tmp`` is accepted
        for compatibility: the bytes are always copied into the journal.
        """
        method = "log_asset"
        check.boolean(method, "copy_to_tmp", copy_to_tmp)  # accepted, then ignored
        check.optional_str(method, "file_name", file_name)
        if file_name is not None and not file_name.strip():
            raise check.value_error(method, "file_name", "must not be empty", file_name)
        check.boolean(method, "overwrite", overwrite)
        step = check.step(method, "step", step)
        check.optional_str(method, "context", context)
        check.optional_str(method, "asset_type", asset_type)
        metadata = _check_metadata(method, metadata)
        if isinstance(file_data, (str, os.PathLike)):
            path = check.existing_file(method, "file_data", file_data)
            file_name = file_name or os.path.basename(path)
            with open(path, "rb") as fh:
                ref = self._store_stream(fh)
        elif hasattr(file_data, "read"):
            file_name = file_name or os.path.basename(str(getattr(file_data, "name", ""))) \
                or "asset"
            ref = self._store_stream(_BinaryAdapter(file_data))
        else:
            raise check.type_error(method, "file_data", "a file path or a binary file object",
                                   file_data, "use log_asset_data() for bytes, str or dicts")
        return self._record_asset(file_name, ref, overwrite, step, metadata, context, asset_type)

    @tolerant
    def log_asset_data(self, data: Any, name: str | None = None, overwrite: bool = False,
                       step: Any = None, metadata: dict | None = None,
                       file_name: str | None = None, epoch: Any = None,
                       context: str | None = None) -> dict:
        """Journal in-memory data as an asset: bytes, str, or a JSON-able dict/list.

        ``file_name`` is the SDK's older spelling of ``name``."""
        method = "log_asset_data"
        check.optional_str(method, "file_name", file_name)
        name = name if name is not None else file_name
        epoch = self._current_epoch(check.step(method, "epoch", epoch))
        if isinstance(data, (dict, list)):
            try:
                raw = json.dumps(data).encode()
            except (TypeError, ValueError) as exc:
                raise check.type_error(method, "data", "JSON-serialisable", data,
                                       str(exc)) from None
        elif isinstance(data, str):
            raw = data.encode()
        elif isinstance(data, (bytes, bytearray, memoryview)):
            raw = bytes(data)
        else:
            raise check.type_error(method, "data", "bytes, str, dict or list", data)
        check.optional_str(method, "name", name)
        if name is not None and not name.strip():
            raise check.value_error(method, "name", "must not be empty", name)
        check.boolean(method, "overwrite", overwrite)
        step = check.step(method, "step", step)
        check.optional_str(method, "context", context)
        metadata = _check_metadata(method, metadata)
        ref = self._store_bytes(raw)
        return self._record_asset(name or "data", ref, overwrite, step, metadata, context, None,
                                  epoch)

    def _record_asset(self, file_name, ref, overwrite, step, metadata, context, asset_type,
                      epoch=None, grouping=None, extension=None) -> dict:
        """Journal an ``upload-asset`` call; the step defaults to the current one (the epoch
        does not, as in the SDK)."""
        extension = extension or os.path.splitext(file_name)[1].lstrip(".") or None
        if step is not None:
            self._step = step  # as the SDK: an asset's step becomes the current step
        self._record("upload_asset", {
            "fileName": file_name, "extension": extension,
            "step": self._step if step is None else step,
            "epoch": epoch,
            "overwrite": overwrite, "context": context, "type": asset_type, "file": ref,
            "metadata": metadata, "groupingName": grouping})
        return {"fileName": file_name, "sha256": ref["$blob"], "size": ref["size"]}

    @tolerant
    def log_text(self, text: Any, step: Any = None, metadata: dict | None = None,
                 context: str | None = None) -> None:
        """Journal a text sample (``write/experiment/upload-text-sample``)."""
        method = "log_text"
        if not isinstance(text, str):
            raise check.type_error(method, "text", "a string", text)
        step = check.step(method, "step", step)
        check.optional_str(method, "context", context)
        metadata = _check_metadata(method, metadata)
        self._record("upload_text_sample", {
            "content": self._store_text(text.encode()),
            "step": self._step if step is None else step, "context": context,
            "metadata": json.dumps(metadata, sort_keys=True) if metadata else None})

    @tolerant
    def set_code(self, code: Any = None, overwrite: bool = False,
                 filename: str | None = None) -> None:
        """Journal source code: the ``code`` text, or the contents of ``filename``."""
        method = "set_code"
        check.boolean(method, "overwrite", overwrite)  # accepted, then ignored
        if code is None and filename is None:
            raise TypeError("set_code(): give code (a string) or filename")
        if code is not None:
            if not isinstance(code, str):
                raise check.type_error(method, "code", "a string", code)
            data = code.encode()
        else:
            path = check.existing_file(method, "filename", filename)
            with open(path, "rb") as fh:
                data = fh.read()
            try:
                data.decode()
            except UnicodeDecodeError:
                raise check.value_error(method, "filename", "must be a UTF-8 text file",
                                        filename) from None
        self._record("set_code", {"code": self._store_text(data)})

    @tolerant
    def set_model_graph(self, graph: Any, overwrite: bool = False) -> None:
        """Journal the model's graph (any object: its ``str()`` is kept, as the SDK does)."""
        check.boolean("set_model_graph", "overwrite", overwrite)  # accepted, then ignored
        if graph is None:
            raise check.value_error("set_model_graph", "graph", "must not be None", graph)
        text = graph if isinstance(graph, str) else str(graph)
        if not text.strip():
            raise check.value_error("set_model_graph", "graph", "must not be empty", graph)
        self._record("log_graph", {"graph": self._store_bytes(text.encode())})

    @tolerant
    def log_git_patch(self, patch: Any) -> None:
        """Journal a git patch (text, bytes, or a path to a patch file).

        Sent as the official SDK does: a zip holding ``git_diff.patch``.
        """
        method = "log_git_patch"
        # A string of one line cannot be a patch (a diff has headers and hunks): it is a path,
        # and a path that does not exist is refused rather than journaled as patch text.
        if isinstance(patch, os.PathLike) or (isinstance(patch, str) and "\n" not in patch):
            with open(check.existing_file(method, "patch", patch), "rb") as fh:
                data = fh.read()
        elif isinstance(patch, str):
            data = patch.encode()
        elif isinstance(patch, (bytes, bytearray)):
            data = bytes(patch)
        else:
            raise check.type_error(method, "patch", "patch text, bytes or a file path", patch)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
            info = zipfile.ZipInfo("git_diff.patch", date_time=(1980, 1, 1, 0, 0, 0))
            zf.writestr(info, data)  # fixed date: the same patch gives the same blob
        self._record("upload_git_patch", {"file": self._store_bytes(buffer.getvalue())})


def _check_metadata(method: str, metadata: Any) -> dict | None:
    if metadata is None:
        return None
    check.mapping(method, "metadata", metadata)
    try:
        json.dumps(metadata, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise check.type_error(method, "metadata", "a JSON-serialisable dict", metadata,
                               str(exc)) from None
    return metadata


class _BinaryAdapter:
    """Reads bytes from a file object opened in text or binary mode."""

    def __init__(self, fileobj):
        self._f = fileobj

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        if isinstance(data, str):
            return data.encode()
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError(f"log_asset(): file_data.read() returned {type(data).__name__}, "
                            "not bytes")
        return bytes(data)
