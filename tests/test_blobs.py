"""Assets live inside the journal: chunked, content-addressed, streamed, verified."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import tracemalloc
import zipfile
import io

import pytest

from journal_helpers import rows
from comet_journal import Experiment
from comet_journal.schema import blobs
from comet_journal.schema.journal import sqlite_connect


def test_same_file_twice_is_stored_once(tmp_path):
    data = os.urandom(3 * blobs.CHUNK_SIZE + 123)
    asset = tmp_path / "model.bin"
    asset.write_bytes(data)
    journal = str(tmp_path / "run.db")
    with Experiment(journal=journal) as exp:
        first = exp.log_asset(str(asset))
        second = exp.log_asset(str(asset), file_name="copy.bin", step=3)
    assert first["sha256"] == second["sha256"] == hashlib.sha256(data).hexdigest()
    conn = sqlite3.connect(journal)
    assert conn.execute("SELECT count(*) FROM blobs").fetchone()[0] == 1
    assert conn.execute("SELECT count(*) FROM chunks").fetchone()[0] == 4
    assert b"".join(blobs.iter_chunks(conn, first["sha256"])) == data
    payloads = [r["payload"] for r in rows(journal, "upload_asset")]
    assert [p["fileName"] for p in payloads] == ["model.bin", "copy.bin"]
    assert payloads[1]["step"] == 3 and payloads[0]["extension"] == "bin"


def test_large_file_is_journaled_with_bounded_memory(tmp_path):
    size = 24 * blobs.CHUNK_SIZE
    asset = tmp_path / "big.bin"
    with open(asset, "wb") as fh:
        for i in range(24):
            fh.write(bytes([i]) * blobs.CHUNK_SIZE)
    journal = str(tmp_path / "run.db")
    exp = Experiment(journal=journal)
    tracemalloc.start()
    ref = exp.log_asset(str(asset))
    _current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    exp.end()
    assert ref["size"] == size
    assert peak < 6 * blobs.CHUNK_SIZE  # a few chunks, not the 24 MiB file
    conn = sqlite_connect(journal, readonly=True)
    reader = blobs.BlobReader(conn, ref["sha256"])
    digest = hashlib.sha256()
    while True:
        piece = reader.read(100_000)
        if not piece:
            break
        digest.update(piece)
    assert digest.hexdigest() == ref["sha256"] and len(reader) == size


def test_tampered_or_missing_chunks_are_detected(tmp_path):
    journal = str(tmp_path / "run.db")
    with Experiment(journal=journal) as exp:
        ref = exp.log_asset_data(os.urandom(2 * blobs.CHUNK_SIZE), name="x.bin")
    conn = sqlite3.connect(journal, isolation_level=None)
    conn.execute("UPDATE chunks SET data = zeroblob(10) WHERE id = (SELECT min(id) FROM chunks)")
    with pytest.raises(blobs.MissingBlobError, match="does not match"):
        blobs.read_blob(conn, ref["sha256"])
    conn.execute("DELETE FROM chunks WHERE id = (SELECT min(id) FROM chunks)")
    with pytest.raises(blobs.MissingBlobError, match="missing"):
        blobs.read_blob(conn, ref["sha256"])
    with pytest.raises(blobs.MissingBlobError, match="not in the journal"):
        blobs.read_blob(conn, "0" * 64)


def test_asset_is_captured_when_the_call_returns(tmp_path):
    asset = tmp_path / "a.txt"
    asset.write_text("version 1")
    journal = str(tmp_path / "run.db")
    with Experiment(journal=journal) as exp:
        ref = exp.log_asset(str(asset))
        asset.write_text("version 2, changed right after logging")
        os.unlink(asset)
    conn = sqlite3.connect(journal)
    assert blobs.read_blob(conn, ref["sha256"]) == b"version 1"


def test_git_patch_is_a_zip_holding_git_diff_patch(tmp_path):
    journal = str(tmp_path / "run.db")
    patch = "diff --git a/f b/f\n+new line\n"
    with Experiment(journal=journal) as exp:
        exp.log_git_patch(patch)
        exp.log_git_patch(patch)
    refs = [r["payload"]["file"]["$blob"] for r in rows(journal, "upload_git_patch")]
    assert refs[0] == refs[1]  # deterministic zip: logged twice, stored once
    data = blobs.read_blob(sqlite3.connect(journal), refs[0])
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.namelist() == ["git_diff.patch"]
        assert zf.read("git_diff.patch").decode() == patch


def test_file_objects_text_and_binary(tmp_path):
    journal = str(tmp_path / "run.db")
    with Experiment(journal=journal) as exp:
        a = exp.log_asset(io.BytesIO(b"binary bytes"), file_name="b.bin")
        b = exp.log_asset(io.StringIO("text"), file_name="t.txt")
    conn = sqlite3.connect(journal)
    assert blobs.read_blob(conn, a["sha256"]) == b"binary bytes"
    assert blobs.read_blob(conn, b["sha256"]) == b"text"
