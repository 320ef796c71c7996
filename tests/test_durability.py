"""Crash safety with real processes: SIGKILL, interpreter exit, per-call durability."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

from journal_helpers import count, integrity_ok, rows
from comet_journal.schema.journal import Journal

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _spawn(code: str, *args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


# The child logs metric i with step i in a paced loop and reports "i wallclock" every 500
# calls on stdout, so the parent knows which calls are older than the flush window.
WRITER = """
import sys, time
from comet_journal import Experiment
exp = Experiment(journal=sys.argv[1], project_name="p", workspace="w",
                 flush_interval=float(sys.argv[2]))
i = 0
while True:
    exp.log_metric("m", float(i), step=i)
    if i % 500 == 0:
        print(i, time.time(), flush=True)
        time.sleep(0.002)
    i += 1
"""


def test_sigkill_keeps_every_call_older_than_the_flush_window(tmp_path):
    journal = str(tmp_path / "run.db")
    window = 0.25
    child = _spawn(WRITER, journal, str(window))
    progress = []
    deadline = time.time() + 20
    while time.time() < deadline:
        line = child.stdout.readline()
        if not line:
            break
        i, t = line.split()
        progress.append((int(i), float(t)))
        if progress[-1][1] - progress[0][1] > 1.5:  # killed mid-run, well past the window
            break
    kill_time = time.time()
    os.kill(child.pid, signal.SIGKILL)
    child.wait(10)
    assert len(progress) > 10, child.stderr.read()
    assert integrity_ok(journal)
    Journal.open(journal, readonly=True).close()  # opens cleanly
    steps = [r["payload"]["step"] for r in rows(journal, "log_metric")]
    assert steps == list(range(len(steps)))  # no gaps, no duplicates, in order
    # Every call reported more than the window (plus scheduling slack) before the kill is in.
    older = [i for i, t in progress if t < kill_time - window - 0.5]
    assert older, "the child made no progress before the window"
    assert max(older) < len(steps)


def test_interpreter_exit_flushes_everything_without_end(tmp_path):
    journal = str(tmp_path / "run.db")
    child = _spawn("""
        import sys
        from comet_journal import Experiment
        exp = Experiment(journal=sys.argv[1], flush_interval=30)
        for i in range(20_000):
            exp.log_metric("m", i, step=i)
        # no end(), no flush(): the atexit hook must write everything
        """, journal)
    _out, err = child.communicate(timeout=60)
    assert child.returncode == 0, err
    assert count(journal, "log_metric") == 20_000
    ends = [r for r in rows(journal, "experiment_start_end_time")
            if "endTimeMillis" in r["payload"]]
    assert len(ends) == 1


def test_durability_call_mode_makes_each_call_durable_before_it_returns(tmp_path):
    journal = str(tmp_path / "run.db")
    child = _spawn("""
        import os, signal, sys
        from comet_journal import Experiment
        exp = Experiment(journal=sys.argv[1], durability="call", flush_interval=30)
        for i in range(50):
            exp.log_metric("m", i, step=i)
        exp.log_parameter("last", "yes")
        os.kill(os.getpid(), signal.SIGKILL)  # no chance to flush anything afterwards
        """, journal)
    child.communicate(timeout=60)
    assert child.returncode == -signal.SIGKILL
    assert count(journal, "log_metric") == 50
    assert count(journal, "log_parameter") == 1
    assert integrity_ok(journal)


def test_flush_makes_calls_durable_now(tmp_path):
    journal = str(tmp_path / "run.db")
    child = _spawn("""
        import os, signal, sys
        from comet_journal import Experiment
        exp = Experiment(journal=sys.argv[1], flush_interval=30)
        for i in range(1000):
            exp.log_metric("m", i, step=i)
        assert exp.flush(10)
        exp.log_metric("after", 1)  # not flushed: may or may not be there
        os.kill(os.getpid(), signal.SIGKILL)
        """, journal)
    _out, err = child.communicate(timeout=60)
    assert child.returncode == -signal.SIGKILL, err
    assert count(journal, "log_metric") >= 1000
