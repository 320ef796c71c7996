"""comet-upload end to end: a real emulator on a real socket, real journals, the real CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time

import pytest

from comet_journal.emulator.testing import EmulatorClient
from test_upload_support import (CLI, FAST, KEY, ROOT, applied_counts, assert_server_matches,
                                 make_journal, new_experiment, run_cli, upload)


@pytest.fixture
def journal(tmp_path):
    return make_journal(tmp_path / "run.db")


# --- exit 0, summary, --json, documented-only server -------------------------------------

@pytest.mark.parametrize("clientlib", [True, False], ids=["clientlib", "documented-only"])
def test_upload_everything_once(emulator_factory, tmp_path, clientlib):
    emu = emulator_factory(clientlib=clientlib)
    path = make_journal(tmp_path / "run.db", experiments=2, assets=True)
    proc = upload(emu, path, "--json", check=0)
    summary = json.loads(proc.stdout)["journals"][0]
    assert summary["rejected"] == 0 and summary["uploaded"] == summary["calls_total"]
    created = {e["created_by"] for e in summary["experiments"]}
    assert created == {"client-key" if clientlib else "rest-create"}
    assert_server_matches(emu, path)
    routes = emu.state()["requests"]["by_route"]
    if not clientlib:
        assert not any(r.startswith(("clientlib_", "batch_")) for r in routes), routes
    # the big asset streamed in journal chunks arrived intact
    import sqlite3
    conn = sqlite3.connect(path)
    shas = {json.loads(p)["file"]["$blob"] for (p,) in conn.execute(
        "SELECT payload FROM calls WHERE endpoint='upload_asset'")}
    conn.close()
    server_shas = {a["fields"]["file"]["sha256"] for a in emu.state()["applied"]
                   if a["endpoint"] == "upload_asset"}
    assert shas == server_shas
    again = upload(emu, path, "--json", check=0)
    second = json.loads(again.stdout)["journals"][0]
    assert second["uploaded"] == 0 and second["skipped_already_uploaded"] == \
        second["calls_total"]
    assert_server_matches(emu, path)


def test_human_summary_and_progress_bar(emulator, journal):
    proc = upload(emulator, journal, "--progress", check=0)
    assert "uploaded:" in proc.stdout and "rejected:  0" in proc.stdout
    assert "experiment " in proc.stdout and emulator.url in proc.stdout
    assert "calls/s" in proc.stderr and "ETA" in proc.stderr


# --- exit codes -----------------------------------------------------------------------------

def test_exit_2_usage(journal):
    assert run_cli("upload").returncode == 2
    assert run_cli("--deadline", "soon", journal, env={"COMET_API_KEY": KEY}).returncode == 2
    assert "Exit codes" in run_cli("--help").stdout


def test_exit_1_bad_key_stops_at_once_and_never_shows_the_key(emulator, journal):
    secret = "wrong-secret-key-12345"
    proc = run_cli("--url", emulator.url, "--api-key", secret, "-vv", *FAST, journal)
    assert proc.returncode == 1
    assert "Error:" in proc.stderr and "API key" in proc.stderr
    assert secret not in proc.stdout + proc.stderr
    assert emulator.state()["applied"] == []
    assert emulator.state()["requests"]["total"] <= 3  # stopped at once, no retry storm


def test_exit_1_unreadable_journal(emulator, tmp_path):
    bad = tmp_path / "notes.db"
    bad.write_text("not a journal")
    proc = upload(emulator, bad)
    assert proc.returncode == 1 and "Error:" in proc.stderr and "not" in proc.stderr


def test_exit_1_unreachable_past_deadline_keeps_progress(journal, tmp_path):
    proc = run_cli("--url", "http://127.0.0.1:9", "--api-key", KEY, *FAST, "--deadline", "1",
                   journal, timeout=30)
    assert proc.returncode == 1 and "deadline" in proc.stderr
    status = run_cli("status", "--url", "http://127.0.0.1:9", "--json", journal, check=0)
    report = json.loads(status.stdout)["journals"][0]
    assert report["pending"] == report["total_calls"] and report["last_error"]


def test_exit_3_rejected_then_retry_rejected(emulator, journal):
    emulator.set_faults({"rules": [{"route": "log_html", "kind": "status", "status": 400,
                                    "count": 1}]})
    proc = upload(emulator, journal, "--json")
    assert proc.returncode == 3, proc.stderr
    summary = json.loads(proc.stdout)["journals"][0]
    assert [r["endpoint"] for r in summary["rejected_calls"]] == ["log_html"]
    assert summary["rejected_calls"][0]["status"] == 400
    human = upload(emulator, journal)
    assert human.returncode == 0  # nothing pending: the rejected call is kept, not resent
    emulator.set_faults({"rules": []})
    assert upload(emulator, journal, "--retry-rejected").returncode == 0
    assert_server_matches(emulator, journal)


# --- configuration and secrets ------------------------------------------------------------

def test_api_key_from_env_and_config_file_and_never_in_output(emulator, journal, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / ".comet.config").write_text(f"[comet]\napi_key = {KEY}\n"
                                        f"url_override = {emulator.url}/clientlib/\n")
    proc = run_cli("-vv", *FAST, journal, env={"HOME": str(home)})
    assert proc.returncode == 0, proc.stderr
    assert KEY not in proc.stdout + proc.stderr
    proc = run_cli("-vv", "--json", journal, env={"COMET_API_KEY": KEY,
                                                  "COMET_URL_OVERRIDE": emulator.url})
    assert proc.returncode == 0 and KEY not in proc.stdout + proc.stderr
    assert_server_matches(emulator, journal)
    proc = run_cli("--url", emulator.url, journal, env={"HOME": str(tmp_path)})
    assert proc.returncode == 1 and "API key" in proc.stderr


# --- dry run, status ------------------------------------------------------------------------

def test_dry_run_sends_nothing_and_status(emulator, journal):
    proc = run_cli("--dry-run", "--url", emulator.url, journal, check=0)
    assert "log_metric" in proc.stdout and "nothing sent" in proc.stdout
    assert emulator.state()["requests"]["total"] == 0
    dry = json.loads(run_cli("--dry-run", "--json", "--url", emulator.url, journal,
                             check=0).stdout)
    assert dry["journals"][0]["pending"] == dry["journals"][0]["total_calls"]
    before = json.loads(run_cli("status", "--json", "--url", emulator.url, journal,
                                check=0).stdout)["journals"][0]
    exp = before["experiments"][0]
    assert exp["per_endpoint"]["log_metric"]["calls"] == 61 and exp["oldest_pending_ms"]
    upload(emulator, journal, check=0)
    after = json.loads(run_cli("status", "--json", "--url", emulator.url, journal,
                               check=0).stdout)["journals"][0]
    assert after["pending"] == 0 and after["uploaded"] == after["total_calls"]
    text = run_cli("status", "--url", emulator.url, journal, check=0).stdout
    assert "0 pending" in text


# --- retries ----------------------------------------------------------------------------------

def test_throttle_pauses_everything(emulator, journal):
    emulator.set_faults({"rules": [{"route": "log_metric", "kind": "throttle",
                                    "retry_after": 1, "header": "custom", "count": 1}]})
    started = time.monotonic()
    proc = upload(emulator, journal, "--json", "--concurrency", "8", check=0)
    elapsed = time.monotonic() - started
    summary = json.loads(proc.stdout)["journals"][0]
    assert summary["throttled"] == 1 and elapsed >= 1.0
    assert_server_matches(emulator, journal)


@pytest.mark.parametrize("clientlib", [True, False], ids=["clientlib", "documented-only"])
def test_exactly_once_under_faults(emulator_factory, tmp_path, clientlib):
    path = make_journal(tmp_path / "run.db", experiments=2, points=150, assets=True)
    rules = [{"route": "*", "kind": kind, "rate": 0.1 / 5, **extra} for kind, extra in (
        ("status", {"status": 503}), ("throttle", {"retry_after": 0.05}), ("drop_before", {}),
        ("drop_after", {}), ("slow_body", {"duration_ms": 30}))]
    emu = emulator_factory(clientlib=clientlib, dedupe=False,
                           faults={"seed": 7, "rules": rules})
    proc = upload(emu, path, "--json", "--concurrency", "8", timeout=120)
    assert proc.returncode == 0, proc.stderr
    faults = emu.state()["faults"]
    assert faults["drop_after"] > 0 and faults["status"] > 0
    assert_server_matches(emu, path)


def test_batch_mode_and_fallback(emulator_factory, tmp_path):
    path = make_journal(tmp_path / "run.db", points=300)
    emu = emulator_factory(faults={"seed": 3, "rules": [
        {"route": ["batch_metrics", "batch_parameters", "batch_output"], "kind": "drop_after",
         "count": 2}]})
    proc = upload(emu, path, "--batch", "--json", check=0)
    assert json.loads(proc.stdout)["journals"][0]["batches"] >= 1
    counts = applied_counts(emu)
    assert counts["batch_metrics"] >= 1 and counts["log_metric"] == 0
    assert_server_matches(emu, path)
    bare = emulator_factory(clientlib=False)
    path2 = make_journal(tmp_path / "run2.db", points=30)
    upload(bare, path2, "--batch", check=0)
    assert applied_counts(bare)["log_metric"] == 31
    assert_server_matches(bare, path2)


# --- crashes, locks, live journals ----------------------------------------------------------

def _applied_count(emu) -> int:
    client = EmulatorClient(emu)
    try:
        state = client.get("/emulator/state", params={"summary": "1"}).json()
    finally:
        client.close()
    return sum(state["applied"].values())


def _wait_until(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_kill_9_mid_upload_then_resume(emulator_factory, tmp_path):
    path = make_journal(tmp_path / "run.db", experiments=2, points=300)
    emu = emulator_factory(faults={"rules": [{"route": "*", "kind": "latency", "ms": 4},
                                             {"route": "*", "kind": "drop_after",
                                              "rate": 0.03}]})
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMET_")}
    env["PYTHONPATH"] = ROOT
    for delay in (0.3, 0.1):
        before = _applied_count(emu)
        proc = subprocess.Popen([*CLI, "--url", emu.url, "--api-key", KEY, *FAST,
                                 "--concurrency", "4", path], cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_until(lambda: _applied_count(emu) > before or proc.poll() is not None)
        time.sleep(delay)  # killed mid-upload, however slow the machine is to start it
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert 0 < len(emu.state()["applied"])
    emu.set_faults({"rules": []})
    proc = upload(emu, path, "--json", check=0)
    summary = json.loads(proc.stdout)["journals"][0]
    assert summary["skipped_already_uploaded"] > 0
    assert_server_matches(emu, path)


def test_second_uploader_refuses_or_waits(emulator, journal):
    # ~40 requests at 150 ms: the first holds the journal for seconds, longer than the second
    # takes to start on a loaded machine (at 25 ms it had sometimes finished already).
    emulator.set_faults({"rules": [{"route": "*", "kind": "latency", "ms": 150}]})
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMET_")}
    env["PYTHONPATH"] = ROOT
    first = subprocess.Popen([*CLI, "--url", emulator.url, "--api-key", KEY,
                              "--concurrency", "1", journal],
                             cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _wait_until(lambda: _applied_count(emulator) > 0)  # the first holds the journal now
    second = upload(emulator, journal)
    assert second.returncode == 1 and "another comet-upload" in second.stderr
    waiting = upload(emulator, journal, "--wait", "--json", timeout=120)
    assert first.wait(timeout=120) == 0
    assert waiting.returncode == 0
    assert json.loads(waiting.stdout)["journals"][0]["uploaded"] == 0
    emulator.set_faults({"rules": []})
    assert_server_matches(emulator, journal)


def test_live_journal_uploads_up_to_its_current_end(emulator, tmp_path):
    path = tmp_path / "live.db"
    exp = new_experiment(path, "live")
    stop = threading.Event()

    def train():
        i = 0
        while not stop.is_set():
            exp.log_metric("loss", float(i), step=i)
            i += 1
            if i % 10 == 0:  # a few hundred calls/s: enough to be live, quick to upload
                exp.flush()
                time.sleep(0.02)

    writer = threading.Thread(target=train)
    writer.start()
    time.sleep(0.3)
    try:
        first = upload(emulator, str(path), "--json", check=0)
        assert json.loads(first.stdout)["journals"][0]["uploaded"] > 0
    finally:
        stop.set()
        writer.join()
        exp.end()
    upload(emulator, str(path), check=0)
    assert_server_matches(emulator, str(path))
