"""``comet-emulator``: first line, signals, exit status, flags; a real process each time."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parents[1]


def launch(*args: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "comet_journal.emulator.cli", *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = proc.stdout.readline().strip()
    if not first.startswith("listening on http://"):
        proc.kill()
        pytest.fail(f"first line {first!r}; stderr: {proc.stderr.read()}")
    return proc, first[len("listening on "):]


def finish(proc: subprocess.Popen, signum: int = signal.SIGTERM) -> tuple[int, str]:
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=20)
    return proc.returncode, stderr


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_serves_until_a_signal_then_exits_0_and_keeps_its_state(tmp_path, signum):
    db = str(tmp_path / "emu.db")
    proc, url = launch("--port", "0", "--db", db, "--api-key", "cli-secret", "-vv")
    headers = {"Authorization": "cli-secret"}
    created = requests.post(url + "/api/rest/v2/write/experiment/create", headers=headers,
                            json={"workspaceName": "ws", "projectName": "p"}, timeout=10)
    key = created.json()["experimentKey"]
    assert requests.get(url + "/emulator/state", headers={"Authorization": "nope"},
                        timeout=10).status_code == 401
    status, stderr = finish(proc, signum)
    assert status == 0
    assert "cli-secret" not in stderr  # logs at -vv never show the key
    assert "/api/rest/v2/write/experiment/create" in stderr

    proc, url = launch("--db", db, "--api-key", "cli-secret")
    state = requests.get(url + "/emulator/state", headers=headers, timeout=10).json()
    assert list(state["experiments"]) == [key]
    assert finish(proc)[0] == 0


def test_fault_flags_install_a_spec(tmp_path):
    spec = {"seed": 5, "rules": [{"route": "log_metric", "kind": "status", "status": 503}]}
    proc, url = launch("--faults", json.dumps(spec), "--latency-ms", "5")
    try:
        shown = requests.get(url + "/emulator/faults", headers={"Authorization": "test-key"},
                             timeout=10).json()["spec"]
        assert shown["seed"] == 5
        assert [r["kind"] for r in shown["rules"]] == ["latency", "status"]
        assert shown["rules"][0]["ms"] == 5
    finally:
        assert finish(proc)[0] == 0


def test_a_bad_fault_spec_exits_1_with_the_reason():
    done = subprocess.run([sys.executable, "-m", "comet_journal.emulator.cli", "--faults",
                           '{"rules": [{"kind": "meteor"}]}'], cwd=REPO, capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 1
    assert done.stdout == ""
    assert "Error:" in done.stderr and "kind must be one of" in done.stderr


def test_the_library_does_not_import_click():
    code = "import sys, emulator, emulator.testing; sys.exit('click' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO, timeout=30).returncode == 0


def test_console_script_is_declared():
    text = (REPO / "pyproject.toml").read_text()
    assert 'comet-emulator = "comet_journal.emulator.cli:main"' in text
    script = Path(sys.executable).parent / "comet-emulator"
    if script.exists():  # installed (scripts/test installs the project)
        done = subprocess.run([str(script), "--help"], capture_output=True, text=True,
                              timeout=30, env={**os.environ})
        assert done.returncode == 0 and "--faults" in done.stdout
