"""Several processes writing one journal, and fork() safety, with real processes."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys

from journal_helpers import integrity_ok, rows
from comet_journal import Experiment

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

RANK = """
import sys
from comet_journal import Experiment
journal, key, rank = sys.argv[1], sys.argv[2], int(sys.argv[3])
with Experiment(journal=journal, experiment_key=key, flush_interval=0.05) as exp:
    for i in range(3000):
        exp.log_metric(f"rank{rank}", i, step=i)
        if i % 500 == 0:
            exp.log_parameter(f"p{rank}", i)
"""


def test_ranks_in_separate_processes_share_one_journal(tmp_path):
    journal = str(tmp_path / "run.db")
    with Experiment(journal=journal, project_name="p", workspace="w") as main:
        env = dict(os.environ, PYTHONPATH=ROOT)
        procs = [subprocess.Popen([sys.executable, "-c", RANK, journal, main.key, str(r)],
                                  env=env, stderr=subprocess.PIPE, text=True)
                 for r in range(4)]
        for p in procs:
            _out, err = p.communicate(timeout=120)
            assert p.returncode == 0, err
    assert integrity_ok(journal)
    metrics = rows(journal, "log_metric")
    for rank in range(4):
        steps = [r["payload"]["step"] for r in metrics if r["payload"]["metricName"] == f"rank{rank}"]
        assert steps == list(range(3000)), rank  # complete, and in each writer's own order
    assert len({r["experiment_id"] for r in metrics}) == 1


def _worker(exp: Experiment, worker: int) -> None:
    for i in range(500):
        exp.log_metric(f"worker{worker}", i, step=i)
    exp.flush()
    os._exit(0)  # like a DataLoader worker: no atexit, no interpreter teardown


def test_forked_children_write_their_own_rows_and_nothing_of_the_parent_twice(tmp_path):
    journal = str(tmp_path / "run.db")
    exp = Experiment(journal=journal, flush_interval=10)
    for i in range(1000):  # queued in the parent, not yet written, when the fork happens
        exp.log_metric("parent", i, step=i)
    ctx = multiprocessing.get_context("fork")
    children = [ctx.Process(target=_worker, args=(exp, w)) for w in range(3)]
    for child in children:
        child.start()
    for child in children:
        child.join(60)
        assert child.exitcode == 0
    exp.log_metric("parent", 1000, step=1000)
    exp.end()
    assert integrity_ok(journal)
    metrics = rows(journal, "log_metric")
    parent = [r["payload"]["step"] for r in metrics if r["payload"]["metricName"] == "parent"]
    assert parent == list(range(1001))  # exactly once: children did not re-write it
    for w in range(3):
        steps = [r["payload"]["step"] for r in metrics
                 if r["payload"]["metricName"] == f"worker{w}"]
        assert steps == list(range(500))


def test_raw_fork_child_can_end_its_own_experiment(tmp_path):
    journal = str(tmp_path / "run.db")
    exp = Experiment(journal=journal, flush_interval=0.05)
    exp.log_metric("before", 1)
    pid = os.fork()
    if pid == 0:  # child
        try:
            child_exp = Experiment(journal=journal, experiment_name="child")
            child_exp.log_metric("child", 1)
            child_exp.end()
            exp.log_metric("inherited", 1)
            exp.flush(10)
        finally:
            os._exit(0)
    _pid, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    exp.log_metric("after", 1)
    exp.end()
    names = [r["payload"]["metricName"] for r in rows(journal, "log_metric")]
    assert sorted(names) == ["after", "before", "child", "inherited"]
    assert integrity_ok(journal)
