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
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

from comet_journal.emulator.compare import applied_item_list, journal_item_list
from comet_journal.schema.segments import chain, segments_dir
from comet_journal.uploader.journal.mirror import mirror_path
from journal_helpers import call_rows
from test_upload_support import CLI, FAST, KEY, ROOT

sys.path.insert(0, os.path.join(ROOT, "scripts"))
from fuse_two_hosts import Faults, Mount, unavailable  # noqa: E402

# The writer seals every second, a second after its previous seal ended: what a SIGKILL can
# lose is that second plus one seal's own time, and its thread's wait for a core (seen at
# 0.3-0.5 s on 2 cores at a load of 19). What was sealed is checked exactly, separately.
SEAL_SLACK_S = 1.0
SEEDS = (1, 2, 3)
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
        copy = call_rows(self.copy)
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


@dataclass
class Outcome:
    """What one seed's scenario left, asserted on in the test's own thread."""

    seed: int
    ended: Run
    killed: Run
    delivered_ended: tuple
    delivered_killed: tuple
    due: int  # the last step B committed more than a second (and the slack) before its kill
    states: set
    log_tail: str
    stats: dict


def _scenario(emulator, directory, seed: int) -> Outcome:
    """Writers A (ends after 1.5 s) and B (SIGKILLed after 2 s) on host A; the daemon on
    the FUSE view, SIGKILLed once the server has something and restarted; waits for
    everything to settle."""
    runs, view, log = directory / "runs", directory / "host-b", directory / "daemon.log"
    runs.mkdir(parents=True)
    # Torn reads hit files younger than torn_ms: long enough that the daemon's first open of a
    # segment is still "recent" when a loaded machine delays it by seconds (it was not at 2 s).
    faults = Faults(seed=seed, attr_ms=800, dir_ms=800, hide_ms=1200, torn_ms=8000,
                    torn_rate=0.5, estale_rate=0.03)
    with Mount(runs, view, faults, directory / "fuse-stats.json") as mount, \
            open(log, "w") as log_file:
        (a, a_path), (b, b_path) = _writer(runs, 1.5), _writer(runs, 0)
        ended, killed = Run(a_path, runs, view), Run(b_path, runs, view)
        daemon = _daemon(emulator.url, view, log_file)
        try:
            committed = [(time.monotonic(), int(b.stdout.readline()))]
            started, restarted = committed[0][0], False
            while time.monotonic() - started < 2.0:  # B logs for 2 s, then is SIGKILLed
                committed.append((time.monotonic(), int(b.stdout.readline())))
                if not restarted and (emulator.state()["applied"] or
                                      time.monotonic() - started > 1.5):
                    daemon.send_signal(signal.SIGKILL)  # mid-upload: exactly once after it
                    daemon.wait()
                    daemon = _daemon(emulator.url, view, log_file)
                    restarted = True
            killed_at = time.monotonic()
            b.send_signal(signal.SIGKILL)
            b.wait()
            a.wait(timeout=30)
            due = max(step for at, step in committed if at < killed_at - 1.0 - SEAL_SLACK_S)
            deadline = time.monotonic() + 40
            while time.monotonic() < deadline:
                got_a, got_b = ended.delivered(emulator), killed.delivered(emulator)
                states = _events(log)
                if got_a[1] and got_a[1] == got_a[2] and got_b[1] == got_b[2] and \
                        set(range(due + 1)) <= killed.steps_on_server(got_b[2]) and \
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
    return Outcome(seed, ended, killed, got_a, got_b, due, _events(log),
                   log.read_text()[-3000:], stats)


def test_the_real_daemon_on_faulty_second_host_views(emulator, tmp_path):
    """Three seeds at once (each its own mount, writers and daemon; one server)."""
    with ThreadPoolExecutor(max_workers=len(SEEDS)) as pool:
        outcomes = list(pool.map(lambda seed: _scenario(emulator, tmp_path / f"seed{seed}",
                                                        seed), SEEDS))
    for o in outcomes:
        copy_a, want_a, have_a = o.delivered_ended
        copy_b, want_b, have_b = o.delivered_killed
        journal_b = call_rows(o.killed.journal)
        assert copy_a == call_rows(o.ended.journal), f"seed {o.seed}: the ended run's copy"
        assert copy_b == journal_b[: len(copy_b)], f"seed {o.seed}: torn or skipped (killed)"
        assert want_a == have_a, (o.seed, want_a - have_a, have_a - want_a)  # exactly once
        assert want_b == have_b, (o.seed, want_b - have_b, have_b - want_b)
        steps_b = o.killed.steps_on_server(have_b)
        assert set(range(o.due + 1)) <= steps_b, (o.seed, o.due, sorted(steps_b)[-3:])
        assert len(copy_b) == _sealed_end(o.killed.journal), o.seed  # all the writer sealed
        assert (o.ended.seen, "uploaded") in o.states, (o.seed, o.log_tail)
        assert (o.killed.seen, "stale") in o.states, (o.seed, o.log_tail)
        assert (o.killed.seen, "uploaded") not in o.states, o.seed  # never marked finished
        assert o.stats["faults"].get("hidden_name"), (o.seed, o.stats)  # the faults were on
        assert o.stats["server"]["getattr"] < o.stats["ops"]["getattr"], o.stats  # cached
    kinds = Counter()
    for o in outcomes:
        kinds.update(o.stats["faults"])
    # Late names and torn reads every time; at least one of stale attributes or ESTALE too.
    assert kinds["hidden_name"] and kinds["torn_open"] and len(kinds) >= 3, kinds
