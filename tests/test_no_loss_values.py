"""Issue 15, recorder side: one bad value never poisons a batch, and a failing writer never
blocks a ``durability="call"`` loop for long. Real processes, real journals."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

from journal_helpers import count, integrity_ok, rows

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SURROGATE_RUN = """
import os, sys, time
from comet_journal import Experiment
journal, data_dir, durability = sys.argv[1:4]
name = [n for n in os.listdir(data_dir) if n.startswith("caf")][0]  # "caf\\udce9.txt"
assert "\\udce9" in name, ascii(name)
exp = Experiment(journal=journal, durability=durability, flush_interval=0.05,
                 experiment_name="run on " + name, project_name="proj",
                 auto_output_logging=None, log_env_details=False, log_git_metadata=False,
                 log_git_patch=False, log_code=False)
exp.log_parameter("data_file", name)
exp.log_other("source", name)
exp.log_metric(name, 1.0)
started = time.monotonic()
for i in range(2000):
    exp.log_metric("loss", 1.0 / (i + 1), step=i)
print("loop_s", time.monotonic() - started)
print("stats", exp.end(timeout=20))
"""


def _surrogate_run(tmp_path, durability: str):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / os.fsdecode(b"caf\xe9.txt")).write_bytes(b"x")
    journal = str(tmp_path / "run.db")
    env = dict(os.environ, PYTHONPATH=ROOT, LC_ALL="C", PYTHONUTF8="0",
               PYTHONCOERCECLOCALE="0")
    proc = subprocess.run([sys.executable, "-c", SURROGATE_RUN, journal, str(data_dir),
                           durability], env=env, capture_output=True, text=True,
                          errors="backslashreplace", timeout=120)
    assert proc.returncode == 0, proc.stderr
    return journal, proc


def test_lone_surrogate_is_stored_escaped_and_loses_nothing(tmp_path):
    journal, proc = _surrogate_run(tmp_path, "window")
    assert integrity_ok(journal)
    assert count(journal, "experiment_create") == 1
    assert count(journal, "log_metric") == 2001
    [param] = rows(journal, "log_parameter")
    assert param["payload"]["parameterValue"] == "caf\\udce9.txt"  # visible, valid UTF-8
    assert rows(journal, "log_other")[0]["payload"]["value"] == "caf\\udce9.txt"
    [create] = rows(journal, "experiment_create")
    assert create["payload"]["experimentName"] == "run on caf\\udce9.txt"
    conn = sqlite3.connect(journal)
    assert conn.execute("SELECT name FROM experiments").fetchone()[0] == "run on caf\\udce9.txt"
    conn.close()
    assert "'lost': 0" in proc.stdout
    assert "one experiment_create call has a lone surrogate" in proc.stderr
    assert "log_other" not in proc.stderr  # reported once, not per call


def test_lone_surrogate_does_not_hang_durable_calls(tmp_path):
    journal, proc = _surrogate_run(tmp_path, "call")
    assert count(journal, "log_metric") == 2001
    assert count(journal, "log_parameter") == 1


FULL_DISK_DURABLE = """
import sys, time
from comet_journal import Experiment
exp = Experiment(journal=sys.argv[1], durability="call", max_journal_bytes=128 * 1024,
                 flush_interval=0.02, auto_output_logging=None, log_env_details=False,
                 log_git_metadata=False, log_git_patch=False, log_code=False)
worst = 0.0
started = time.monotonic()
for i in range(1500):
    t = time.monotonic()
    exp.log_parameter("p", "x" * 200 + str(i))
    worst = max(worst, time.monotonic() - t)
print("worst", worst)
print("total", time.monotonic() - started)
stats = exp.end(timeout=5)
print("lost", stats["lost"])
"""


def test_durable_call_is_bounded_when_the_disk_is_full(tmp_path):
    journal = str(tmp_path / "run.db")
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, "-c", FULL_DISK_DURABLE, journal], env=env,
                          capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stderr
    out = dict(line.split() for line in proc.stdout.splitlines())
    assert float(out["worst"]) < 5.0  # bounded (1 s of waiting + load), not forever
    assert float(out["total"]) < 30.0  # and not that long on every call
    assert int(out["lost"]) > 0
    assert "cannot write to the journal" in proc.stderr


BAD_ROW = """
import sys
from comet_journal import Experiment
exp = Experiment(journal=sys.argv[1], flush_interval=0.05, auto_output_logging=None,
                 log_env_details=False, log_git_metadata=False, log_git_patch=False,
                 log_code=False)
exp._enqueue("log_other", {"key": "bad", "value": object()})  # cannot be encoded at all
for i in range(100):
    exp.log_metric("after", i, step=i)
print(exp.end(timeout=10))
"""


def test_a_row_that_cannot_be_written_is_dropped_alone(tmp_path):
    journal = str(tmp_path / "run.db")
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, "-c", BAD_ROW, journal], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert count(journal, "experiment_create") == 1
    assert [r["payload"]["step"] for r in rows(journal, "log_metric")
            if r["payload"]["metricName"] == "after"] == list(range(100))
    assert "'lost': 1" in proc.stdout
    assert "one log_other call could not be journaled and was dropped" in proc.stderr


def test_a_batch_bigger_than_the_free_space_is_written_as_far_as_it_fits(tmp_path):
    from comet_journal import Experiment
    journal = str(tmp_path / "run.db")
    # One batch (nothing flushes before end()) of ~700 KB against a 256 KiB cap.
    exp = Experiment(journal=journal, flush_interval=30, max_journal_bytes=256 * 1024,
                     max_queue=100_000)
    for i in range(3000):
        exp.log_parameter("p", f"{i:05d}" + "y" * 200)
    stats = exp.end(timeout=20)
    values = [r["payload"]["parameterValue"][:5] for r in rows(journal, "log_parameter")]
    assert len(values) > 300  # was 0: the whole batch retried and lost
    assert values == [f"{i:05d}" for i in range(len(values))]  # the start, in order
    assert stats["journaled"] + stats["lost"] == 3000 + 3
    assert integrity_ok(journal)
