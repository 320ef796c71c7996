"""``comet-upload`` against bad journals: the real CLI in a subprocess, a real emulator.

Every bad journal of ``tests/bad_journals.py`` (truncated, noise, foreign SQLite, newer
format, altered rows, missing asset chunks and blobs) is refused with exit 1 and an error
naming the file and the problem (and the damaged call by seq), before anything is sent or
written: the file keeps its bytes, no file appears beside it, the server sees no request.
A journal locked by another process is refused the same way after ``--busy-timeout``, and
uploads normally when the lock goes away in time. A blob whose *bytes* were altered (found
only while streaming them) stops the upload naming the call, and nothing unsent is marked.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3

import pytest

from bad_journals import BAD_JOURNALS, good_journal, hold_locked, _the_big_asset
from test_upload_support import assert_server_matches, run_cli, upload


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    return good_journal(tmp_path_factory.mktemp("good") / "good.db")


@pytest.fixture
def journals(tmp_path):
    """A directory holding only the journal under test (the emulator's files live apart)."""
    d = tmp_path / "journals"
    d.mkdir()
    return d


def _digest(path) -> str:
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def _listing(directory) -> dict[str, int]:
    return {name: os.path.getsize(os.path.join(directory, name))
            for name in sorted(os.listdir(directory))}


def _assert_refused(proc, path, words, emulator) -> None:
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "Error: " in proc.stderr and str(path) in proc.stderr, proc.stderr
    for word in words:
        assert word in proc.stderr, (word, proc.stderr)
    state = emulator.state()
    assert state["requests"]["total"] == 0 and state["applied"] == []  # nothing sent


@pytest.mark.parametrize("bad", BAD_JOURNALS, ids=[b.name for b in BAD_JOURNALS])
def test_a_bad_journal_is_refused_clearly_and_left_untouched(bad, good, journals, emulator):
    path = journals / "run.db"
    seq = bad.make(str(path), good)
    before, files = _digest(path), _listing(journals)
    proc = upload(emulator, path, "--busy-timeout", "1")
    _assert_refused(proc, path, bad.words, emulator)
    if bad.seq:
        assert f"call {seq} " in proc.stderr, proc.stderr
    assert _digest(path) == before, "the journal's bytes changed"
    assert _listing(journals) == files, "files appeared or changed beside the journal"


def test_json_summary_names_the_file_and_problem(good, journals, emulator):
    bad = next(b for b in BAD_JOURNALS if b.name == "payload-not-json")
    path = journals / "run.db"
    seq = bad.make(str(path), good)
    proc = upload(emulator, path, "--json")
    assert proc.returncode == 1
    result = json.loads(proc.stdout)
    assert result["exit_code"] == 1
    error = result["journals"][0]["error"]
    assert str(path) in error and f"call {seq} " in error and "not valid JSON" in error


def test_every_damaged_call_is_counted_and_the_first_are_named(good, journals, emulator):
    path = journals / "run.db"
    shutil.copyfile(good, path)
    conn = sqlite3.connect(path, isolation_level=None)
    seqs = [r[0] for r in conn.execute(
        "SELECT seq FROM calls WHERE endpoint='log_metric' ORDER BY seq LIMIT 8")]
    conn.executemany("UPDATE calls SET payload='oops' WHERE seq=?", [(s,) for s in seqs])
    conn.close()
    proc = upload(emulator, path)
    _assert_refused(proc, path, ["8 damaged calls", "and 3 more"], emulator)
    for s in seqs[:5]:
        assert f"call {s} " in proc.stderr


def test_a_good_copy_uploads_after_the_damaged_one_was_refused(good, journals, emulator):
    """Refusing wrote nothing: the same file, repaired, uploads everything exactly once."""
    path = journals / "run.db"
    bad = next(b for b in BAD_JOURNALS if b.name == "payload-wrong-type")
    seq = bad.make(str(path), good)
    assert upload(emulator, path).returncode == 1
    conn = sqlite3.connect(good)
    original = conn.execute("SELECT payload FROM calls WHERE seq=?", (seq,)).fetchone()[0]
    conn.close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE calls SET payload=? WHERE seq=?", (original, seq))
    conn.commit()
    conn.close()
    assert upload(emulator, path).returncode == 0
    assert_server_matches(emulator, str(path))


# --- locked by another process -------------------------------------------------------------

def test_a_journal_locked_too_long_is_refused_clearly(good, journals, emulator):
    path = journals / "run.db"
    shutil.copyfile(good, path)
    with hold_locked(path, seconds=20) as holder:
        before = _digest(path)  # as the holder left it (a rollback journal, locked)
        files = _listing(journals)  # the holder's side files are there while it holds it
        proc = upload(emulator, path, "--busy-timeout", "0.5", timeout=30)
        _assert_refused(proc, path, ["locked by another process", "--busy-timeout"],
                        emulator)
        assert _listing(journals) == files  # no upload lock file, nothing else
        holder.kill()
    assert _digest(path) == before


def test_a_journal_unlocked_soon_just_uploads(good, journals, emulator):
    path = journals / "run.db"
    shutil.copyfile(good, path)
    with hold_locked(path, seconds=1.5):
        proc = upload(emulator, path, "--json", timeout=60)  # default busy timeout: 30 s
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["journals"][0]["rejected"] == 0
    assert_server_matches(emulator, str(path))


# --- damage found only while streaming: an asset's bytes altered -----------------------------

def test_altered_asset_bytes_stop_the_upload_naming_the_call(good, journals, emulator):
    path = journals / "run.db"
    shutil.copyfile(good, path)
    seq, sha = _the_big_asset(str(path))
    conn = sqlite3.connect(path, isolation_level=None)
    chunk_id, original = conn.execute(
        "SELECT c.id, c.data FROM chunks c JOIN blob_parts p ON p.chunk_id=c.id WHERE "
        "p.blob_sha256=? AND p.idx=1", (sha,)).fetchone()
    conn.execute("UPDATE chunks SET data=? WHERE id=?",
                 (bytes(b ^ 0xFF for b in original[:64]) + original[64:], chunk_id))
    conn.close()
    proc = upload(emulator, path, "--concurrency", "1")
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    for words in (str(path), f"call {seq} ", "MissingBlobError", "does not match its hash"):
        assert words in proc.stderr, (words, proc.stderr)
    # the damaged asset is not on the server, nor marked uploaded
    assert not [a for a in emulator.state()["applied"]
                if a["endpoint"] in ("upload_asset", "clientlib_asset_upload")
                and a["fields"].get("file", {}).get("sha256") == sha]
    status = run_cli("status", "--url", emulator.url, "--json", path, check=0)
    report = json.loads(status.stdout)["journals"][0]
    assert report["pending"] >= 1 and report["last_error"] and f"call {seq} " in \
        report["last_error"]
    pending = {ep for e in report["experiments"] for ep in e["per_endpoint"]}
    assert "upload_asset" in pending
    # repaired, the rest goes up exactly once
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("UPDATE chunks SET data=? WHERE id=?", (original, chunk_id))
    conn.close()
    assert upload(emulator, path).returncode == 0
    assert_server_matches(emulator, str(path))


# --- no false alarms --------------------------------------------------------------------------

def test_every_kind_of_call_passes_the_check(tmp_path):
    """A journal holding every catalogue endpoint (the recorder's own walk), odd but legal
    values included, is not refused: the check's fast SQL filter only picks rows for the
    authoritative Python check, which decides."""
    from comet_journal import Experiment, Project
    from test_recorder_api import EXPERIMENT_CALLS, PROJECT_CALLS
    from comet_journal.uploader.journal.integrity import verify_journal
    asset = tmp_path / "weights.bin"
    asset.write_bytes(os.urandom(3000))
    journal = str(tmp_path / "walk.db")
    with Experiment(journal=journal, project_name="p", workspace="w") as exp:
        for call in EXPERIMENT_CALLS.values():
            if call is not None:
                call(exp, asset)
        exp.log_metric("huge-step", 1.0, step=2 ** 70)  # not an SQLite integer any more
        exp.log_metric("text", "a text value", step=1)
        exp.log_metric("nan", float("nan"), step=2)
        exp.log_parameter("list", [1, "a", True])
        exp.log_other("unicode", "é ☃ \"quoted\"")
    with Project(journal=journal, workspace="w", project_name="p") as project:
        for call in PROJECT_CALLS.values():
            call(project)
    verify_journal(journal)  # raises if anything is refused
    verify_journal(journal, "http://x|ws=|project=")  # a target that uploaded nothing yet
