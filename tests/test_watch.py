"""comet-upload watch, end to end: real recorder processes write journals into a watched
directory, a real daemon process uploads them to a real emulator."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from test_upload_support import (CLI, KEY, ROOT, applied_items, journal_items, make_journal,
                                 run_cli)

FAST = ["--no-batch", "--backoff-base", "0.01", "--backoff-cap", "0.2", "--rescan", "0.5",
        "--time-slice", "2"]

LIVE_WRITER = """
import sys, time
from comet_journal import Experiment
exp = Experiment(journal=sys.argv[1], project_name="proj", workspace="ws",
                 experiment_name=sys.argv[2], flush_interval=0.05)
print("started", flush=True)
deadline = time.time() + float(sys.argv[3])
i = 0
while time.time() < deadline:
    exp.log_metric("loss", 1.0 / (i + 1), step=i)
    if i % 20 == 0:
        exp.log_parameter("lr", 1.0 / (i + 1))
    i += 1
    time.sleep(0.01)
if sys.argv[4] == "end":
    exp.end()
else:
    exp.flush()
    import os; os._exit(0)  # dies without ending the run
"""


def start_daemon(emu, directory, *extra, json_log=False):
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMET_")}
    env.update(PYTHONPATH=ROOT, COMET_JOURNAL_AUTO_LOG="0")
    args = [*CLI, "watch", "--url", emu.url, "--api-key", KEY, *FAST, *extra, str(directory)]
    if json_log:
        args.insert(len(CLI) + 1, "--json-log")
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=ROOT)


def start_writer(path, name, seconds, end=True):
    return subprocess.Popen([sys.executable, "-c", LIVE_WRITER, str(path), name, str(seconds),
                             "end" if end else "die"], stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=ROOT))


def stop_daemon(daemon, sig=signal.SIGTERM, timeout=10):
    started = time.monotonic()
    daemon.send_signal(sig)
    out, err = daemon.communicate(timeout=timeout)
    return daemon.returncode, time.monotonic() - started, out, err


def wait_until(predicate, timeout=30.0, interval=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def want(paths) -> Counter:
    total = Counter()
    for p in paths:
        total += journal_items(str(p))
    return total


def journaled_state(emu) -> dict:
    """The emulator's state without the daemon's own keep-alive beats (they are not calls
    of any journal: journaled calls carry an Idempotency-Key, beats do not)."""
    state = emu.state()
    state["applied"] = [a for a in state["applied"] if not (
        a["endpoint"] == "experiment_keepalive" and a["idempotencyKey"] is None)]
    return state


def server_matches(emu, paths) -> bool:
    return applied_items(journaled_state(emu)) == want(paths)


def metric_points(emu) -> int:
    return sum(1 for a in emu.state()["applied"]
               if a["endpoint"] in ("log_metric", "batch_metrics"))


@pytest.mark.parametrize("mode", [[], ["--poll", "0.3"]], ids=["native", "poll"])
def test_existing_new_and_live_journals_reach_the_server_exactly_once(emulator, tmp_path,
                                                                      mode):
    old = make_journal(tmp_path / "old.db", points=30)  # present before the daemon starts
    daemon = start_daemon(emulator, tmp_path, *mode)
    try:
        writer = start_writer(tmp_path / "live.db", "live", seconds=4)
        assert writer.stdout.readline().strip() == "started"
        # Calls reach the server while the recorder is still running.
        assert wait_until(lambda: metric_points(emulator) > 30, timeout=15)
        assert writer.poll() is None, "the live run should still be going"
        new = make_journal(tmp_path / "sub" / "new.db", points=20)  # appears later
        writer.wait(30)
        paths = [old, tmp_path / "live.db", new]
        assert wait_until(lambda: server_matches(emulator, paths), timeout=30), (
            want(paths) - applied_items(journaled_state(emulator)),
            applied_items(journaled_state(emulator)) - want(paths))
        assert emulator.state()["idempotency_replays"] == 0
        status = run_cli("status", "--json", "--url", emulator.url, tmp_path)
        states = {os.path.basename(j["journal"]): j["state"]
                  for j in json.loads(status.stdout)["journals"]}
        assert wait_until(lambda: all(
            j["state"] == "uploaded" for j in json.loads(run_cli(
                "status", "--json", "--url", emulator.url, tmp_path).stdout)["journals"]),
            timeout=15), states
    finally:
        code, took, _out, err = stop_daemon(daemon)
    assert code == 0 and took < 8, err
    assert ("poll events" if mode else "native events") in err


def test_killed_daemon_restarts_without_loss_or_duplicates(emulator, tmp_path):
    paths = [make_journal(tmp_path / f"j{i}.db", points=200) for i in range(3)]
    emulator.set_faults({"rules": [{"kind": "latency", "ms": 5}]})  # make it take a while
    daemon = start_daemon(emulator, tmp_path)
    assert wait_until(lambda: metric_points(emulator) > 50, timeout=20)
    daemon.kill()  # SIGKILL mid-upload
    daemon.wait(10)
    emulator.set_faults({"rules": []})
    daemon = start_daemon(emulator, tmp_path)
    try:
        assert wait_until(lambda: server_matches(emulator, paths), timeout=40), (
            want(paths) - applied_items(emulator.state()))
    finally:
        code, _took, _out, err = stop_daemon(daemon)
    assert code == 0, err


def test_two_daemons_on_one_directory_never_upload_a_call_twice(emulator, tmp_path):
    paths = [make_journal(tmp_path / f"j{i}.db", points=100) for i in range(4)]
    first = start_daemon(emulator, tmp_path)
    second = start_daemon(emulator, tmp_path)
    try:
        assert wait_until(lambda: server_matches(emulator, paths), timeout=40)
        time.sleep(1.0)  # give a duplicate the chance to show up
        assert applied_items(journaled_state(emulator)) == want(paths)
    finally:
        for d in (first, second):
            code, _took, _out, err = stop_daemon(d)
            assert code == 0, err


def test_bad_journals_are_reported_and_skipped(emulator, tmp_path):
    good = make_journal(tmp_path / "good.db", points=20)
    truncated = tmp_path / "truncated.db"
    data = open(make_journal(tmp_path / "t.db", points=300), "rb").read()
    os.unlink(tmp_path / "t.db")
    for side in ("-wal", "-shm"):
        if os.path.exists(str(tmp_path / "t.db") + side):
            os.unlink(str(tmp_path / "t.db") + side)
    truncated.write_bytes(data[: len(data) // 2 + 512])
    daemon = start_daemon(emulator, tmp_path, json_log=True)
    try:
        assert wait_until(lambda: server_matches(emulator, [good]), timeout=20)
        late = make_journal(tmp_path / "late.db", points=10)  # still working afterwards
        assert wait_until(lambda: server_matches(emulator, [good, late]), timeout=20)
        assert daemon.poll() is None
        status = json.loads(run_cli("status", "--json", "--url", emulator.url,
                                    tmp_path).stdout)
        by_name = {os.path.basename(j["journal"]): j for j in status["journals"]}
        assert by_name["truncated.db"]["state"] == "failed"
        assert "truncated" in by_name["truncated.db"]["detail"]
    finally:
        code, _took, _out, err = stop_daemon(daemon)
    assert code == 0
    events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert all({"ts", "event", "level", "message"} <= set(e) for e in events)
    failed = [e for e in events if e["event"] == "failed"]
    assert failed and str(truncated) in failed[0]["message"]


def test_stale_run_is_reported_not_finished_and_live_run_kept_alive(emulator, tmp_path):
    writer = start_writer(tmp_path / "dead.db", "dead", seconds=1.0, end=False)
    writer.wait(30)
    daemon = start_daemon(emulator, tmp_path, "--stale-after", "2")
    try:
        assert wait_until(lambda: metric_points(emulator) > 10, timeout=20)
        status = lambda: json.loads(run_cli("status", "--json", "--url", emulator.url,  # noqa
                                            "--json", tmp_path).stdout)["journals"][0]
        assert wait_until(lambda: status()["state"] in ("stale", "live"), timeout=5)
        time.sleep(2.5)
    finally:
        code, _took, _out, err = stop_daemon(daemon)
    assert "stale" in err and "not marked finished" in err
    ended = [a for a in emulator.state()["applied"]
             if a["endpoint"] == "experiment_start_end_time" and "endTimeMillis" in a["fields"]]
    assert ended == []  # the daemon never invents an end


def test_live_run_is_kept_alive_on_the_server(emulator, tmp_path):
    # Live for as long as it takes (a loaded machine starts the daemon late): ended below.
    writer = start_writer(tmp_path / "live.db", "live", seconds=30)
    assert writer.stdout.readline().strip() == "started"
    daemon = start_daemon(emulator, tmp_path)
    try:
        # The emulator asks for a beat every isAliveBeatDurationMillis; ours counts beats.
        assert wait_until(lambda: emulator.state()["requests"]["by_route"].get(
            "experiment_keepalive", 0) >= 1, timeout=20)
    finally:
        writer.kill()
        writer.wait(30)
        stop_daemon(daemon)


@pytest.mark.parametrize("action", ["delete", "move"])
def test_after_upload_delete_or_move(emulator, tmp_path, action):
    watched = tmp_path / "runs"
    watched.mkdir()
    path = make_journal(watched / "done.db", points=10)
    import sqlite3
    conn = sqlite3.connect(path)
    calls = conn.execute("SELECT count(*) FROM calls").fetchone()[0]
    conn.close()
    target = tmp_path / "done"
    arg = "delete" if action == "delete" else f"move:{target}"
    daemon = start_daemon(emulator, watched, "--after-upload", arg)
    try:
        assert wait_until(lambda: not os.path.exists(path), timeout=20)
    finally:
        stop_daemon(daemon)
    if action == "move":  # moved whole: it still knows what it uploaded
        assert applied_items(journaled_state(emulator)) == journal_items(
            str(target / "done.db"))
    else:
        assert sum(applied_items(journaled_state(emulator)).values()) >= calls - 1
    assert not any(p.name.startswith("done.db") for p in watched.iterdir())


def test_second_signal_exits_at_once(emulator, tmp_path):
    make_journal(tmp_path / "j.db", points=300)
    emulator.set_faults({"rules": [{"kind": "latency", "ms": 4000}]})  # requests hang
    daemon = start_daemon(emulator, tmp_path)
    time.sleep(2.0)
    daemon.send_signal(signal.SIGINT)  # graceful: waits a little for in-flight requests
    time.sleep(0.3)
    assert daemon.poll() is None
    second = time.monotonic()
    daemon.send_signal(signal.SIGINT)  # at once
    daemon.wait(5)
    assert daemon.returncode == 1 and time.monotonic() - second < 2.0


def test_usage_errors(tmp_path):
    out = run_cli("watch", "--api-key", KEY, str(tmp_path / "missing"))
    assert out.returncode == 2 and "does not exist" in out.stderr
    out = run_cli("watch", "--api-key", KEY, "--after-upload", "shred", str(tmp_path))
    assert out.returncode == 2 and "keep, delete or move:DIR" in out.stderr


def test_every_kind_of_bad_file_is_reported_and_skipped_unchanged(emulator, tmp_path):
    import hashlib
    import shutil
    from bad_journals import BAD_JOURNALS, good_journal
    source = good_journal(tmp_path / "source.db")
    watched = tmp_path / "runs"
    watched.mkdir()
    digests = {}
    for bad in BAD_JOURNALS:
        path = str(watched / f"{bad.name}.db")
        bad.make(path, source)
        digests[path] = hashlib.sha256(open(path, "rb").read()).hexdigest()
    good = str(watched / "good.db")
    shutil.copy(source, good)
    daemon = start_daemon(emulator, watched, json_log=True)
    try:
        assert wait_until(lambda: server_matches(emulator, [good]), timeout=40)
        time.sleep(1.0)
        assert daemon.poll() is None  # still serving
    finally:
        code, _took, _out, err = stop_daemon(daemon)
    assert code == 0
    events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    reported = {e.get("journal") for e in events if e["event"] in ("failed", "ignored")}
    for path, digest in digests.items():
        assert path in reported, f"{path} was not reported"
        assert hashlib.sha256(open(path, "rb").read()).hexdigest() == digest, path
    assert {e.get("journal") for e in events if e["event"] == "failed"} >= {
        str(watched / f"{b.name}.db") for b in BAD_JOURNALS if b.seq}


def test_a_locked_journal_is_retried_not_failed(emulator, tmp_path):
    from bad_journals import hold_locked
    path = make_journal(tmp_path / "locked.db", points=20)
    with hold_locked(path, 3.0):
        daemon = start_daemon(emulator, tmp_path)
        try:
            time.sleep(1.0)
        finally:
            pass
    try:
        assert wait_until(lambda: server_matches(emulator, [path]), timeout=30)
    finally:
        code, _took, _out, err = stop_daemon(daemon)
    assert code == 0 and "failed" not in err


def test_one_huge_journal_does_not_starve_the_rest(emulator, tmp_path):
    huge = make_journal(tmp_path / "huge.db", points=1500)
    emulator.set_faults({"rules": [{"kind": "latency", "ms": 3}]})  # ~ several seconds' work
    daemon = start_daemon(emulator, tmp_path, "--parallel", "1", "--time-slice", "0.5")
    try:
        assert wait_until(lambda: metric_points(emulator) > 100, timeout=20)
        small = make_journal(tmp_path / "small.db", points=10)
        assert wait_until(lambda: not (journal_items(small) - applied_items(
            journaled_state(emulator))), timeout=20)
        assert journal_items(huge) - applied_items(journaled_state(emulator)), \
            "the huge journal finished first: the test proves nothing"
        emulator.set_faults({"rules": []})
        assert wait_until(lambda: server_matches(emulator, [huge, small]), timeout=60)
    finally:
        code, _took, _out, err = stop_daemon(daemon)
    assert code == 0, err
