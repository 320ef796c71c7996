"""Several daemons (separate state, as on separate hosts) on one directory: with a shared
``--lease-dir`` each run is uploaded by one of them at a time, and every call once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter

from comet_journal.emulator.compare import applied_item_list, journal_item_list
from comet_journal.uploader.watch.lease import Leases
from test_upload_support import CLI, FAST, KEY, ROOT, make_journal


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_lease_is_held_by_one_daemon_and_taken_over_only_when_it_stops_changing(tmp_path):
    a_clock, b_clock = _Clock(), _Clock()
    a = Leases(str(tmp_path / "leases"), ttl_s=10, clock=a_clock)
    b = Leases(str(tmp_path / "leases"), ttl_s=10, clock=b_clock)
    run = "/shared/runs/r1.db"
    assert a.acquire(run) and not b.acquire(run)
    b_clock.now = 8
    assert a.acquire(run)  # renewed: the content changed
    b_clock.now = 15
    assert not b.acquire(run)  # changed 7 s ago on b's clock: still a's
    b_clock.now = 26
    assert b.acquire(run)  # unchanged for 11 s on b's own clock: taken over
    assert not a.acquire(run)  # a learns it lost it, and does not take it back
    b.finish(run)
    assert a.finished(run) and not a.acquire(run)
    a_clock.now = 1000
    assert not a.acquire(run)  # a finished run's lease is never taken over


def _daemon(emu, directory, home, leases):
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMET_")}
    env.update(PYTHONPATH=ROOT, COMET_JOURNAL_AUTO_LOG="0", XDG_STATE_HOME=str(home))
    return subprocess.Popen([*CLI, "watch", "--url", emu.url, "--api-key", KEY, *FAST,
                             "--json-log", "--poll", "0.3", "--lease-dir", str(leases),
                             str(directory)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=ROOT)


def test_two_daemons_with_separate_state_upload_each_run_once(emulator, tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    paths = [make_journal(runs / f"run{i}.db", points=20) for i in range(4)]
    homes = [tmp_path / "host-a", tmp_path / "host-b"]
    daemons = [_daemon(emulator, runs, home, tmp_path / "leases") for home in homes]
    try:
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            if len([e for e in emulator.state()["applied"]
                    if e["endpoint"] == "log_metric"]) >= 4 * 20:
                break
            time.sleep(0.3)
        time.sleep(2.0)  # time for a duplicate to show up, if any would
    finally:
        logs = []
        for daemon in daemons:
            daemon.send_signal(signal.SIGTERM)
            logs.append(daemon.communicate(timeout=20)[1])
    want = Counter()
    for path in paths:  # server keys from whichever host uploaded the run
        for home in homes:
            items = Counter(journal_item_list(path, str(home / "comet-journal")))
            if None not in {i[0] for i in items}:
                want += items
                break
    have = Counter(i for i in applied_item_list(emulator.state())
                   if i[1] != "experiment_keepalive")
    assert want and want == have, (want - have, have - want)
    senders: dict[str, set[int]] = {}
    for n, log in enumerate(logs):
        for line in log.splitlines():
            if line.startswith("{"):
                event = json.loads(line)
                if event["event"] == "uploaded" and event["detail"].startswith("run ended"):
                    senders.setdefault(event["journal"], set()).add(n)
                elif event["event"] == "uploaded":
                    assert event["detail"] == "uploaded by another daemon"
    assert set(senders) == {str(p) for p in paths}
    assert all(len(who) == 1 for who in senders.values()), senders  # one daemon per run
