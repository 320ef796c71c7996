"""The first hour of a new user: comet-upload as a real subprocess against the emulator (or a
server that is not Comet), checking exit codes, messages and what ``status`` says after the
scenarios a new user meets: a typo, a wrong URL, a wrong key, a killed uploader, a killed
recorder."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time

import pytest

from test_upload_support import CLI, FAST, KEY, ROOT, make_journal, run_cli

FAST_BATCHED = [a for a in FAST if a != "--no-batch"]  # the default: batched


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _key_file(tmp_path, key=KEY) -> str:
    path = tmp_path / "comet.key"
    path.write_text(key + "\n")
    return str(path)


def _upload(url, *args, key_file, **kw):
    return run_cli("--url", url, "--api-key-file", key_file, *FAST_BATCHED, *args, **kw)


def _status(*args) -> str:
    proc = run_cli("status", *args)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture
def journal(tmp_path):
    return _quiet_journal(tmp_path)


def _quiet_journal(tmp_path, name="run.db", points=40):
    return make_journal(tmp_path / name, points=points)  # conftest: COMET_JOURNAL_QUIET=1


# --- subcommands that cannot be mistaken ----------------------------------------------------

def test_a_typo_is_a_usage_error_and_nothing_is_sent(emulator, journal, tmp_path):
    proc = run_cli("stauts", journal, "--url", emulator.url)
    assert proc.returncode == 2, proc.stderr
    assert "Did you mean `status`?" in proc.stderr
    proc = run_cli("--url", emulator.url, "--api-key-file", _key_file(tmp_path), "nothere.db")
    assert proc.returncode == 2 and "nothere.db" in proc.stderr
    proc = run_cli("--url", emulator.url, "--api-key-file", _key_file(tmp_path), journal,
                   "missing.db")
    assert proc.returncode == 2 and "missing.db" in proc.stderr
    assert emulator.state()["requests"]["total"] == 0  # nothing sent, not even the valid one


def test_a_directory_uploads_every_journal_in_it(emulator, tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    _quiet_journal(runs, "a.db", points=5)
    _quiet_journal(runs, "b.db", points=5)
    (runs / "notes.db").write_text("not a journal")
    assert "every journal" in run_cli("upload", "--help").stdout
    proc = _upload(emulator.url, "--json", str(runs), key_file=_key_file(tmp_path))
    assert proc.returncode == 0, proc.stderr
    done = json.loads(proc.stdout)["journals"]
    assert sorted(os.path.basename(j["journal"]) for j in done) == ["a.db", "b.db"]
    assert all(j["uploaded"] == j["calls_total"] for j in done)
    shown = run_cli("inspect", str(runs))
    assert shown.returncode == 0 and "a.db" in shown.stdout and "b.db" in shown.stdout
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = _upload(emulator.url, str(empty), key_file=_key_file(tmp_path))
    assert proc.returncode == 2 and "no journal" in proc.stderr


# --- batch by default -------------------------------------------------------------------------

def test_batch_is_the_default_and_no_batch_opts_out(emulator_factory, tmp_path):
    key = _key_file(tmp_path)
    for args, batched in (([], True), (["--batch"], True), (["--no-batch"], False)):
        emu = emulator_factory()
        path = _quiet_journal(tmp_path, f"run{len(args)}{batched}.db", points=30)
        proc = _upload(emu.url, "--json", *args, path, key_file=key)
        assert proc.returncode == 0, proc.stderr
        summary = json.loads(proc.stdout)["journals"][0]
        endpoints = {a["endpoint"] for a in emu.state()["applied"]}
        assert (summary["batches"] > 0) is batched, (args, summary)
        assert ("log_metric" in endpoints) is not batched, (args, endpoints)
        assert summary["uploaded"] == summary["calls_total"]


# --- feedback while waiting, and servers that are not Comet ---------------------------------

def test_retrying_says_why_and_until_when(journal, tmp_path):
    url = f"http://127.0.0.1:{_free_port()}"  # nobody listens there
    proc = run_cli("--url", url, "--api-key-file", _key_file(tmp_path), "--deadline", "2",
                   "--backoff-base", "0.2", "--backoff-cap", "0.5", "--progress", "-v",
                   journal, timeout=60)
    assert proc.returncode == 1
    assert re.search(r"retrying: connection refused \(attempt \d+, next in \d+ s, giving up "
                     r"at \d\d:\d\d:\d\d\)", proc.stderr), proc.stderr
    logged = [line for line in proc.stderr.splitlines() if "INFO: retrying" in line]
    assert len(logged) == 1, logged  # -v: once per cause, not once per attempt
    assert "documented REST endpoints only" not in proc.stderr  # it never connected
    assert "deadline" in proc.stderr and "connection refused" in proc.stderr.splitlines()[-2]


def test_a_server_that_is_not_comet_is_reported_at_once(journal, tmp_path):
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind",
                               "127.0.0.1", "--directory", str(tmp_path)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_port(port)
        started = time.monotonic()
        proc = run_cli("--url", f"http://127.0.0.1:{port}", "--api-key-file",
                       _key_file(tmp_path), journal, timeout=60)
        assert proc.returncode == 1
        assert time.monotonic() - started < 20  # not the 300 s deadline
        assert f"not a Comet server at http://127.0.0.1:{port}" in proc.stderr
        assert "HTML page" in proc.stderr and "Traceback" not in proc.stderr
    finally:
        server.terminate()
        server.wait(10)


def _wait_port(port: int) -> None:
    for _ in range(100):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")


# --- status tells the truth ------------------------------------------------------------------

def test_status_after_a_wrong_url_then_the_right_one(emulator, journal, tmp_path):
    key = _key_file(tmp_path)
    text = _status(journal)
    assert "never uploaded" in text and "0 uploaded" in text
    dead = f"http://127.0.0.1:{_free_port()}"
    assert _upload(dead, "--deadline", "1", journal, key_file=key).returncode == 1
    assert _upload(emulator.url, journal, key_file=key).returncode == 0
    text = _status(journal)  # no --url: every server it has progress for
    assert f"server:    {emulator.url}\n" in text
    assert f"tried:     {dead} (nothing acknowledged)" in text
    assert "also uploaded to" not in text
    right = text.split("tried:")[0] if text.index("server:") < text.index("tried:") else \
        text.split("server:")[1]
    assert "0 pending" in right and "error" not in right
    assert "connection refused" in text.split("tried:")[1]  # the tried server's error
    data = json.loads(run_cli("status", "--json", journal).stdout)["journals"][0]
    tried = {t["server"]: t["tried_only"] for t in data["targets"]}
    assert tried == {dead: True, emulator.url: False}
    only = json.loads(run_cli("status", "--json", "--url", emulator.url,
                              journal).stdout)["journals"][0]
    assert only["pending"] == 0 and len(only["targets"]) == 1


def test_status_after_a_wrong_key_then_the_right_one(emulator, journal, tmp_path):
    proc = _upload(emulator.url, journal, key_file=_key_file(tmp_path, "wrong-key"))
    assert proc.returncode == 1 and "wrong-key" not in proc.stderr + proc.stdout
    text = _status("--url", emulator.url, journal)
    assert "401" in text.replace(emulator.url, "") and "error" in text
    assert _upload(emulator.url, journal, key_file=_key_file(tmp_path)).returncode == 0
    text = _status("--url", emulator.url, journal).replace(emulator.url, "")  # its port may
    assert "401" not in text and "error" not in text and " 0 pending" in text  # hold "401"


def test_status_after_a_killed_uploader(emulator_factory, tmp_path):
    emu = emulator_factory(faults={"rules": [{"route": "*", "kind": "latency", "ms": 300}]})
    path = _quiet_journal(tmp_path, points=60)
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMET_")}
    env["PYTHONPATH"] = ROOT
    proc = subprocess.Popen([*CLI, "--url", emu.url, "--api-key-file", _key_file(tmp_path),
                             "--no-batch", "--concurrency", "2", path], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_until(lambda: _acked(path) > 3)
        running = _status(path)
        assert f"pid {proc.pid}" in running and "not running" not in running
        assert "in doubt" not in running  # in flight, settled by the running uploader
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    text = _status(path)
    assert f"uploader:  stopped (pid {proc.pid}, not running)" in text
    doubt = re.search(r"in doubt:  up to (\d+) calls", text)
    pending = int(re.search(r"(\d+) pending", text).group(1))
    assert doubt and 0 < int(doubt.group(1)) <= pending
    assert "run:       ended" in text


def _acked(path) -> int:
    try:
        # the uploader's progress, in its state directory (the journal attached)
        from comet_journal.uploader.journal.progress_store import open_progress_view
        conn = open_progress_view(str(path))
        try:
            row = conn.execute("SELECT acked_through FROM upload_targets").fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return 0
    return row[0] if row else 0


def _wait_until(condition, timeout=20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


RECORDER = """
import sys, time
from comet_journal import Experiment
exp = Experiment(journal=sys.argv[1], project_name="p", workspace="w", log_code=False,
                 auto_output_logging=False, system_monitor_interval=None)
