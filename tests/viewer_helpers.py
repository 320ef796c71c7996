"""Runs for the viewer's tests, recorded with the real recorder, and the viewer as a process."""

from __future__ import annotations

import base64
import json
import os
import re
import sqlite3
import subprocess
import sys
import time

from comet_journal.recorder import Experiment
from comet_journal.schema.journal import Journal

# A 1x1 red PNG.
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIA"
                       "X8jx0gAAAABJRU5ErkJggg==")
XSS_HTML = ('<h1 id="logged">hello</h1><script>document.title="pwned";alert("script")</script>'
            '<img src="x" onerror="document.title=\'pwned\';alert(\'onerror\')">')
QUIET = dict(auto_output_logging=None, log_env_details=False, log_git_metadata=False,
             log_git_patch=False, log_code=False, system_monitor_interval=None,
             keep_alive_interval=None)


def record_full_run(path, name="full-run", lr=0.01, steps=50, secret=None) -> str:
    """A run holding every kind of item the run page shows; returns its key."""
    exp = Experiment(journal=str(path), project_name="viewer", workspace="me",
                     experiment_name=name, **QUIET)
    exp.log_parameters({"lr": lr, "layers": [64, 32], "optimizer": "adam"})
    exp.log_other("dataset", "mnist")
    with exp.train():
        for step in range(steps):
            exp.log_metric("loss", 1.0 / (step + 1), step=step, epoch=step // 10)
    with exp.validate():
        exp.log_metric("loss", 0.5, step=steps)
    exp.log_metric("acc", 0.9, step=steps)
    exp.log_cpu_metrics([10.0, 30.0], step=1)
    exp.log_ram_metrics(16_000, 4_000, step=1)
    exp.log_load_metrics(1.5, step=1)
    exp.log_gpu_metrics([{"gpuId": 0, "freeMemory": 1, "gpuUtilization": 70, "totalMemory": 2,
                          "usedMemory": 1}], step=1)
    exp.log_output("epoch 1 \x1b[32mok\x1b[0m\n")
    exp.log_output("warning: something\n", stderr=True)
    exp.add_tags(["baseline", "viewer"])
    exp.log_html(XSS_HTML)
    exp.log_text("a text sample <b>not bold</b>", step=3)
    exp.log_asset_data(PNG, name="red.png")
    exp.log_asset_data(b"col1,col2\n1,2\n", name="table.csv")
    if secret:
        exp.log_asset_data(secret.encode(), name="secret.txt")
    exp.log_git_metadata(branch="main", origin="git@example:repo", parent="abc123",
                         root="/src", user="someone")
    exp.log_git_patch(b"diff --git a/x b/x\n+added line\n")
    exp.set_code("print('the code')\n")
    exp.log_system_details(hostname="node-1", os="Linux", pythonVersion="3.11.0")
    exp.end()
    return exp.get_key()


def write_metric_journal(path, points: int, name="big", metric="loss", ended=True) -> str:
    """A journal of ``points`` metric calls written directly (a recorder would take minutes for
    millions); the rows are what the recorder writes. Returns the experiment key."""
    key = ("%032x" % points)[-32:].replace("0", "a")
    Journal.open(str(path), create=True).close()
    conn = sqlite3.connect(str(path))
    t0 = 1_700_000_000_000
    conn.execute("INSERT INTO experiments (key, workspace, project, name, created_ms, host, pid) "
                 "VALUES (?, 'me', 'bench', ?, ?, 'h', 1)", (key, name, t0))
    exp_id = conn.execute("SELECT id FROM experiments WHERE key=?", (key,)).fetchone()[0]
    conn.execute("INSERT INTO calls (endpoint, experiment_id, ts_ms, payload) VALUES "
                 "('experiment_start_end_time', ?, ?, ?)", (exp_id, t0, json.dumps(
                     {"startTimeMillis": t0, **({"endTimeMillis": t0 + points} if ended
                                                else {})})))
    # Generated inside SQLite (a million rows in about a second); json_object writes the
    # same compact JSON as the recorder. One spike in the middle, for downsampling checks.
    conn.execute(
        "INSERT INTO calls (endpoint, experiment_id, ts_ms, payload) "
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ? - 1) "
        "SELECT 'log_metric', ?, ? + i, json_object('metricName', ?, 'metricValue', "
        "(i % 1000) / 1000.0 + (CASE WHEN i = ? / 2 THEN 5.0 ELSE 0.0 END), 'step', i) FROM n",
        (points, exp_id, t0, metric, points))
    conn.commit()
    conn.close()
    return key


class ViewerProcess:
    """``comet-upload view`` as a real process on a free port; ``url`` from its first line."""

    def __init__(self, *paths, host="127.0.0.1", timeout=30.0):
        cmd = [sys.executable, "-m", "comet_journal.uploader.cli", "view", "--host", host,
               "--port", "0", *map(str, paths)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        line = self.proc.stdout.readline()
        match = re.match(r"listening on (http://\S+)", line)
        if not match:
            self.close()
            raise RuntimeError(f"viewer did not start: {line!r} {self.proc.stderr.read()}")
        self.url = match.group(1)
        self.base = self.url.split("?")[0].rstrip("/")
        self.started = time.monotonic()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            stream.close()

    def __enter__(self) -> "ViewerProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
