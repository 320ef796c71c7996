"""comet-upload --help/--version and inspect, run as a real console script."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from comet_journal import Experiment
from comet_journal.uploader import __version__

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "comet_journal.uploader.cli", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=60)


@pytest.fixture
def journal(tmp_path):
    path = str(tmp_path / "run.db")
    with Experiment(journal=path, project_name="proj", workspace="ws",
                    experiment_name="demo") as exp:
        for i in range(10):
            exp.log_metric("loss", 1 / (i + 1), step=i)
        exp.log_parameter("lr", 0.1)
        exp.log_asset_data(b"x" * 1000, name="a.bin")
        exp.log_asset_data(b"x" * 1000, name="same-bytes.bin")
    return path


def test_help_and_version():
    out = run("--help")
    assert out.returncode == 0 and "inspect" in out.stdout and "Examples" in out.stdout
    out = run("--version")
    assert out.returncode == 0 and __version__ in out.stdout
    out = run("inspect", "--help")
    assert out.returncode == 0 and "Never writes" in out.stdout


def test_inspect_text(journal):
    out = run("inspect", journal)
    assert out.returncode == 0, out.stderr
    assert "ws/proj" in out.stdout and "name=demo" in out.stdout
    assert "log_metric" in out.stdout and " 10" in out.stdout
    assert "1000 B in 1 blob (deduplicated)" in out.stdout  # "1 blob", not "1 blobs"


def test_inspect_json(journal):
    out = run("inspect", "--json", journal)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["calls_per_endpoint"]["log_metric"] == 10
    assert summary["calls_per_endpoint"]["upload_asset"] == 2
    assert summary["asset_bytes"] == 1000
    assert summary["format_version"] >= 1
    (exp,) = summary["experiments"]
    assert exp["ended"] and exp["name"] == "demo" and exp["workspace"] == "ws"
    assert summary["last_ms"] >= summary["first_ms"]


def test_inspect_bad_file_exits_1_with_the_file_named(tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("not a journal")
    out = run("inspect", str(bad))
    assert out.returncode == 1
    assert str(bad) in out.stderr and "not an SQLite file" in out.stderr


def test_inspect_usage_error_exits_2():
    out = run("inspect")
    assert out.returncode == 2
