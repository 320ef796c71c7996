"""The real daemon, its journal directory mounted read-only in a private mount namespace,
while real recorders write outside it with segments on: it reads sealed segments only (never
a live journal's ``-shm``), uploads an ended run exactly once and marks it uploaded, and
delivers a SIGKILLed run up to a second before the kill without marking it finished."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

from comet_journal.emulator.compare import applied_item_list, journal_item_list
from comet_journal.schema.segments import ENDED_FILE_NAME, segments_dir
from comet_journal.uploader.journal.mirror import mirror_path
from test_state_dir import _read_only_prefix
from test_upload_support import CLI, FAST, KEY, ROOT, make_journal

WRITER = r"""
import sys, time
from comet_journal import Experiment
path, seconds = sys.argv[1], float(sys.argv[2])
exp = Experiment(journal=path, project_name="p", workspace="w")
step, started = 0, time.monotonic()
while seconds <= 0 or time.monotonic() - started < seconds:
    for _ in range(10):
        exp.log_metric("loss", 1.0 / (step + 1), step=step)
        step += 1
    exp.flush()
    print(step - 1, flush=True)
    time.sleep(0.05)
exp.end()
print("ended", flush=True)
"""


def _writer(path, seconds):
    env = dict(os.environ, PYTHONPATH=ROOT, COMET_JOURNAL_SEGMENTS="1")
    return subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(seconds)],
                            stdout=subprocess.PIPE, text=True, env=env)


def _opened_under(pid: int, directory: str) -> set[str]:
    """Files under ``directory`` the process has mapped or open now."""
    seen = set()
    try:
        with open(f"/proc/{pid}/maps") as f:
            seen |= {line.split()[-1] for line in f if directory in line}
        for fd in os.listdir(f"/proc/{pid}/fd"):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith(directory):
                seen.add(target)
    except OSError:
        pass
    return seen


def _polling_daemon(emulator, runs, stderr, *extra):
    """``comet-upload watch --poll 0.3 --json-log`` on ``runs``, its events to ``stderr``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMET_")}
    env.update(PYTHONPATH=ROOT, COMET_JOURNAL_AUTO_LOG="0")
    return subprocess.Popen([*CLI, "watch", "--url", emulator.url, "--api-key", KEY, *FAST,
                             "--poll", "0.3", *extra, "--json-log", str(runs)],
                            stderr=stderr, text=True, env=env)


def _on_server(emu, path) -> tuple[Counter, Counter]:
    copy = mirror_path(segments_dir(str(path)))
    want = Counter(journal_item_list(copy)) if os.path.exists(copy) else Counter()
    keys = {item[0] for item in want}
    have = Counter(i for i in applied_item_list(emu.state()) if i[0] in keys)
    return want, have


