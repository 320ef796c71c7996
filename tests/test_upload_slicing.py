"""The hooks the watch daemon drives the replay with: a shared ServerGate, time slices, and a
stop event set from another thread. Real emulator, real sockets, real journals."""

from __future__ import annotations

import threading
import time

import pytest

from test_upload_support import KEY, assert_server_matches, make_journal
from comet_journal.uploader.config import resolve
from comet_journal.uploader.journal.progress_store import open_progress_view
from comet_journal.uploader.replay.summary import STOP_GRACE_S, Options
from comet_journal.uploader.wire.retry import RetryPolicy, ServerGate
from comet_journal.uploader.upload import upload_journal

FAST = dict(base_s=0.01, cap_s=0.05, read_timeout_s=30)


def config(emu):
    return resolve(url=emu.url, api_key=KEY, environ={})


def upload_in_thread(path, cfg, options, timeout):
    """Run the upload in a thread; fail (instead of hanging the suite) if it does not end."""
    box: dict = {}

    def go():
        try:
            box["summary"] = upload_journal(path, cfg, options)
        except BaseException as exc:  # noqa: BLE001 - reported below
            box["error"] = exc

    thread = threading.Thread(target=go, daemon=True)
    started = time.monotonic()
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"the upload did not return within {timeout} s"
    assert "error" not in box, box.get("error")
    return box["summary"], time.monotonic() - started


def read_routes(emu) -> list[str]:
    return [r for r in emu.state()["requests"]["by_route"] if r.startswith("read:")]


def test_a_shared_gate_holds_the_replay_and_learns_its_throttles(emulator, tmp_path):
    path = make_journal(tmp_path / "run.db", points=20)
    gate = ServerGate(RetryPolicy(**FAST), emulator.url)
    gate.pause(1.0)  # another journal's upload was told to pause this server
    emulator.set_faults({"rules": [{"route": "log_metric", "kind": "throttle",
                                    "retry_after": 0.2, "count": 1}]})
    daemon_stop = threading.Event()  # shared by every upload of a daemon: only ever read
    started = time.monotonic()
    summary = upload_journal(path, config(emulator), Options(  # per call: log_metric throttles
        gate=gate, stop=daemon_stop, batch=False, policy=RetryPolicy(**FAST)))
    assert time.monotonic() - started >= 1.0  # it waited for the shared pause
    assert summary.throttled == 1 and gate.pauses == 2  # its own 429 paused the shared gate
    assert not daemon_stop.is_set() and not summary.more_pending
    assert_server_matches(emulator, path)


@pytest.mark.parametrize("batch", [False, True], ids=["per-call", "batch"])
def test_time_slices_end_cleanly_and_the_next_slice_goes_on(emulator_factory, tmp_path, batch):
    emu = emulator_factory(faults={"rules": [{"route": "*", "kind": "latency", "ms": 25}]})
    path = make_journal(tmp_path / "run.db", points=150)
    options = Options(concurrency=2, batch=batch, batch_size=10, time_slice_s=0.25,
                      policy=RetryPolicy(**FAST))
    slices = []
    while not slices or slices[-1][0].more_pending:
        assert len(slices) < 60, "the slices make no progress"
        slices.append(upload_in_thread(path, config(emu), options, timeout=20))
    assert len(slices) >= 3  # it really was cut into slices
    assert all(elapsed < 0.25 + 1.5 for _s, elapsed in slices)  # each returned promptly
    assert all(s.uploaded > 0 for s, _e in slices[:-1])  # and each made progress
    first = slices[0][0]
    # every call went exactly once, and no slice had to read back what the last one left
    assert sum(s.uploaded for s, _e in slices) == first.pending == first.total
    assert sum(s.found_by_readback for s, _e in slices) == 0 and read_routes(emu) == []
    assert not slices[-1][0].more_pending
    assert_server_matches(emu, path)


def test_stop_from_another_thread_returns_promptly_and_keeps_progress(emulator_factory,
                                                                      tmp_path):
    emu = emulator_factory(faults={"rules": [{"route": "*", "kind": "latency", "ms": 30}]})
    path = make_journal(tmp_path / "run.db", points=300)
    stop = threading.Event()
    timer = threading.Timer(0.6, stop.set)
    timer.start()
    summary, elapsed = upload_in_thread(path, config(emu), Options(
        concurrency=4, stop=stop, policy=RetryPolicy(**FAST)), timeout=15)
    timer.cancel()
    assert elapsed < 0.6 + 1.5
    assert summary.more_pending and 0 < summary.uploaded < summary.pending
    emu.set_faults({"rules": []})
    rest = upload_journal(path, config(emu), Options(policy=RetryPolicy(**FAST)))
    assert not rest.more_pending and rest.found_by_readback == 0
    assert summary.uploaded + rest.uploaded == summary.pending
    assert_server_matches(emu, path)


def test_stop_abandons_a_hung_request_after_the_grace_and_reads_it_back(emulator_factory,
                                                                         tmp_path):
    # the server applies the first metric, then trickles its answer for far longer than
    # the stop's grace: the stop abandons it, and the next upload finds it by read-back
    emu = emulator_factory(faults={"rules": [{"route": "log_metric", "kind": "slow_body",
                                              "duration_ms": 8000, "count": 1}]})
    path = make_journal(tmp_path / "run.db", points=30)
    stop = threading.Event()
    timer = threading.Timer(0.5, stop.set)
    timer.start()
    summary, elapsed = upload_in_thread(path, config(emu), Options(  # per call: log_metric
        concurrency=4, stop=stop, batch=False, policy=RetryPolicy(**FAST)), timeout=15)
    timer.cancel()
    assert elapsed < 0.5 + STOP_GRACE_S + 1.5
    assert summary.more_pending and summary.uploaded == summary.pending - 1
    conn = open_progress_view(path)  # the uploader's state database, the journal attached
    acked, sent = conn.execute("SELECT acked_through, sent_through FROM upload_targets"
                               ).fetchone()
    unsettled = conn.execute("SELECT seq, endpoint FROM calls WHERE seq > ? AND seq NOT IN "
                             "(SELECT seq FROM upload_state)", (acked,)).fetchall()
    conn.close()
    assert [e for _s, e in unsettled] == ["log_metric"]
    assert acked < unsettled[0][0] <= sent  # of unknown outcome: under the in-flight mark
    emu.set_faults({"rules": []})
    rest = upload_journal(path, config(emu), Options(policy=RetryPolicy(**FAST)))
    assert rest.found_by_readback == 1 and rest.uploaded == 0 and not rest.more_pending
    assert_server_matches(emu, path)
