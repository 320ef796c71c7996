"""The viewer without a browser: downsampling, the read-only reader, export, the server's rules."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from array import array

import pytest

from journal_helpers import rows
from test_upload_support import CLI, FAST, KEY
from viewer_helpers import QUIET, ViewerProcess, record_full_run, write_metric_journal
from comet_journal.recorder import Experiment
from comet_journal.uploader.journal.read import RunIndex
from comet_journal.uploader.viewer.series import RunSeries, downsample
from comet_journal.uploader.viewer.server import Viewer, make_server


def _arrays(ys):
    return array("d", range(len(ys))), array("d", ys)


def test_downsample_keeps_first_last_and_extremes_in_order():
    rng = random.Random(7)
    ys = [rng.random() for _ in range(100_000)]
    ys[12_345], ys[67_890] = 50.0, -50.0
    xs, ya = _arrays(ys)
    x, y, n = downsample(xs, ya, None, None, 500)
    assert n == len(ys) and len(x) <= 2 * 500 + 2
    assert (x[0], y[0]) == (0, ys[0]) and (x[-1], y[-1]) == (len(ys) - 1, ys[-1])
    assert max(y) == 50.0 and min(y) == -50.0
    assert x == sorted(x)
    assert all(ys[int(xi)] == yi for xi, yi in zip(x, y))  # real points, never averages


def test_downsample_sends_full_resolution_when_zoomed_in():
    xs, ya = _arrays([math.sin(i / 10) for i in range(1_000_000)])
    x, y, n = downsample(xs, ya, 500_000, 500_300, 1000)
    assert x == list(range(499_999, 500_302))  # every point, and one beyond each edge
    assert n == len(x)


def test_series_grow_incrementally_and_sort_out_of_order_steps():
    calls = []
    def read_rows(cursor):  # one journal, "j"
        new = [c for c in calls if c[0] > cursor.get("j", 0)]
        cursor["j"] = max([c[0] for c in new], default=cursor.get("j", 0))
        return new

    run = RunSeries(read_rows)
    calls += [(1, "loss", None, 5, None, 1000, 0.5), (2, "loss", None, 1, None, 1001, "NaN"),
              (3, "loss", None, 2, None, 1002, 0.2), (4, "acc", "train", None, None, 1003, 1)]
    run.refresh(force=True)
    loss = run.get("loss", None)
    assert loss.points == 3 and loss.last_step == 5
    assert [list(a) for a in loss.ordered("step")] == [[2, 5], [0.2, 0.5]]
    calls.append((5, "loss", None, 7, None, 1004, 0.1))
    run.refresh(force=True)
    assert loss.points == 4 and list(loss.ordered("step")[0]) == [2, 5, 7]
    assert run.get("acc", "train").points == 1
    with pytest.raises(KeyError, match="no metric 'acc'"):
        run.get("acc", None)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("full")
    return d / "run.db", record_full_run(d / "run.db")


def test_reader_matches_the_journal_and_never_writes(full_run):
    path, key = full_run
    before = {p: hashlib.sha256(open(p, "rb").read()).hexdigest()
              for p in (str(path), str(path) + "-wal") if os.path.exists(p)}
    index = RunIndex([str(path.parent)])
    assert index.keys() == [key]
    summary = index.summary(key)
    assert (summary.name, summary.status, summary.tags) == ("full-run", "ended",
                                                           ["baseline", "viewer"])
    assert index.params(key) == {"lr": 0.01, "layers": [64, 32], "optimizer": "adam"}
    assert [l["text"] for l in index.output(key)] == ["epoch 1 \x1b[32mok\x1b[0m\n",
                                                      "warning: something\n"]
    assert "<script>" in index.html(key)
    asset = index.items(key)["assets"][0]
    assert b"".join(index.blob_chunks(key, asset["blob"]["$blob"]))[:4] == b"\x89PNG"
    with pytest.raises(KeyError):
        list(index.blob_chunks(key, "0" * 64))
    with pytest.raises(KeyError):
        index.summary("f" * 32)
    after = {p: hashlib.sha256(open(p, "rb").read()).hexdigest() for p in before}
    assert after == before


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_export_writes_every_metric_point(full_run, fmt, tmp_path):
    path, key = full_run
    out = subprocess.run([sys.executable, "-m", "comet_journal.uploader.cli", "export",
                          str(path), "--format", fmt, "--what", "metrics"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    if fmt == "csv":
        got = list(csv.DictReader(io.StringIO(out)))
    else:
        got = [json.loads(line) for line in out.splitlines()]
    journal = rows(path, "log_metric")
    assert len(got) == len(journal)
    assert [int(r["seq"]) for r in got] == [r["seq"] for r in journal]
    assert {r["run"] for r in got} == {key}
    assert [float(r["value"]) for r in got] == [float(r["payload"]["metricValue"])
                                                for r in journal]


def test_export_params_and_output(full_run):
    path, _key = full_run
    cmd = [sys.executable, "-m", "comet_journal.uploader.cli", "export", str(path)]
    params = subprocess.run(cmd + ["--what", "params", "--format", "jsonl"], capture_output=True,
                            text=True, timeout=60, check=True).stdout
    assert {json.loads(l)["name"] for l in params.splitlines()} == {"lr", "layers", "optimizer"}
    output = subprocess.run(cmd + ["--what", "output"], capture_output=True, text=True,
                            timeout=60, check=True).stdout
    lines = list(csv.DictReader(io.StringIO(output)))
    assert [l["stderr"] for l in lines] == ["0", "1"]


def test_view_prints_its_url_first_and_serves_the_page(full_run):
    path, key = full_run
    with ViewerProcess(path) as viewer:
        assert viewer.url.startswith("http://127.0.0.1:") and "token" not in viewer.url
        with urllib.request.urlopen(viewer.url) as r:
            csp = r.headers["Content-Security-Policy"]
            assert "script-src 'self'" in csp and "unsafe-inline" not in csp
            assert b"/static/uPlot.iife.min.js" in r.read()
        with urllib.request.urlopen(f"{viewer.base}/api/run/{key}/html") as r:
            assert r.headers["Content-Security-Policy"].startswith("sandbox")
        request = urllib.request.Request(viewer.base + "/api/runs",
                                         headers={"Host": "evil.example:80"})
        with pytest.raises(urllib.error.HTTPError) as err:  # DNS rebinding
            urllib.request.urlopen(request)
        assert err.value.code == 403


def test_view_refuses_bad_paths_and_non_loopback_without_token(tmp_path):
    (tmp_path / "notes.db").write_text("not a journal")
    res = subprocess.run([sys.executable, "-m", "comet_journal.uploader.cli", "view",
                          str(tmp_path), "--port", "0"], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 2 and "no runs found" in res.stderr
    with pytest.raises(ValueError, match="needs a token"):
        make_server(Viewer(RunIndex([str(tmp_path)]), token=None), "0.0.0.0", 0)


def test_status_is_live_while_the_journal_grows_then_stale(tmp_path):
    path = tmp_path / "run.db"
    key = write_metric_journal(path, 10, ended=False)
    index = RunIndex([str(path)])
    assert index.summary(key).status == "live"  # just written
    old = time.time() - 3600
    os.utime(path, (old, old))
    assert index.summary(key).status == "stale"  # idle for an hour, its writer elsewhere


def _uploads_seen_by_a_viewer(path) -> list:
    with ViewerProcess(path) as viewer, urllib.request.urlopen(viewer.base + "/api/runs") as r:
        return [(u["server"].rstrip("/"), u["pending"]) for u in json.load(r)["runs"][0]["uploads"]]


def test_runs_show_what_is_pending_per_upload_server(tmp_path, emulator):
    # The viewer runs as its own process, as it does for users: SQLite 3.40 can fail a
    # read-only connection opened in the very process that writes the journal.
    path = tmp_path / "run.db"
    exp = Experiment(journal=str(path), project_name="p", workspace="w", **QUIET)
    exp.log_metric("loss", 1.0, step=1)
    exp.flush()
    assert _uploads_seen_by_a_viewer(path) == []  # never uploaded
    subprocess.run([*CLI, "upload", "--url", emulator.url, *FAST, str(path)], check=True,
                   env={**os.environ, "COMET_API_KEY": KEY}, capture_output=True, timeout=60)
    for step in range(2, 5):
        exp.log_metric("loss", 1.0, step=step)
    exp.flush()
    assert _uploads_seen_by_a_viewer(path) == [(emulator.url.rstrip("/"), 3)]
    exp.end()


def test_reads_journals_on_read_only_media(full_run, tmp_path):
    """A journal on a read-only mount (no -wal/-shm can be made next to it) is still read."""
    path, key = full_run
    src, mnt = tmp_path / "media", tmp_path / "mnt"
    src.mkdir()
    mnt.mkdir()
    copy = src / "run.db"  # a finished run, copied as users copy it: one WAL-mode file
    shutil.copy(path, copy)
    if os.path.exists(f"{path}-wal"):
        shutil.copy(f"{path}-wal", f"{copy}-wal")
    conn = sqlite3.connect(str(copy))  # the last connection folds the -wal in, removes it
    conn.execute("SELECT count(*) FROM calls").fetchone()
    conn.close()
    assert sorted(os.listdir(src)) == ["run.db"]
    assert open(copy, "rb").read(20)[18:20] == b"\x02\x02"  # still a WAL-mode journal
    mount = f"mount --bind {src} {mnt} && mount -o remount,ro,bind {mnt}"
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", f"{mount} && ! touch {mnt}/x"],
                           capture_output=True)
    if probe.returncode:
        pytest.skip(f"cannot make a read-only mount here: {probe.stderr.decode()[-200:]}")
    export = f"{sys.executable} -m comet_journal.uploader.cli export {mnt} --what params " \
             "--format jsonl"
    out = subprocess.run(["unshare", "-rm", "sh", "-c", f"{mount} && {export}"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert {json.loads(l)["name"] for l in out.stdout.splitlines()} == {"lr", "layers",
                                                                        "optimizer"}
    assert sorted(os.listdir(src)) == ["run.db"]  # nothing written beside it


def test_a_run_spread_over_several_journals_is_one_run(tmp_path):
    """Ranks or segments of one experiment in several files: one run, every point once."""
    first = Experiment(journal=str(tmp_path / "rank0.db"), project_name="p", workspace="w",
                       **QUIET)
    key = first.get_key()
    second = Experiment(journal=str(tmp_path / "rank1.db"), experiment_key=key,
                        project_name="p", workspace="w", **QUIET)
    for step in range(3):
        first.log_metric("loss", 1.0, step=step)
        second.log_metric("loss", 2.0, step=10 + step)
    first.log_output("from rank 0\n")
    second.log_output("from rank 1\n")
    first.flush()
    second.flush()
    index = RunIndex([str(tmp_path)])
    assert index.keys() == [key] and len(index.places_of(key)) == 2
    run = RunSeries(lambda cursor: index.metric_rows(key, cursor))
    run.refresh(force=True)
    assert run.get("loss", None).points == 6
    output_cursor: dict = {}
    assert {l["text"] for l in index.output(key, output_cursor)} == {"from rank 0\n",
                                                                    "from rank 1\n"}
    second.log_metric("loss", 2.0, step=20)  # only the new point is read, once
    second.log_output("more\n")
    second.flush()
    run.refresh(force=True)
    assert run.get("loss", None).points == 7
    assert list(run.get("loss", None).ordered("step")[0]) == [0, 1, 2, 10, 11, 12, 20]
    assert [l["text"] for l in index.output(key, output_cursor)] == ["more\n"]
    first.end()
    second.end()