def test_the_daemon_tails_sealed_runs_from_a_read_only_mount(emulator, tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    ended, killed = runs / "ended.db", runs / "killed.db"
    a, b = _writer(ended, 1.5), _writer(killed, 0)
    assert a.stdout.readline() and b.stdout.readline()  # both journals exist
    prefix = _read_only_prefix(runs)
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMET_")}
    env.update(PYTHONPATH=ROOT, COMET_JOURNAL_AUTO_LOG="0")
    daemon = subprocess.Popen([*prefix, *CLI, "watch", "--url", emulator.url, "--api-key", KEY,
                               *FAST, "--poll", "0.3", "--rescan", "0.5", "--stale-after", "2",
                               "--json-log", str(runs)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env)
    opened: set[str] = set()
    committed: list[tuple[float, int]] = []
    try:
        started = time.monotonic()
        while time.monotonic() - started < 2.0:
            line = b.stdout.readline()
            committed.append((time.monotonic(), int(line)))
            opened |= _opened_under(daemon.pid, str(runs))
        killed_at = time.monotonic()
        b.send_signal(signal.SIGKILL)
        b.wait()
        assert a.wait(timeout=30) == 0
        deadline = time.monotonic() + 40
        due = max(step for at, step in committed if at < killed_at - 1.0)
        while time.monotonic() < deadline:
            opened |= _opened_under(daemon.pid, str(runs))
            want_a, have_a = _on_server(emulator, ended)
            want_b, have_b = _on_server(emulator, killed)
            steps_b = {i[4] for i in have_b if i[1] == "metric"}
            if want_a and want_a == have_a and want_b == have_b and \
                    set(range(due + 1)) <= steps_b:
                break
            time.sleep(0.3)
        time.sleep(3.0)  # long enough for the killed run to be judged stale
    finally:
        daemon.send_signal(signal.SIGTERM)
        _out, err = daemon.communicate(timeout=20)
        for proc in (a, b):
            if proc.poll() is None:
                proc.kill()
    assert want_a and want_a == have_a, (want_a - have_a, have_a - want_a)  # exactly once
    assert want_b == have_b, (want_b - have_b, have_b - want_b)
    assert set(range(due + 1)) <= steps_b  # committed a second before the kill: delivered
    assert not any(p.endswith(("-shm", "-wal")) or p.endswith(".db") for p in opened), opened
    events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    states = {(e.get("journal"), e.get("state")) for e in events}
    assert (str(ended), "uploaded") in states, err[-2000:]
    assert (str(killed), "uploaded") not in states
    assert (str(killed), "stale") in states, err[-2000:]


def test_a_run_whose_end_is_sealed_after_the_daemons_turn_is_still_marked_uploaded(
        emulator, tmp_path):
    # The writer seals its last segment, then writes the end marker: a daemon turn between
    # the two sees every call but no end. The end then arrives with no new call, and a later
    # scan must still give the run its final turn (it was left "live" for ever before).
    runs = tmp_path / "runs"
    runs.mkdir()
    path = runs / "run.db"
    writer = _writer(path, 0.3)
    assert writer.wait(timeout=30) == 0
    marker = os.path.join(segments_dir(str(path)), ENDED_FILE_NAME)
    held = tmp_path / "ended-marker"
    os.replace(marker, held)  # as if the daemon looked before the writer wrote it
    daemon = _polling_daemon(emulator, runs, subprocess.PIPE, "--rescan", "0.5")
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # everything sent, the run taken as live
            want, have = _on_server(emulator, path)
            if want and want == have:
                break
            time.sleep(0.2)
        time.sleep(1.0)
        os.replace(held, marker)  # the end is sealed now, with no call after it
        time.sleep(3.0)
    finally:
        daemon.send_signal(signal.SIGTERM)
        _out, err = daemon.communicate(timeout=20)
    events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    states = [e.get("state") for e in events if e.get("journal") == str(path)]
    assert want and want == have, (want - have, have - want)
    assert "live" in states, err[-2000:]  # judged live while the end was not sealed
    assert states[-1] == "uploaded", err[-2000:]


def test_a_one_shot_upload_reads_a_live_sealed_run_through_its_private_copy(emulator,
                                                                           tmp_path):
    # `comet-upload run.db` on a transfer node while the run is written elsewhere: the
    # journal (with its -wal) is never opened; the sealed segments are read through a
    # private copy, and a later upload after the end sends the rest, nothing twice.
    runs, state = tmp_path / "runs", tmp_path / "state"
    runs.mkdir()
    path = runs / "run.db"
    writer = _writer(path, 0)  # writes until told to stop
    assert writer.stdout.readline()
    time.sleep(1.5)  # a few seals
    prefix = _read_only_prefix(runs)
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMET_")}
    env.update(PYTHONPATH=ROOT, COMET_JOURNAL_AUTO_LOG="0")
    command = [*prefix, *CLI, "upload", "--url", emulator.url, "--api-key", KEY, *FAST,
               "--state", str(state), str(path)]
    try:
        live = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
        assert os.path.exists(str(path) + "-wal") and writer.poll() is None  # still writing
    finally:
        writer.send_signal(signal.SIGTERM)  # the recorder seals and records the end
        writer.wait(timeout=30)
    assert os.path.exists(os.path.join(segments_dir(str(path)), ENDED_FILE_NAME))
    assert live.returncode == 0, live.stderr[-2000:]
    assert "read through a private copy" in live.stderr, live.stderr[-2000:]
    copy = mirror_path(segments_dir(str(path)), str(state))
    sent_live = {a["fields"]["step"] for a in emulator.state()["applied"]
                 if a["endpoint"] == "log_metric"}
    assert sent_live  # what was sealed while the run was live
    after = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    assert after.returncode == 0, after.stderr[-2000:]
    want = Counter(journal_item_list(copy, str(state)))
    have = Counter(applied_item_list(emulator.state()))
    assert want == have, (want - have, have - want)  # every call once, after the end
    steps = {i[4] for i in have if i[1] == "metric"}
    assert steps == set(range(max(steps) + 1)) and max(steps) > max(sent_live)


def test_a_sealed_run_whose_live_file_reads_torn_is_uploaded_from_its_segments(emulator,
                                                                              tmp_path):
    # Across hosts the live journal may read torn (zeros where pages are not yet visible):
    # the daemon judges a sealed run by its segments, never by that file's header.
    runs = tmp_path / "runs"
    runs.mkdir()
    path = runs / "run.db"
    assert _writer(path, 0.3).wait(timeout=30) == 0
    with open(path, "r+b") as f:
        f.write(b"\0" * 100)  # the SQLite header, as a torn read shows it
    log = tmp_path / "daemon.log"

    def states():
        return [json.loads(line).get("state") for line in log.read_text().splitlines()
                if line.startswith("{") and json.loads(line).get("journal") == str(path)]

    with open(log, "w") as log_file:
        daemon = _polling_daemon(emulator, runs, log_file)
        try:  # until everything is on the server and the run is marked uploaded (or 30 s)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                want, have = _on_server(emulator, path)
                if want and want == have and "uploaded" in states():
                    break
                time.sleep(0.2)
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=20)
    assert want and want == have, (want - have, have - want)
    assert states() and states()[-1] == "uploaded", log.read_text()[-2000:]


def test_a_run_found_before_its_first_seal_waits_and_is_uploaded_at_the_seal(emulator,
                                                                             tmp_path):
    # A directory run's segments directory exists from its first call, its first segment up
    # to a second later: the daemon finds it in between, says it waits, looks again in 2 s,
    # and uploads it once sealed (a NameError on that path once cost every new run 10 s).
    from comet_journal.recorder.sealing import Sealer
    runs = tmp_path / "runs"
    runs.mkdir()
    path = runs / "run.db"
    make_journal(path, points=5)
    os.makedirs(segments_dir(str(path)))
    log = tmp_path / "daemon.log"

    def events():
        return [json.loads(line) for line in log.read_text().splitlines()
                if line.startswith("{")]

    with open(log, "w") as log_file:
        daemon = _polling_daemon(emulator, runs, log_file)
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not any(
                    e.get("state") == "waiting" for e in events()):
                time.sleep(0.1)
            sealed_at = time.monotonic()
            Sealer(str(path)).seal_now()
            while time.monotonic() < deadline:
                want, have = _on_server(emulator, path)
                if want and want == have:
                    break
                time.sleep(0.1)
            uploaded_after = time.monotonic() - sealed_at
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=20)
    waiting = [e for e in events() if e.get("state") == "waiting"]
    assert waiting and "retry in 2s" in waiting[0]["message"], log.read_text()[-2000:]
    assert not [e for e in events() if e.get("level") == "error"], log.read_text()[-2000:]
    assert want and want == have, (want - have, have - want)
    assert uploaded_after < 9, uploaded_after  # at the next look, not the 10 s error retry
