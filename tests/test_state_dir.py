"""Upload progress lives in the uploader's state directory, never in journals or beside them.

A journal directory mounted read-only (a user namespace with a read-only bind mount, or a
chmod when not root) uploads, by ``comet-upload`` and by the daemon, and not a byte of it
changes; progress a format-2 journal kept inside itself is imported once, read-only.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import signal
import sqlite3
import subprocess
import time

import pytest

from comet_journal.uploader.config import resolve
from comet_journal.uploader.journal.progress_store import (lock_file_path, open_progress_view,
                                                           progress_db_path)
from comet_journal.uploader.replay.summary import Options
from comet_journal.uploader.upload import upload_journal
from comet_journal.uploader.wire.retry import RetryPolicy
from test_upload_support import (CLI, FAST, KEY, ROOT, assert_server_matches, make_journal,
                                 run_cli)


def _dir_digest(directory) -> dict[str, str]:
    """Every file under ``directory`` (names and contents)."""
    out = {}
    for root, _dirs, files in os.walk(directory):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, directory)] = hashlib.sha256(f.read()).hexdigest()
    return out


def _read_only_prefix(directory) -> list[str]:
    """A command prefix that runs a command with ``directory`` read-only, or skips."""
    if os.geteuid() != 0:
        os.chmod(directory, 0o555)
        return []
    d = shlex.quote(str(directory))
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount --bind {d} {d} && mount -o "
                            f"remount,bind,ro {d} && ! touch {d}/.probe"],
                           capture_output=True, text=True)
    if probe.returncode != 0 or os.path.exists(os.path.join(directory, ".probe")):
        pytest.skip(f"no read-only bind mount here (unshare -rm: {probe.stderr.strip()!r})")
    return ["unshare", "-rm", "sh", "-c", f"mount --bind {d} {d} && mount -o remount,bind,ro "
            f"{d} && exec \"$@\"", "sh"]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMET_")}
    env.update(PYTHONPATH=ROOT, COMET_JOURNAL_AUTO_LOG="0")
    return env


def test_a_read_only_journal_directory_uploads_and_does_not_change(emulator, tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    path = make_journal(runs / "run.db", experiments=2, points=20)
    before = _dir_digest(runs)
    prefix = _read_only_prefix(runs)
    proc = subprocess.run([*prefix, *CLI, "--url", emulator.url, "--api-key", KEY, *FAST,
                           path], capture_output=True, text=True, env=_env(), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert _dir_digest(runs) == before  # no lock file, no -wal/-shm, no byte of the journal
    assert os.path.exists(progress_db_path(path)) and os.path.exists(lock_file_path(path))
    assert_server_matches(emulator, path)
    again = subprocess.run([*prefix, *CLI, "--url", emulator.url, "--api-key", KEY, *FAST,
                            "--json", path], capture_output=True, text=True, env=_env(),
                           timeout=60)
    assert again.returncode == 0, again.stderr
    assert '"uploaded": 0' in again.stdout  # the progress was kept: nothing sent twice
    assert_server_matches(emulator, path)
    assert _dir_digest(runs) == before


def test_the_daemon_uploads_a_read_only_directory_without_changing_it(emulator, tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    paths = [make_journal(runs / f"run{i}.db", points=15) for i in range(2)]
    before = _dir_digest(runs)
    prefix = _read_only_prefix(runs)
    daemon = subprocess.Popen([*prefix, *CLI, "watch", "--url", emulator.url, "--api-key", KEY,
                               *FAST, "--poll", "0.3", str(runs)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=_env())
    try:
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and not _all_uploaded(emulator, paths):
            time.sleep(0.3)
    finally:
        daemon.send_signal(signal.SIGTERM)
        _out, err = daemon.communicate(timeout=20)
    for path in paths:
        assert_server_matches_among(emulator, path, paths)
    assert daemon.returncode == 0, err
    assert _dir_digest(runs) == before


def _all_uploaded(emu, paths) -> bool:
    try:
        for path in paths:
            assert_server_matches_among(emu, path, paths)
    except AssertionError:
        return False
    return True


def assert_server_matches_among(emu, path, paths) -> None:
    """``path``'s experiments are on the server exactly once (the others' are ignored)."""
    from collections import Counter

    from comet_journal.emulator.compare import applied_item_list, journal_item_list
    want = Counter(journal_item_list(str(path)))
    keys = {item[0] for item in want}
    have = Counter(i for i in applied_item_list(emu.state()) if i[0] in keys
                   and i[1:] != ("keepalive",))
    have = Counter({k: v for k, v in have.items() if k[1] != "experiment_keepalive"})
    assert None not in keys and want == have, (want - have, have - want)


def test_progress_kept_inside_a_format_2_journal_is_imported_once_read_only(emulator_factory,
                                                                           tmp_path):
    emulator = emulator_factory(faults={"rules": [{"route": "*", "kind": "latency", "ms": 20}]})
    path = make_journal(tmp_path / "run.db", experiments=2, points=40)
    cfg = resolve(url=emulator.url, api_key=KEY, environ={})
    stop_after = Options(policy=RetryPolicy(base_s=0.01, cap_s=0.05), concurrency=2,
                         time_slice_s=0.3)
    first = upload_journal(path, cfg, stop_after)
    assert first.more_pending and first.uploaded > 0
    # What an older comet-journal kept inside the journal: this progress, moved there.
    state = progress_db_path(path)
    conn = sqlite3.connect(path)
    conn.execute("ATTACH DATABASE ? AS s", (state,))
    for table in ("upload_targets", "upload_experiments", "upload_state", "upload_projects"):
        conn.execute(f"INSERT INTO main.{table} SELECT * FROM s.{table}")
    conn.commit()
    conn.close()
    shutil.rmtree(os.path.dirname(os.path.dirname(state)))
    shown = open_progress_view(path)  # a report sees it before any upload imports it
    legacy_acked = shown.execute("SELECT acked_through FROM upload_targets").fetchone()[0]
    shown.close()
    assert legacy_acked > 0
    with open(path, "rb") as f:
        before = hashlib.sha256(f.read()).hexdigest()
    rest = upload_journal(path, cfg, Options(policy=RetryPolicy(base_s=0.01, cap_s=0.05)))
    assert not rest.more_pending and rest.found_by_readback == 0
    assert first.uploaded + rest.uploaded == first.pending  # it went on where it was
    assert_server_matches(emulator, path)
    with open(path, "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == before
    imported = sqlite3.connect(progress_db_path(path))
    acked = imported.execute("SELECT acked_through FROM upload_targets").fetchone()[0]
    imported.close()
    assert acked >= legacy_acked


def test_two_uploaders_of_one_journal_share_a_lock_in_the_state_directory(emulator, tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    path = make_journal(runs / "run.db", points=5)
    holder = subprocess.Popen(
        [*CLI[:1], "-c", "import fcntl, os, sys, time\n"
         "from comet_journal.uploader.journal.lock import UploadLock\n"
         "lock = UploadLock(sys.argv[1], sys.argv[2]).acquire()\n"
         "print('held', flush=True); time.sleep(30)", path,
         resolve(url=emulator.url, api_key=KEY, environ={}).identity],
        stdout=subprocess.PIPE, text=True, env=dict(_env(), COMET_JOURNAL_STATE=os.environ[
            "COMET_JOURNAL_STATE"]), cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == "held"
        proc = run_cli("--url", emulator.url, "--api-key", KEY, *FAST, path)
        assert proc.returncode != 0 and "another comet-upload" in proc.stderr
        assert os.listdir(runs) == ["run.db"]  # no lock file beside the journal
    finally:
        holder.kill()
        holder.wait()
    assert run_cli("--url", emulator.url, "--api-key", KEY, *FAST, path).returncode == 0
    assert_server_matches(emulator, path)
