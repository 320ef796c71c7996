"""Read-back at scale: what is in doubt costs what is in doubt, not the length of the run.

Real uploader processes, SIGKILLed mid-upload, against the emulator with ambiguous drops
(applied, then the connection dropped) and deduplication off; the emulator's request counts
say how many series reads the uploader made.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

from test_upload_support import (CLI, FAST, KEY, ROOT, assert_server_matches, new_experiment,
                                 upload)
from journal_helpers import count, rows
from comet_journal.emulator.testing import EmulatorClient

SERIES_READ = "read:experiment/metrics/get-metric"


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMET_")}
    env["PYTHONPATH"] = ROOT
    return env


def _metric_journal(path, points: int) -> str:
    with new_experiment(path, "long") as exp:
        for i in range(points):
            exp.log_metric("loss", i * 0.5, step=i)
    return str(path)


def _summary(emu) -> dict:
    """``GET /emulator/state?summary=1``: counts, usable on a server of any size."""
    client = EmulatorClient(emu)
    try:
        return client.get("/emulator/state", params={"summary": "1"}).json()
    finally:
        client.close()


def _applied_points(emu) -> int:
    return sum(e["metricPoints"].get("loss", 0)
               for e in _summary(emu)["experiments"].values())


def _kill_mid_upload(emu, path, args: list[str], progress, after: float) -> None:
    """Start an uploader, SIGKILL it once ``progress()`` moved and ``after`` s passed."""
    before = progress()
    proc = subprocess.Popen([*CLI, "--url", emu.url, "--api-key", KEY, *FAST, *args, path],
                            cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30  # a loaded machine may take seconds to start it
    while progress() <= before and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(after)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def _series_reads(emu) -> int:
    return _summary(emu)["requests"]["by_route"].get(SERIES_READ, 0)


def _drops(emu) -> int:
    return _summary(emu)["faults"].get("drop_after", 0)


def _run_with_kills(emu, path, args, progress) -> dict:
    for after in (0.4, 0.2):
        _kill_mid_upload(emu, path, args, progress, after)
    proc = upload(emu, path, *args, "--json", check=0, timeout=120)
    return json.loads(proc.stdout)["journals"][0]


def test_batch_200k_points_with_drops_and_two_kills_reads_what_is_in_doubt(
        emulator_factory, tmp_path):
    path = _metric_journal(tmp_path / "long.db", 200_000)
    emu = emulator_factory(faults={"seed": 3, "rules": [
        {"route": "batch_metrics", "kind": "drop_after", "rate": 0.02}]})
    args = ["--batch", "--batch-size", "500", "--concurrency", "4"]
    summary = _run_with_kills(emu, path, args, lambda: _applied_points(emu))
    assert summary["skipped_already_uploaded"] > 0  # the kills left work already done
    drops = _drops(emu)
    assert drops > 0
    assert_server_matches(emu, path)
    assert _applied_points(emu) == 200_000
    assert _summary(emu)["applied"]["batch_metrics"] >= 400
    # In doubt: each dropped batch (one pass each, at most) and, per run after a kill, the
    # batches in flight (one snapshot of the series per run): never per point or per batch.
    reads = _series_reads(emu)
    assert 0 < reads <= drops + 3, (reads, drops)
    assert_server_matches(emu, path)


def test_per_call_with_drops_and_two_kills_reads_at_most_once_per_call_in_doubt(
        emulator_factory, tmp_path):
    path = _metric_journal(tmp_path / "calls.db", 4_000)
    emu = emulator_factory(faults={"seed": 4, "rules": [
        {"route": "log_metric", "kind": "drop_after", "rate": 0.02}]})
    args = ["--concurrency", "8"]
    _run_with_kills(emu, path, args, lambda: _applied_points(emu))
    drops = _drops(emu)
    assert drops > 0
    assert _applied_points(emu) == 4_000
    reads = _series_reads(emu)
    assert 0 < reads <= drops + 3, (reads, drops)
    assert_server_matches(emu, path)


# --- identical calls under interrupts (exactly once by distinct wire times) -------------------

IDENTICAL = 600


def _identical_journal(path) -> str:
    """The same value of every kind logged many times, most within one millisecond."""
    with new_experiment(path) as exp:  # unnamed: no "Name" other is sent
        for _ in range(IDENTICAL):
            exp.log_parameter("p", 1)
            exp.log_other("o", "same")
            exp.log_metric("m", 1.0)  # no step
            exp.log_output("same line\n")
            exp.log_html("<p>x</p>")
    return str(path)


def _applied(emu, endpoint: str) -> int:
    return _summary(emu)["applied"].get(endpoint, 0)


def test_identical_values_of_every_kind_exactly_once_through_an_interrupt_loop(
        emulator_factory, tmp_path):
    path = _identical_journal(tmp_path / "same.db")
    times = [r["ts_ms"] for r in rows(path, "log_parameter")]
    assert len(times) - len(set(times)) > IDENTICAL // 2  # mostly same-millisecond values
    kinds = ("log_parameter", "log_other", "log_metric", "log_output", "log_html")
    emu = emulator_factory(faults={"seed": 9, "rules": [
        {"route": route, "kind": "drop_after", "rate": 0.05} for route in kinds]})
    done = lambda: sum(_applied(emu, k) for k in kinds)  # noqa: E731
    for i in range(6):  # SIGINT and SIGKILL, alternately, mid-upload
        before = done()
        proc = subprocess.Popen([*CLI, "--url", emu.url, "--api-key", KEY, *FAST,
                                 "--concurrency", "8", path], cwd=ROOT, env=_env(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while done() <= before and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.15)
        proc.send_signal(signal.SIGINT if i % 2 else signal.SIGKILL)
        proc.wait(timeout=60)
    assert _drops(emu) > 0
    upload(emu, path, check=0, timeout=120)
    assert_server_matches(emu, path)
    # assert_server_matches counts items (output lines too); one request per call here:
    for kind in ("log_parameter", "log_other", "log_metric", "log_html"):
        assert _applied(emu, kind) == count(path, kind) >= IDENTICAL, (kind, _applied(emu, kind))


# --- calls in doubt are parked and resolved together: one read per series ----------------------

def test_batch_drops_of_one_run_are_resolved_by_one_series_read(emulator_factory, tmp_path):
    path = _metric_journal(tmp_path / "parked.db", 20_000)
    emu = emulator_factory(faults={"seed": 5, "rules": [
        {"route": "batch_metrics", "kind": "drop_after", "rate": 0.05}]})
    proc = upload(emu, path, "--batch", "--batch-size", "200", "--concurrency", "4", "--json",
                  timeout=120)
    summary = json.loads(proc.stdout)["journals"][0]
    drops = _drops(emu)
    assert drops >= 3
    assert summary["parked"] == drops  # each dropped batch parked, none read back at once
    # All of them in one pass of the series, not one per drop; a loaded machine can fill the
    # window before the end and start a second pass (never more here).
    assert 1 <= _series_reads(emu) <= 2
    assert summary["found_by_readback"] > 0  # applied before the drop: never sent again
    assert summary["uploaded"] + summary["found_by_readback"] == summary["calls_pending_at_start"]
    assert _applied_points(emu) == 20_000
    assert_server_matches(emu, path)


def test_per_call_drops_of_one_run_are_resolved_by_one_series_read(emulator_factory, tmp_path):
    path = _metric_journal(tmp_path / "parked-calls.db", 1_500)
    emu = emulator_factory(faults={"seed": 6, "rules": [
        {"route": "log_metric", "kind": "drop_after", "rate": 0.03}]})
    proc = upload(emu, path, "--concurrency", "8", "--json", timeout=120)
    summary = json.loads(proc.stdout)["journals"][0]
    drops = _drops(emu)
    assert drops >= 3 and summary["parked"] == drops
    assert summary["found_by_readback"] == drops  # drop_after: every one of them applied
    assert 1 <= _series_reads(emu) <= 2  # one pass (two if the window filled under load)
    assert _applied_points(emu) == 1_500
    assert_server_matches(emu, path)


def test_system_samples_and_output_in_doubt_are_read_back_bounded(emulator_factory, tmp_path):
    path = tmp_path / "samples.db"
    with new_experiment(path, "samples") as exp:
        for i in range(300):
            exp.log_cpu_metrics([10.0 + i % 7, 20.0], step=i, timestamp=1_700_000_000 + i)
            exp.log_output(f"line {i} é😀\n", context=f"c{i % 2}")  # a request each
    path = str(path)
    emu = emulator_factory(faults={"seed": 2, "rules": [
        {"route": "cpu_metrics", "kind": "drop_after", "rate": 0.05},
        {"route": "log_output", "kind": "drop_after", "rate": 0.1}]})
    upload(emu, path, "--concurrency", "8", timeout=120)
    summary = _summary(emu)
    faults_by_route = summary["faults"].get("drop_after", 0)
    assert faults_by_route > 1
    assert summary["applied"]["cpu_metrics"] == count(path, "cpu_metrics") == 300
    # the samples in doubt: parked, then one pass of their probe series for all of them
    assert _series_reads(emu) == 1
    output_reads = summary["requests"]["by_route"].get("read:experiment/output", 0)
    assert 0 < output_reads <= faults_by_route  # ordered: one read per output batch in doubt
    assert_server_matches(emu, path)


def test_a_parked_group_frees_its_lane_but_holds_back_groups_sharing_a_point():
    from test_scheduler import Group, created, sent, unit

    class Items(Group):
        def __init__(self, seq, points):
            super().__init__(seq, points)
            self.items = points

    s = created()
    s.lanes = 1
    g1, g2, twin = Items(1, ["a", "b"]), Items(3, ["c"]), Items(4, ["b"])
    assert sent(s.admit(g1)) == [1]
    assert sent(s.admit(g2)) == [] and sent(s.admit(twin)) == []  # one lane
    stop = unit(9, "experiment_stop")
    assert sent(s.admit(stop)) == []
    assert sent(s.park(g1)) == [3]  # the lane is free again
    assert sent(s.release(g2)) == []  # twin shares "b" with the parked g1; stop waits for all
    s.unpark(g1)  # sent again to be resolved
    assert sent(s.release(g1)) == [4]
    assert sent(s.release(twin)) == [9]


def test_calls_of_a_batch_job_settle_in_it_never_parked(emulator_factory, tmp_path):
    # The batch route goes away mid-run (404): the group's points go one by one inside its
    # job; one of those in doubt is read back there and then, not parked (a job has one
    # outcome per call).
    path = _metric_journal(tmp_path / "fallback.db", 600)
    emu = emulator_factory(faults={"seed": 8, "rules": [
        {"route": "batch_metrics", "kind": "status", "status": 404},
        {"route": "log_metric", "kind": "drop_after", "rate": 0.05}]})
    proc = upload(emu, path, "--batch", "--batch-size", "100", "--json", check=0, timeout=120)
    summary = json.loads(proc.stdout)["journals"][0]
    assert _drops(emu) > 0 and summary["rejected"] == 0 and summary["parked"] == 0
    assert _applied_points(emu) == 600
    assert_server_matches(emu, path)


def test_while_a_group_is_parked_later_group_acks_wait_for_the_watermark_unwritten():
    from comet_journal.uploader.journal.groups import MetricGroup
    from comet_journal.uploader.replay.ledger import GROUP_ACK_DEFER_S, Ledger
    from comet_journal.uploader.replay.summary import Summary
    from comet_journal.uploader.wire.exchange import Outcome

    class Progress:  # what the ledger writes, as the progress store would get it
        def __init__(self):
            self.acked_through, self.records = 0, []

        def record(self, acks, rejects, watermark, held=()):
            self.records.append((sorted(s for s, _ in acks), watermark))
            self.acked_through = max(self.acked_through, watermark or 0)

    def run(parked: bool) -> list:
        now, progress = [0.0], Progress()
        ledger = Ledger(progress, Summary("j", "s"), floor=lambda: 9, end_seq=9,
                        clock=lambda: now[0])
        groups = [MetricGroup(1, [s, s + 1, s + 2], ["{}"] * 3, False) for s in (1, 4, 7)]
        for group in groups:
            ledger.enter(group)
        ledger.reader_done = True
        ledger.hold(parked)  # the first group: parked, or still in flight
        for group in groups[1:]:
            ledger.settle_group(group, Outcome(ok=True))
        ledger.commit()
        now[0] += GROUP_ACK_DEFER_S * 4
        ledger.commit(final=False)
        ledger.hold(False)
        ledger.settle_group(groups[0], Outcome(ok=True))  # resolved
        ledger.commit()
        return progress.records

    assert run(parked=True) == [([], None), ([], 9)]  # no row written: the watermark covers
    assert run(parked=False)[-2:] == [([4, 5, 6, 7, 8, 9], None), ([], 9)]  # rows, then gone
