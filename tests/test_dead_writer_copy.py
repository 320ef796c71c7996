"""A journal that does not seal segments, its writer SIGKILLed, in a directory the daemon
sees read-only: the daemon waits while the writer may be live, then (no change for
--stale-after on its own clock) uploads a private byte copy of the journal and its -wal,
never opening the live file in place, and never marks the run finished."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter

from comet_journal.emulator.compare import applied_item_list, journal_item_list
from comet_journal.uploader.journal.private_copy import PrivateCopy, copy_path
from test_segments_daemon import WRITER, _opened_under
from test_state_dir import _read_only_prefix
from test_upload_support import CLI, FAST, KEY, ROOT, run_cli


def test_a_killed_writers_journal_is_uploaded_from_a_private_copy(emulator, tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    path = runs / "killed.db"
    env = dict(os.environ, PYTHONPATH=ROOT, COMET_JOURNAL_SEGMENTS="0")
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path), "0"],
                              stdout=subprocess.PIPE, text=True, env=env)
    assert writer.stdout.readline()
    prefix = _read_only_prefix(runs)
    daemon_env = {k: v for k, v in os.environ.items() if not k.startswith("COMET_")}
    daemon_env.update(PYTHONPATH=ROOT, COMET_JOURNAL_AUTO_LOG="0",
                      COMET_JOURNAL_STATE=os.environ["COMET_JOURNAL_STATE"])
    daemon = subprocess.Popen([*prefix, *CLI, "watch", "--url", emulator.url, "--api-key", KEY,
                               *FAST, "--poll", "0.3", "--rescan", "0.5", "--stale-after", "2",
                               "--json-log", str(runs)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=daemon_env)
    opened: set[str] = set()
    try:
        started = time.monotonic()
        while time.monotonic() - started < 2.0:
            writer.stdout.readline()
            opened |= _opened_under(daemon.pid, str(runs))
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        assert os.path.getsize(str(path) + "-wal") > 0  # killed: its last commits in the WAL
        copy = PrivateCopy(str(path), copy_path(str(path)))
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            opened |= _opened_under(daemon.pid, str(runs))
            want, have = _on_server(emulator, copy.path)
            if want and have == want:
                break
            time.sleep(0.3)
        time.sleep(1.0)
        opened |= _opened_under(daemon.pid, str(runs))
    finally:
        daemon.send_signal(signal.SIGTERM)
        _out, err = daemon.communicate(timeout=20)
        if writer.poll() is None:
            writer.kill()
    assert want and have == want, (want - have, have - want, err[-3000:])  # exactly once
    assert not opened, opened  # never the journal, its -wal or -shm
    assert copy.current()  # what was uploaded: the copy, made after the writer was gone
    status = run_cli("status", "--json", "--url", emulator.url, "--stale-after", "2", runs,
                     env={"COMET_JOURNAL_STATE": os.environ["COMET_JOURNAL_STATE"]})
    shown = json.loads(status.stdout)["journals"][0]  # the progress of the copy uploaded
    assert shown["pending"] == 0 and shown["state"] == "stale", shown
    assert want == Counter(journal_item_list(copy.path))
    assert _calls(copy.path) == _calls(path) > 50  # every committed call, the WAL's too
    # (this test's read-write open of the journal just folded its -wal in: checked last)
    events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    states = {e.get("state") for e in events if e.get("journal") == str(path)}
    assert "stale" in states and "uploaded" not in states, err[-2000:]


def _on_server(emu, copy) -> tuple[Counter, Counter]:
    want = Counter(journal_item_list(copy)) if os.path.exists(copy) else Counter()
    keys = {item[0] for item in want}
    return want, Counter(i for i in applied_item_list(emu.state()) if i[0] in keys)


def _calls(path) -> int:
    """Calls a journal holds (its WAL included), read by this test."""
    conn = sqlite3.connect(str(path))
    try:
        return conn.execute("SELECT count(*) FROM calls").fetchone()[0]
    finally:
        conn.close()


def test_a_writer_back_after_being_judged_gone_loses_and_duplicates_nothing(emulator,
                                                                           tmp_path):
    """Read through a copy while its writer is gone, in place once it writes again (a
    writable directory, this host): the progress follows, so nothing is sent twice."""
    from comet_journal.uploader.config import resolve
    from comet_journal.uploader.replay.summary import Options
    from comet_journal.uploader.upload import upload_journal
    from comet_journal.uploader.watch.sources import RunSources
    from comet_journal.uploader.wire.retry import RetryPolicy
    from test_upload_support import assert_server_matches

    path = str(tmp_path / "run.db")
    key = "b" * 32
    _killed_writer(path, key)
    sources = RunSources(None, stale_after_s=0.5)
    time.sleep(0.6)
    first = sources.upload_path(path)
    assert first == copy_path(path)  # nothing changed for 0.5 s: its writer is gone
    cfg = resolve(url=emulator.url, api_key=KEY, environ={})
    options = Options(policy=RetryPolicy(base_s=0.01, cap_s=0.05))
    assert upload_journal(first, cfg, options).uploaded > 0
    _killed_writer(path, key)  # the writer comes back, writes more, dies again
    assert sources.upload_path(path) == path  # changed just now: live, read in place
    again = upload_journal(path, cfg, options)
    assert again.uploaded > 0 and again.found_by_readback == 0  # went on where the copy was
    assert_server_matches(emulator, path)
    time.sleep(0.6)
    assert sources.upload_path(path) == copy_path(path)  # gone again: a fresh copy
    assert _calls(copy_path(path)) == _calls(path)
    assert upload_journal(copy_path(path), cfg, options).uploaded == 0


def _killed_writer(path: str, key: str) -> None:
    """A recorder continuing experiment ``key`` in ``path``, SIGKILLed after a few flushes
    (its last commits left in the -wal)."""
    script = WRITER.replace("experiment_key=None", "").replace(
        'Experiment(journal=path,', f'Experiment(journal=path, experiment_key="{key}",')
    env = dict(os.environ, PYTHONPATH=ROOT, COMET_JOURNAL_SEGMENTS="0",
               COMET_JOURNAL_AUTO_LOG="0")
    writer = subprocess.Popen([sys.executable, "-c", script, path, "0"],
                              stdout=subprocess.PIPE, text=True, env=env)
    for _ in range(3):
        assert writer.stdout.readline()
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    assert os.path.getsize(path + "-wal") > 0
