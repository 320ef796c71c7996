"""A one-minute run of the chaos soak (scripts/chaos.py): recorders, daemon and uploaders
killed at random, 10-20% faults of every kind and an outage; nothing missing, duplicated or
out of order at the end."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.timeout(420)  # one minute of chaos, then the upload and the comparison
def test_one_minute_chaos_soak(tmp_path):
    out = tmp_path / "chaos.json"
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "chaos.py"),
                           "--minutes", "1", "--seed", "7", "--workdir", str(tmp_path / "w"),
                           "--json", str(out)], capture_output=True, text=True, timeout=400,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    figures = json.loads(out.read_text())
    assert figures["missing"] == 0 and figures["duplicated"] == 0
    assert figures["out_of_order"] == 0 and figures["lost_outside_window"] == 0
    assert figures["calls_journaled"] > 10_000
    assert figures["recorder_kills"] >= 3 and figures["faults_injected"] > 100
    assert figures["faults_by_kind"].get("drop_after", 0) > 0
    assert figures["faults_by_kind"].get("outage", 0) >= 1
