"""The system monitor: CPU/RAM/load and GPU samples (fake NVML), intervals, keep-alives,
the current step/epoch, failing probes, prompt stop, and a real fork."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time

import psutil
import pytest

from auto_helpers import auto_on, options, wait_for  # noqa: F401  (auto_on is a fixture)
from fake_nvml import FakeGpu, FakeNvml, NVMLError
from journal_helpers import count, integrity_ok, rows
from comet_journal.recorder import Experiment, gpu, monitor

pytestmark = pytest.mark.usefixtures("auto_on")


def sampling(**overrides) -> dict:
    """Options with system sampling on (every 0.05 s) and nothing else."""
    return options(**{"log_env_details": True, "system_monitor_interval": 0.05, **overrides})


@pytest.fixture
def fake_nvml(monkeypatch):
    fake = FakeNvml()
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    return fake


# --- CPU, RAM, load -----------------------------------------------------------------------

def test_cpu_ram_and_load_are_sampled_at_start_then_every_interval(tmp_path):
    journal = tmp_path / "run.db"
    began = time.monotonic()
    with Experiment(journal=str(journal), **sampling(system_monitor_interval=0.1,
                                                     log_env_gpu=False)):
        # Waits for samples instead of sleeping a fixed time: a loaded machine is slower.
        wait_for(lambda: count(journal, "cpu_metrics") >= 3, timeout=15)
    elapsed = time.monotonic() - began
    cpu, ram, load = (rows(journal, e) for e in ("cpu_metrics", "ram_metrics", "load_metrics"))
    # Never more often than the interval (one at start, one per 0.1 s after it).
    assert 3 <= len(cpu) <= elapsed / 0.1 + 2 and len(ram) == len(load) == len(cpu)
    start = rows(journal, "experiment_start_end_time")[0]["payload"]["startTimeMillis"]
    assert cpu[0]["payload"]["timestamp"] - start < 1000  # the first sample is at start
    total = psutil.virtual_memory().total
    for c, r, lo in zip(cpu, ram, load):
        values = c["payload"]["cpuPercentUtilization"]
        assert len(values) == psutil.cpu_count() and all(0 <= v <= 100 for v in values)
        assert r["payload"]["totalRam"] == total and 0 < r["payload"]["usedRam"] <= total
        assert lo["payload"]["loadAverage"] >= 0
    stamps = [c["payload"]["timestamp"] for c in cpu]
    assert stamps == sorted(stamps) and all(b - a >= 50 for a, b in zip(stamps, stamps[1:]))


def test_interval_has_a_public_minimum_of_one_second(tmp_path, monkeypatch):
    monkeypatch.setattr(monitor, "min_interval_s", monitor.MIN_INTERVAL_S)
    journal = tmp_path / "run.db"
    for bad in (0.5, 0, -1, "30", True, float("nan")):
        with pytest.raises(ValueError, match="system_monitor_interval"):
            Experiment(journal=str(journal), system_monitor_interval=bad)
        with pytest.raises(ValueError, match="keep_alive_interval"):
            Experiment(journal=str(journal), keep_alive_interval=bad)
    assert not journal.exists()  # a refused option journals nothing
    Experiment(journal=str(journal), **sampling(system_monitor_interval=1.0,
                                                keep_alive_interval=1)).end()
    assert monitor.DEFAULT_INTERVAL_S == 30.0


def test_no_samples_when_turned_off(tmp_path):
    journal = tmp_path / "run.db"
    for off in (dict(system_monitor_interval=None), dict(log_env_cpu=False, log_env_gpu=False),
                dict(log_env_details=False)):
        with Experiment(journal=str(journal), **{**sampling(), **off}):
            time.sleep(0.2)
    assert not any(count(journal, e) for e in ("cpu_metrics", "ram_metrics", "gpu_metrics"))
    assert not any(t.name == "recorder.monitor" for t in threading.enumerate())


# --- GPU (fake NVML) ------------------------------------------------------------------------

def test_gpu_static_info_and_samples_through_nvml(tmp_path, fake_nvml):
    journal = tmp_path / "run.db"
    with Experiment(journal=str(journal), **sampling()):
        wait_for(lambda: count(journal, "gpu_metrics") >= 2)
    static = [r["payload"]["gpuStaticInfoList"] for r in rows(journal, "system_details")
              if "gpuStaticInfoList" in r["payload"]]
    a, h = fake_nvml.gpus
    assert static == [[
        {"gpuIndex": 0, "name": a.name, "uuid": a.uuid, "powerLimit": a.power_limit,
         "totalMemory": a.total},
        {"gpuIndex": 1, "name": h.name, "uuid": h.uuid, "powerLimit": h.power_limit,
         "totalMemory": h.total}]]
    for row in rows(journal, "gpu_metrics"):
        assert row["payload"]["gpus"] == [
            {"gpuId": 0, "gpuUtilization": 10, "totalMemory": a.total, "usedMemory": a.used,
             "freeMemory": a.total - a.used},
            {"gpuId": 1, "gpuUtilization": 90, "totalMemory": h.total, "usedMemory": h.used,
             "freeMemory": h.total - h.used}]
        assert "timestamp" in row["payload"]
    assert fake_nvml.inits >= 1 and fake_nvml.shutdowns == fake_nvml.inits  # NVML released


@pytest.mark.parametrize("visible, expected", [("1", [1]), ("GPU-aaaa", [0]),
                                               ("GPU-bbbb2222,0", [1, 0])])
def test_cuda_visible_devices_is_honoured(tmp_path, fake_nvml, monkeypatch, visible, expected):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    journal = tmp_path / "run.db"
    with Experiment(journal=str(journal), **sampling()):
        wait_for(lambda: count(journal, "gpu_metrics") >= 1)
    static = [r for r in rows(journal, "system_details") if "gpuStaticInfoList" in r["payload"]]
    assert [g["gpuIndex"] for g in static[0]["payload"]["gpuStaticInfoList"]] == expected
    for row in rows(journal, "gpu_metrics"):
        assert [g["gpuId"] for g in row["payload"]["gpus"]] == expected


@pytest.mark.parametrize("visible, expected", [
    (None, [0, 1, 2]), ("2,0", [2, 0]), ("0,7,1", [0]), ("1,1,2", [1]), ("x,0", []),
    ("GPU-bbbb", [1]), ("GPU-", []), ("MIG-GPU-aaaa/1/0", []), (" 1 , 2 ", [1, 2])])
def test_visible_device_parsing_follows_cuda(visible, expected):
    fake = FakeNvml([FakeGpu("a", "GPU-aaaa"), FakeGpu("b", "GPU-bbbb"), FakeGpu("c", "GPU-cccc")])
    reader, why_not = gpu.open_gpus(fake, visible=visible)
    if expected:
        assert reader.indices == expected and why_not is None
    else:
        assert reader is None and "CUDA_VISIBLE_DEVICES" in why_not


@pytest.mark.parametrize("visible", ["", "-1"])
def test_no_visible_gpu_means_no_gpu_monitoring(visible):
    reader, why_not = gpu.open_gpus(FakeNvml(), visible=visible)
    assert reader is None and "no GPU is visible" in why_not


def test_gpu_quirks_old_bytes_names_and_unsupported_queries():
    fake = FakeNvml([FakeGpu("mig", "GPU-aaaa", utilization_supported=False,
                             power_limit_supported=False)], names_as_bytes=True)
    reader, _ = gpu.open_gpus(fake, visible=None)
    assert reader.static_info() == [{"gpuIndex": 0, "name": "mig", "uuid": "GPU-aaaa",
                                     "powerLimit": 0, "totalMemory": 80 * 2**30}]
    assert reader.sample()[0]["gpuUtilization"] == 0 and reader.sample()[0]["usedMemory"] == 2**30
    fake.gpus[0].lost = True
    with pytest.raises(NVMLError):
        reader.sample()
    reader.close()
    reader.close()
    assert fake.shutdowns == 1


def test_without_nvml_or_gpu_the_sampler_says_so_once_and_carries_on(tmp_path, monkeypatch,
                                                                      caplog):
    monkeypatch.setattr(monitor, "_said_no_gpu", False)
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml(library_missing=True))
    journal = tmp_path / "run.db"
    with caplog.at_level(logging.INFO, logger="comet_journal.recorder"):
        for _ in range(2):
            with Experiment(journal=str(journal), **sampling()):
                wait_for(lambda: count(journal, "cpu_metrics") >= 1)
    said = [r for r in caplog.records if "no GPU monitoring" in r.getMessage()]
    assert len(said) == 1 and "NVML is not available" in said[0].getMessage()
    assert count(journal, "gpu_metrics") == 0
    assert not [r for r in rows(journal, "system_details") if "gpuStaticInfoList" in r["payload"]]
    assert count(journal, "cpu_metrics") >= 2  # CPU sampling carried on

    monkeypatch.setitem(sys.modules, "pynvml", None)  # nvidia-ml-py not installed
    assert "nvidia-ml-py is not installed" in gpu.open_gpus()[1]
    assert "no GPU found" in gpu.open_gpus(FakeNvml([]))[1]


# --- failures -------------------------------------------------------------------------------

def test_a_failing_probe_is_disabled_after_repeated_failures_and_reported_once(
        tmp_path, fake_nvml, capsys, caplog):
    journal = tmp_path / "run.db"
    with caplog.at_level(logging.ERROR, logger="comet_journal.recorder"):
        with Experiment(journal=str(journal), **sampling(system_monitor_interval=0.02)) as exp:
            wait_for(lambda: count(journal, "gpu_metrics") >= 1)
            fake_nvml.gpus[1].lost = True  # NVML now fails on every GPU sample
            sampler = exp._auto.monitor
            wait_for(lambda: "gpu" in sampler.stats()["disabled"])
            cpu_then = sampler.stats()["journaled"]["cpu"]
            wait_for(lambda: sampler.stats()["journaled"]["cpu"] >= cpu_then + 3)
    stats = sampler.stats()
    assert stats["disabled"] == ["gpu"] and stats["failures"]["gpu"] == monitor.MAX_FAILURES
    err = capsys.readouterr().err
    assert err.count("comet-journal: gpu sampling failed 10 times in a row") == 1
    assert "NVMLError" in err
    assert len([r for r in caplog.records if "gpu sampling failed" in r.getMessage()]) == 1
    assert count(journal, "cpu_metrics") == stats["journaled"]["cpu"]  # the others went on


def test_a_failing_psutil_call_disables_only_its_probe(tmp_path, monkeypatch, capsys):
    def broken():
        raise OSError("no /proc/meminfo")

    monkeypatch.setattr(psutil, "virtual_memory", broken)
    journal = tmp_path / "run.db"
    with Experiment(journal=str(journal), **sampling(system_monitor_interval=0.02,
                                                     log_env_gpu=False)) as exp:
        wait_for(lambda: "ram" in exp._auto.monitor.stats()["disabled"])
    assert count(journal, "ram_metrics") == 0 and count(journal, "cpu_metrics") >= 10
    assert capsys.readouterr().err.count("ram sampling failed") == 1


# --- step and epoch -------------------------------------------------------------------------

def test_samples_carry_the_current_step_and_epoch(tmp_path):
    journal = tmp_path / "run.db"
    with Experiment(journal=str(journal), **sampling(log_env_gpu=False)) as exp:
        wait_for(lambda: count(journal, "ram_metrics") >= 1)
        exp.log_metric("loss", 1.0, step=7)
        exp.log_metric("acc", 0.5, step=9, epoch=3)
        exp.log_metric("lr", 0.1)  # no step: the current step stays 9
        wait_for(lambda: rows(journal, "ram_metrics")[-1]["payload"].get("step") == 9)
    first = rows(journal, "ram_metrics")[0]["payload"]
    assert "step" not in first and "epoch" not in first  # nothing known at start
    last = rows(journal, "cpu_metrics")[-1]["payload"]
    assert (last["step"], last["epoch"]) == (9, 3)


def test_current_step_is_read_from_the_queue_then_from_the_journal(tmp_path):
    journal = str(tmp_path / "run.db")
    exp = Experiment(journal=journal, flush_interval=60, **options())
    other = Experiment(journal=journal, flush_interval=60, **options())
    try:
        exp.log_metric("x", 1.0, step=5)
        other.log_metric("x", 1.0, step=100)  # another experiment of the same journal
        assert any(item[0] == "log_metric" for item in exp._queue)  # still queued
        assert monitor._PositionTracker(exp).current() == (5, None)
        exp.flush()
        tracker = monitor._PositionTracker(exp)
        assert tracker.current() == (5, None)  # from the journal
        exp.log_metric("x", 2.0, step=6, epoch=2, timestamp=time.time())  # the slow path
        exp.flush()
        assert tracker.current() == (6, 2)
        other.log_metric("y", 1.0, epoch=50)
        other.flush()
        assert tracker.current() == (6, 2)
    finally:
        other.end()
        exp.end()


# --- keep-alive, stopping, threads -----------------------------------------------------------

def test_keep_alive_rows_while_the_run_lives(tmp_path):
    journal = tmp_path / "run.db"
    began = time.monotonic()
    with Experiment(journal=str(journal), **options(keep_alive_interval=0.05)):
        wait_for(lambda: count(journal, "experiment_keepalive") >= 3, timeout=15)
    elapsed = time.monotonic() - began
    assert 3 <= count(journal, "experiment_keepalive") <= elapsed / 0.05 + 2
    assert all(r["payload"] == {} for r in rows(journal, "experiment_keepalive"))
    with Experiment(journal=str(tmp_path / "none.db"), **options()):
        time.sleep(0.1)
    assert count(tmp_path / "none.db", "experiment_keepalive") == 0
    assert monitor.DEFAULT_KEEP_ALIVE_INTERVAL_S == 60.0


def test_end_stops_the_thread_promptly_and_is_idempotent(tmp_path):
    journal = tmp_path / "run.db"
    exp = Experiment(journal=str(journal), **sampling(system_monitor_interval=30.0,
                                                      keep_alive_interval=60.0,
                                                      log_env_gpu=False))
    wait_for(lambda: count(journal, "cpu_metrics") == 1)  # the first sample, at start
    threads = [t for t in threading.enumerate() if t.name == "recorder.monitor"]
    assert len(threads) == 1 and threads[0].daemon
    started = time.monotonic()
    exp.end()
    # Well under the 30 s interval the thread would otherwise sleep (slack for a loaded host).
    assert time.monotonic() - started < 3.0
    assert not threads[0].is_alive()
    exp.end()
    assert count(journal, "cpu_metrics") == 1 and count(journal, "experiment_keepalive") == 0
    assert len(rows(journal, "experiment_start_end_time")) == 2


# --- fork ---------------------------------------------------------------------------------

@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.parametrize("restart", [True, False])
def test_fork_restarts_the_sampler_in_the_child_or_not_by_choice(tmp_path, restart):
    journal = tmp_path / "run.db"
    exp = Experiment(journal=str(journal), **sampling(log_env_gpu=False,
                                                      restart_in_child=restart))
    sampler = exp._auto.monitor
    wait_for(lambda: sampler.stats()["journaled"].get("cpu", 0) >= 1)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report what it sees, never return into pytest
        try:
            os.close(read_end)
            time.sleep(0.4)
            names = [t.name for t in threading.enumerate()]
            running = "recorder.monitor" in names
            sampler.stop()
            journaled = sampler.stats()["journaled"].get("cpu", 0) if running else 0
            flushed = exp.flush(30)  # a loaded machine: give the child's writer time
            os.write(write_end, json.dumps({"threads": names, "cpu": journaled,
                                            "flushed": flushed}).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as fh:
        child = json.loads(fh.read())
    assert os.waitpid(pid, 0)[1] == 0
    time.sleep(0.15)
    assert sampler._thread.is_alive()  # the parent's sampler is unaffected
    exp.end()
    parent = sampler.stats()["journaled"]["cpu"]
    if restart:
        assert "recorder.monitor" in child["threads"] and child["cpu"] >= 2
    else:
        assert "recorder.monitor" not in child["threads"] and child["cpu"] == 0
    assert child["flushed"], "the child's flush timed out"
    assert count(journal, "cpu_metrics") == parent + child["cpu"]
    assert parent >= 3 and integrity_ok(str(journal))


FORK_ORDER = r"""
import json, os, sys
from comet_journal.recorder import monitor, capture  # first: as auto logging imports them
from comet_journal.recorder import writer
from comet_journal import Experiment
order = []
for cls, name in ((writer.JournalWriter, "writer"), (monitor.SystemMonitor, "monitor"),
                  (capture.Capture, "capture")):
    def traced(self, _real=cls._after_fork_in_child, _name=name):
        order.append(_name)
        return _real(self)
    cls._after_fork_in_child = traced
exp = Experiment(journal=sys.argv[1], system_monitor_interval=1, log_env_cpu=True,
                 auto_output_logging="simple")
pid = os.fork()
if pid == 0:
    print(json.dumps(order), flush=True)
    os._exit(0)
os.waitpid(pid, 0)
exp.end()
"""


def test_in_a_forked_child_writers_are_reset_before_any_thread_journals(tmp_path):
    # A child's sampler (or output capture) restarted before its writer emptied the queue
    # it inherited had its first rows cleared away with the parent's, though counted.
    env = dict(os.environ, COMET_JOURNAL_AUTO_LOG="1")
    out = subprocess.run([sys.executable, "-c", FORK_ORDER, str(tmp_path / "run.db")],
                         capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    order = json.loads(out.stdout.strip().splitlines()[0])
    assert "writer" in order and "monitor" in order, order
    assert order.index("writer") < min(order.index(name) for name in order if name != "writer")
