"""Issue 15, recorder side: what a script logged reaches the journal on every normal exit
path (a Project never closed; forked multiprocessing workers). Real processes."""

from __future__ import annotations

import os
import subprocess
import sys

from journal_helpers import count, rows

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, PYTHONPATH=ROOT)

PROJECT_WITHOUT_WITH = """
import sys
from comet_journal import Project
Project(journal=sys.argv[1], workspace="me", project_name="mnist").set_notes("hello")
Project(journal=sys.argv[1], workspace="me", project_name="mnist").set_notes(
    "key Zq7mW2xP9kLr4TnB8vYc3Hs6")  # the API key is masked in notes too
"""


def test_project_without_with_is_written_at_exit_with_a_warning(tmp_path):
    journal = str(tmp_path / "p.db")
    env = dict(ENV, COMET_API_KEY="Zq7mW2xP9kLr4TnB8vYc3Hs6")
    proc = subprocess.run([sys.executable, "-c", PROJECT_WITHOUT_WITH, journal], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    notes = [r["payload"]["notes"] for r in rows(journal, "project_notes")]
    assert notes == ["hello", "key ***"]
    assert count(journal) == 2
    assert "Project 'mnist' was not closed" in proc.stderr


PROJECT_CLOSED = """
import sys
from comet_journal import Project
with Project(journal=sys.argv[1], workspace="me", project_name="mnist") as project:
    project.set_notes("hello")
"""


def test_project_closed_properly_says_nothing_at_exit(tmp_path):
    journal = str(tmp_path / "p.db")
    proc = subprocess.run([sys.executable, "-c", PROJECT_CLOSED, journal], env=ENV,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert count(journal, "project_notes") == 1
    assert "not closed" not in proc.stderr


FORK_WORKERS = """
import multiprocessing, sys
from comet_journal import Experiment

EXP = None  # the parent's experiment, inherited by fork (Pool tasks are pickled)

def work(name):
    for i in range(300):
        EXP.log_metric(name, i, step=i)
    return name

if __name__ == "__main__":
    journal, how = sys.argv[1], sys.argv[2]
    # flush_interval=30: nothing reaches the disk by the timer; only the exit path can write it
    exp = EXP = Experiment(journal=journal, flush_interval=30, auto_output_logging=None,
                           log_env_details=False, log_git_metadata=False,
                           log_git_patch=False, log_code=False)
    ctx = multiprocessing.get_context("fork")
    if how == "process":
        workers = [ctx.Process(target=work, args=(f"proc{w}",)) for w in range(2)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(60)
        print("exitcodes", [w.exitcode for w in workers])
    elif how == "pool-with":  # __exit__ is terminate(): SIGTERM to the workers
        with ctx.Pool(2) as pool:
            print(pool.map(work, [f"pool{t}" for t in range(4)], chunksize=1))
    else:  # close() + join(): the workers leave through os._exit
        pool = ctx.Pool(2)
        print(pool.map(work, [f"pool{t}" for t in range(4)], chunksize=1))
        pool.close()
        pool.join()
    exp.end()
"""


def _run_workers(tmp_path, how: str) -> str:
    journal = str(tmp_path / "run.db")
    proc = subprocess.run([sys.executable, "-c", FORK_WORKERS, journal, how], env=ENV,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return journal


def _points(journal) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for row in rows(journal, "log_metric"):
        out.setdefault(row["payload"]["metricName"], []).append(row["payload"]["step"])
    return out


def test_fork_process_workers_flush_through_multiprocessing_exit(tmp_path):
    points = _points(_run_workers(tmp_path, "process"))
    assert points == {"proc0": list(range(300)), "proc1": list(range(300))}


def test_fork_pool_workers_flush_when_the_pool_is_closed(tmp_path):
    points = _points(_run_workers(tmp_path, "pool-close"))
    assert points == {f"pool{t}": list(range(300)) for t in range(4)}


def test_fork_pool_workers_flush_when_the_pool_is_terminated(tmp_path):
    points = _points(_run_workers(tmp_path, "pool-with"))
    assert points == {f"pool{t}": list(range(300)) for t in range(4)}


CHILD_CANNOT_FLUSH = """
import multiprocessing, sys
from comet_journal import Experiment

def work(exp):
    for i in range(20000):
        exp.log_parameter("p", "x" * 100 + str(i))

if __name__ == "__main__":
    exp = Experiment(journal=sys.argv[1], flush_interval=30, max_journal_bytes=256 * 1024,
                     auto_output_logging=None, log_env_details=False,
                     log_git_metadata=False, log_git_patch=False, log_code=False)
    child = multiprocessing.get_context("fork").Process(target=work, args=(exp,))
    child.start()
    child.join(60)
    print("exitcode", child.exitcode, "pid", child.pid)
"""


def test_a_forked_child_that_cannot_flush_says_so(tmp_path):
    journal = str(tmp_path / "run.db")
    proc = subprocess.run([sys.executable, "-c", CHILD_CANNOT_FLUSH, journal], env=ENV,
                          capture_output=True, text=True, timeout=120)
    assert "exitcode 0" in proc.stdout, proc.stderr
    pid = proc.stdout.split()[-1]
    assert f"forked process {pid} is leaving (multiprocessing exit) with" in proc.stderr
    assert "calls not journaled" in proc.stderr
