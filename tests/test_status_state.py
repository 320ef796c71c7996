"""``comet-upload status --state DIR`` (and ``$COMET_JOURNAL_STATE``) reads upload progress
from that state directory, like ``upload`` and ``watch`` write it there."""

from __future__ import annotations

import json

from test_upload_support import FAST, KEY, make_journal, run_cli


def _status(*args, env=None) -> dict:
    proc = run_cli("status", "--json", *args, env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_status_reads_progress_from_the_state_directory_given(emulator, tmp_path):
    runs, state, other = tmp_path / "runs", tmp_path / "state", tmp_path / "other"
    runs.mkdir()
    path = make_journal(runs / "run.db", points=10)
    up = run_cli("--url", emulator.url, "--api-key", KEY, *FAST, "--state", state, path)
    assert up.returncode == 0, up.stderr
    by_option = _status("--url", emulator.url, "--state", state, path)["journals"][0]
    assert by_option["total_calls"] > 0 and by_option["pending"] == 0
    assert by_option["uploaded"] == by_option["total_calls"]
    by_env = _status("--url", emulator.url, path, env={"COMET_JOURNAL_STATE": str(state)})
    assert by_env["journals"][0]["pending"] == 0
    elsewhere = _status("--url", emulator.url, "--state", other, path)["journals"][0]
    assert elsewhere["pending"] == elsewhere["total_calls"]  # no progress there: all pending
    directory = _status("--state", state, runs)
    assert directory["counts"]["uploaded"] == 1 and directory["journals"][0]["pending"] == 0
    unknown = _status(runs, env={"COMET_JOURNAL_STATE": str(other)})
    assert unknown["counts"]["uploaded"] == 0 and unknown["journals"][0]["pending"] > 0
