"""The real daemon on a second host's view of the runs directory, through FUSE.

Real recorders (segments on) write directory runs into a real directory; the FUSE layer of
``scripts/fuse_two_hosts.py`` mounts it read-only as "host B", with its client's caching
faults (stale attributes and directory entries, new names late, ENOENT after a rename, torn
reads of new files, ESTALE), driven by a seed; the real ``comet-upload watch`` process
watches the mount and is SIGKILLed and restarted mid-way. Asserted, per seed: what reached
the daemon's private copy is an exact prefix of the writer's journal (no torn record, no seq
skipped), what is on the server is that copy exactly once, an ended run is uploaded whole and
marked uploaded, and a SIGKILLed writer is delivered up to a second before its kill and
reported stale, never finished. Skips, saying why, where FUSE cannot be mounted.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter

import pytest

from comet_journal.emulator.compare import applied_item_list, journal_item_list
from comet_journal.schema.segments import chain, segments_dir
from comet_journal.uploader.journal.mirror import mirror_path
from test_upload_support import CLI, FAST, KEY, ROOT

sys.path.insert(0, os.path.join(ROOT, "scripts"))
from fuse_two_hosts import Faults, Mount, unavailable  # noqa: E402

# The writer seals every second, a second after its previous seal ended: what a SIGKILL can
# lose is that second plus one seal's own time (longer on a loaded machine).
SEAL_SLACK_S = 0.5
WHY_NOT = unavailable()
pytestmark = pytest.mark.skipif(WHY_NOT is not None, reason=f"no FUSE mount here: {WHY_NOT}")

WRITER = r"""
import os, sys, time
from comet_journal import Experiment
directory, seconds = sys.argv[1], float(sys.argv[2])
exp = Experiment(journal=directory + os.sep, project_name="p", workspace="w")
print(os.path.join(directory, exp.key + ".db"), flush=True)
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


def _writer(directory, seconds: float) -> tuple[subprocess.Popen, str]:
    env = dict(os.environ, PYTHONPATH=ROOT, COMET_JOURNAL_SEGMENTS="1")
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(directory), str(seconds)],
                            stdout=subprocess.PIPE, text=True, env=env)
    return proc, proc.stdout.readline().strip()


def _daemon(url: str, root, log) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMET_")}
    env.update(PYTHONPATH=ROOT, COMET_JOURNAL_AUTO_LOG="0")  # state: $XDG_STATE_HOME
    return subprocess.Popen([*CLI, "watch", "--url", url, "--api-key", KEY, *FAST,
                             "--poll", "0.3", "--stale-after", "2", "--json-log", str(root)],
                            stdout=subprocess.DEVNULL, stderr=log, env=env)


def _calls(path: str) -> list[tuple]:
    if not os.path.exists(path):
        return []
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT seq, endpoint, experiment_id, ts_ms, payload FROM calls "
                            "ORDER BY seq").fetchall()
    except sqlite3.OperationalError:  # the daemon is creating it
        return []
    finally:
        conn.close()


def _sealed_end(journal: str) -> int:
    """The last seq sealed in the chain of segments on the writer's host."""
    chained = chain(segments_dir(journal))
    return chained[-1].last if chained else 0


class Run:
    """One writer's run: its journal on host A, its name and private copy via host B."""

    def __init__(self, journal: str, real_root, view_root):
        self.journal = journal
        self.seen = os.path.join(str(view_root), os.path.relpath(journal, str(real_root)))
        self.copy = mirror_path(segments_dir(self.seen))

    def delivered(self, emu) -> tuple[list[tuple], Counter, Counter]:
        """The copy's calls, and the copy's items beside the server's for its experiment."""
        copy = _calls(self.copy)
        want = Counter(journal_item_list(self.copy)) if copy else Counter()
        keys = {item[0] for item in want}
        have = Counter(i for i in applied_item_list(emu.state()) if i[0] in keys)
        return copy, want, have

    def steps_on_server(self, have: Counter) -> set:
        return {item[4] for item in have if item[1] == "metric"}


def _events(log_path) -> set[tuple]:
    with open(log_path) as f:
        lines = [json.loads(line) for line in f if line.startswith("{")]
    return {(e.get("journal"), e.get("state")) for e in lines}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_real_daemon_on_a_faulty_second_host_view(emulator, tmp_path, seed):
    runs, view = tmp_path / "runs", tmp_path / "host-b"
    runs.mkdir()
    log = tmp_path / "daemon.log"
    faults = Faults(seed=seed, attr_ms=800, dir_ms=800, hide_ms=1200, torn_rate=0.5,
                    estale_rate=0.03)
    with Mount(runs, view, faults, tmp_path / "fuse-stats.json") as mount, \
            open(log, "w") as log_file:
        (a, a_path), (b, b_path) = _writer(runs, 1.5), _writer(runs, 0)
        ended, killed = Run(a_path, runs, view), Run(b_path, runs, view)
        daemon = _daemon(emulator.url, view, log_file)
        try:
            committed: list[tuple[float, int]] = []
            started = time.monotonic()
            restarted = False
            while time.monotonic() - started < 2.0:
                committed.append((time.monotonic(), int(b.stdout.readline())))
                if not restarted and time.monotonic() - started > 1.0:
                    daemon.send_signal(signal.SIGKILL)  # mid-upload: exactly once after it
                    daemon.wait()
                    daemon = _daemon(emulator.url, view, log_file)
                    restarted = True
            killed_at = time.monotonic()
            b.send_signal(signal.SIGKILL)
            b.wait()
            assert a.wait(timeout=30) == 0
            due = max(step for at, step in committed if at < killed_at - 1.0 - SEAL_SLACK_S)
            deadline = time.monotonic() + 40
            while time.monotonic() < deadline:
                copy_a, want_a, have_a = ended.delivered(emulator)
                copy_b, want_b, have_b = killed.delivered(emulator)
                states = _events(log)
                if want_a and want_a == have_a and want_b == have_b and \
                        set(range(due + 1)) <= killed.steps_on_server(have_b) and \
                        (ended.seen, "uploaded") in states and (killed.seen, "stale") in states:
                    break
                time.sleep(0.3)
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=20)
            for proc in (a, b):
                if proc.poll() is None:
                    proc.kill()
        stats = mount.stats()
    journal_a, journal_b = _calls(a_path), _calls(b_path)
    assert copy_a == journal_a, f"seed {seed}: the ended run's copy differs from its journal"
    assert copy_b == journal_b[: len(copy_b)], f"seed {seed}: torn or skipped (killed run)"
    assert want_a == have_a, (seed, want_a - have_a, have_a - want_a)  # exactly once
    assert want_b == have_b, (seed, want_b - have_b, have_b - want_b)
    assert set(range(due + 1)) <= killed.steps_on_server(have_b), seed  # up to 1 s before
    assert len(copy_b) == _sealed_end(b_path), seed  # every call the writer sealed
    states = _events(log)
    assert (ended.seen, "uploaded") in states, (seed, log.read_text()[-3000:])
    assert (killed.seen, "stale") in states, (seed, log.read_text()[-3000:])
    assert (killed.seen, "uploaded") not in states, seed  # never marked finished
    injected = stats["faults"]
    assert injected.get("hidden_name") and len(injected) >= 2, (seed, stats)  # faults were on
    assert stats["metadata_ops"] > 0 and stats["server"]["getattr"] < stats["ops"]["getattr"]
