"""The uploader's side of "no loss, no hang": each scenario against a real server process
or socket (the emulator with faults, or a deliberately slow server)."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from test_upload_support import assert_server_matches, make_journal, upload

from comet_journal.uploader.config import resolve
from comet_journal.uploader.replay.summary import Options
from comet_journal.uploader.upload import upload_journal
from comet_journal.uploader.wire.retry import RetryPolicy

POLICY = RetryPolicy(base_s=0.01, cap_s=0.05, read_timeout_s=3)


# --- a create answered without a usable key is not a creation ------------------------------

@pytest.mark.parametrize("clientlib,route", [(True, "clientlib_add_run"),
                                             (False, "experiment_create")],
                         ids=["clientlib", "documented-only"])
def test_a_create_answered_200_empty_is_retried_never_marked_done(emulator_factory, tmp_path,
                                                                    clientlib, route):
    emu = emulator_factory(clientlib=clientlib, faults={"rules": [
        {"route": route, "kind": "empty_ok", "count": 2}]})
    path = make_journal(tmp_path / "run.db", points=20)
    summary = upload_journal(path, resolve(api_key="test-key", url=emu.url),
                             Options(policy=POLICY))
    assert summary.rejected == [] and summary.retried >= 2
    assert emu.state()["faults"].get("empty_ok") == 2  # both answers were the empty kind
    assert_server_matches(emu, path)


# --- a server trickling its answer cannot hang the uploader -------------------------------

class _SlowLoris:
    """Answers every request with headers, then one body byte per second, forever."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn):
        try:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 1000\r\n\r\n")
            while not self.stop.wait(1.0):
                conn.sendall(b" ")
        except OSError:
            pass
        finally:
            conn.close()

    def close(self):
        self.stop.set()
        self.sock.close()


@pytest.mark.timeout(90)
def test_a_slow_loris_server_counts_as_a_timeout_and_the_deadline_ends_the_run(tmp_path):
    path = make_journal(tmp_path / "run.db", points=3)
    server = _SlowLoris()
    try:
        started = time.monotonic()
        proc = upload(type("S", (), {"url": f"http://127.0.0.1:{server.port}"})(), path,
                      "--timeout", "2", "--deadline", "4", "--json", timeout=80)
        elapsed = time.monotonic() - started
    finally:
        server.close()
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)["journals"][0]
    assert "no successful answer" in report["error"]
    # before: the per-read timeout never fired (a byte a second) and this never ended
    assert elapsed < 20


# --- a kill leaves in doubt only the calls in flight ---------------------------------------

def _metric_journal(path, points: int) -> str:
    from test_upload_support import new_experiment
    with new_experiment(path, "acks") as exp:
        for i in range(points):
            exp.log_metric("loss", 1.0 / (i + 1), step=i)
    return str(path)


@pytest.mark.timeout(120)
def test_a_kill_duplicates_at_most_the_calls_in_flight_without_read_back(emulator_factory,
                                                                          tmp_path):
    """A server with no read API (every read 404) and no deduplication: after each SIGKILL
    the uploader cannot look anything up, so whatever was applied but not yet recorded is
    sent again. Acks are recorded as they come, so that is at most what was in flight."""
    import os
    import signal
    import subprocess

    from test_upload_support import CLI, FAST, KEY, ROOT, applied_counts, run_cli

    concurrency, kills = 4, 3
    path = _metric_journal(tmp_path / "run.db", 3000)
    emu = emulator_factory(dedupe=False, faults={"rules": [
        {"route": "read:experiment/metrics/get-metric", "kind": "status", "status": 404},
        {"route": "log_metric", "kind": "latency", "ms": 2}]})
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMET_")}
    env["PYTHONPATH"] = ROOT
    for _ in range(kills):
        before = applied_counts(emu).get("log_metric", 0)
        proc = subprocess.Popen([*CLI, "--url", emu.url, "--api-key", KEY, *FAST,
                                 "--concurrency", str(concurrency), path], cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while applied_counts(emu).get("log_metric", 0) < before + 200 and \
                time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    run_cli("--url", emu.url, "--api-key", KEY, *FAST, path, check=0, timeout=90)
    points = [a for a in emu.state()["applied"] if a["endpoint"] == "log_metric"]
    steps = [a["fields"]["step"] for a in points]
    duplicated = len(steps) - len(set(steps))
    assert set(steps) == set(range(3000))  # nothing lost
    assert duplicated <= kills * concurrency, duplicated