exp.log_metric("loss", 1.0, step=1)
exp.flush()
print("ready", flush=True)
time.sleep(60)
"""


def test_status_after_a_killed_recorder_is_stale_as_watch_says(tmp_path):
    path = str(tmp_path / "runs" / "killed.db")
    os.makedirs(os.path.dirname(path))
    env = dict(os.environ, PYTHONPATH=ROOT)
    rec = subprocess.Popen([sys.executable, "-c", RECORDER, path], stdout=subprocess.PIPE,
                           text=True, env=env, cwd=ROOT)
    try:
        assert rec.stdout.readline().strip() == "ready"
        assert "run:       live" in _status("--stale-after", "0.3", path)
    finally:
        rec.send_signal(signal.SIGKILL)
        rec.wait(10)
    time.sleep(0.5)
    assert "run:       stale" in _status("--stale-after", "0.3", path)
    assert "run:       live" in _status("--stale-after", "600", path)  # the same rule as watch
    assert _status("--stale-after", "0.3", str(tmp_path / "runs")).startswith("stale ")


# --- links, the key, output options -----------------------------------------------------------

def test_the_summary_links_to_the_experiment_and_the_key_stays_off_the_command_line(
        emulator, journal, tmp_path):
    proc = _upload(emulator.url, journal, key_file=_key_file(tmp_path))
    assert proc.returncode == 0, proc.stderr
    server_key = re.search(r"-> ([0-9a-f]{32})", proc.stdout).group(1)
    assert f"{emulator.url}/ws/proj/{server_key}" in proc.stdout
    assert "Warning" not in proc.stderr  # a key file: no warning
    proc = run_cli("--url", emulator.url, "--api-key", KEY, *FAST_BATCHED, journal)
    assert proc.returncode == 0
    assert "visible to other users" in proc.stderr and "--api-key-file" in proc.stderr
    assert KEY not in proc.stderr + proc.stdout


COMMANDS = ("upload", "status", "inspect", "watch", "view", "export", "import")


def test_every_command_has_json_quiet_and_verbose():
    # the declared options (what --help prints): in-process, no need for 7 interpreters
    from comet_journal.uploader.cli import main
    assert sorted(main.commands) == sorted(COMMANDS)
    for name, command in main.commands.items():
        opts = {p.name: set(p.opts) for p in command.params}
        assert opts.get("as_json", set()) >= {"--json"}, name
        assert opts.get("quiet") == {"-q", "--quiet"} and opts.get("verbose") == {
            "-v", "--verbose"}, name
    assert "--json-log" in {o for p in main.commands["watch"].params for o in p.opts}
    assert "stale_after" in {p.name for p in main.commands["watch"].params} & {
        p.name for p in main.commands["status"].params}
    assert re.search(r"--batch-size INTEGER RANGE +Most metrics", run_cli("upload", "--help").stdout)


def test_machine_output_is_json_for_status_inspect_export(journal):
    # (upload --json: test_a_directory_uploads_every_journal_in_it)
    assert json.loads(run_cli("status", "--json", journal).stdout)["exit_code"] == 0
    assert json.loads(run_cli("inspect", "--json", journal).stdout)["calls"] > 0
    rows = run_cli("export", "--json", journal).stdout.splitlines()
    assert rows and all("run" in json.loads(line) for line in rows)


def test_dry_run_warns_without_a_key_and_says_what_it_counts(journal):
    proc = run_cli("--dry-run", journal)
    assert proc.returncode == 0
    assert "no API key is set" in proc.stderr
    assert "plus the requests' encoding" in proc.stdout


def test_the_recorder_says_where_the_journal_is_and_how_to_upload_it(tmp_path):
    code = ("import sys\nfrom comet_journal import Experiment\n"
            "q = {'1': True, '0': None}[sys.argv[2]]\n"
            "exp = Experiment(journal=sys.argv[1], project_name='p', log_code=False, "
            "auto_output_logging=False, quiet=q)\nexp.log_metric('a', 1)\nexp.end()\n")
    env = {k: v for k, v in os.environ.items() if k != "COMET_JOURNAL_QUIET"}
    env["PYTHONPATH"] = ROOT
    path = str(tmp_path / "r.db")

    def stderr(quiet: str, **extra) -> str:
        return subprocess.run([sys.executable, "-c", code, path, quiet], env={**env, **extra},
                              capture_output=True, text=True, timeout=60).stderr

    said = stderr("0")
    assert f"is in {path}; upload it with: comet-upload {path}" in said
    assert "upload it with" not in stderr("1")
    assert "upload it with" not in stderr("0", COMET_JOURNAL_QUIET="1")


def test_the_emulator_names_the_port_it_cannot_listen_on():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "comet_journal.emulator.cli", "--port",
                               str(port)], capture_output=True, text=True, timeout=60,
                              cwd=ROOT)
    assert proc.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in proc.stderr and "--port 0" in proc.stderr


def test_rejections_say_not_sent_once():
    from comet_journal.uploader.cli.options import rejection_text
    assert rejection_text({"status": 0, "message": "not sent: no project id"}) == \
        "not sent: no project id"
    assert rejection_text({"status": 0, "message": "no project id"}) == "not sent: no project id"
    assert rejection_text({"status": 400, "message": "bad"}) == "HTTP 400: bad"


def test_the_retry_cause_in_a_few_words():
    from comet_journal.uploader.wire.retry import short_cause
    assert short_cause("call 3 (log_metric): HTTP 502: an HTML page ('502 Bad Gateway')") == \
        "HTTP 502: an HTML page ('502 Bad Gateway')"
    assert short_cause("probe: ConnectionError: HTTPConnectionPool(host='h', port=1): Max "
                       "retries exceeded ([Errno 111] Connection refused)") == "connection refused"
    assert short_cause("x: ReadTimeout: Read timed out. (read timeout=3)") == \
        "no answer (timed out)"
    assert short_cause("x: ConnectionError: [Errno -2] Name or service not known") == \
        "host not found (DNS)"
