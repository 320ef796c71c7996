"""Sneakernet: a journal partly uploaded from one host, copied, and uploaded from another host
with no shared state. The experiment (same client key) is adopted, what is already on the
server is found by read-back, nothing is duplicated; ``comet-upload DIR`` uploads every run
under a directory."""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter

import pytest

from comet_journal.emulator.compare import applied_item_list, journal_item_list
from comet_journal.uploader.config import resolve
from comet_journal.uploader.replay.summary import Options
from comet_journal.uploader.upload import upload_journal
from comet_journal.uploader.wire.retry import RetryPolicy
from test_upload_support import FAST, KEY, make_journal, run_cli


def _host_state(tmp_path, name):
    """A host's own state directory (XDG_STATE_HOME: the CLI helper drops COMET_*)."""
    home = tmp_path / f"{name}-state"
    home.mkdir()
    return str(home), str(home / "comet-journal")


def _partly_uploaded_on_host_a(emu, tmp_path, experiments, batch=False):
    """A journal on host A, its upload stopped part-way by a time slice; returns its path."""
    run = tmp_path / "host-a"
    run.mkdir()
    path = make_journal(run / "run.db", experiments=experiments, points=60)
    _home_a, state_a = _host_state(tmp_path, "a")
    cfg = resolve(url=emu.url, api_key=KEY, environ={}, state_dir=state_a)
    first = upload_journal(path, cfg, Options(policy=RetryPolicy(base_s=0.01, cap_s=0.05),
                                              concurrency=2, batch=batch, batch_size=10,
                                              time_slice_s=0.4))
    assert first.more_pending and first.uploaded > 0  # host A stopped part-way
    return path


@pytest.mark.parametrize("batch", [False, True], ids=["per-call", "batch"])
def test_a_copy_uploaded_from_a_second_host_finishes_the_upload_exactly_once(
        emulator_factory, tmp_path, batch):
    emu = emulator_factory(faults={"rules": [{"route": "*", "kind": "latency", "ms": 15}]})
    path = _partly_uploaded_on_host_a(emu, tmp_path, experiments=2, batch=batch)
    usb = tmp_path / "usb"
    usb.mkdir()
    shutil.copy(path, usb / "run.db")
    other = make_journal(usb / "other.db", points=10)  # a run never uploaded
    home_b, state_b = _host_state(tmp_path, "b")
    emu.set_faults({"rules": []})
    proc = run_cli("--url", emu.url, "--api-key", KEY, *FAST, "--json",
                   *(["--batch"] if batch else []), str(usb), env={"XDG_STATE_HOME": home_b},
                   timeout=120)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    by_name = {os.path.basename(j["journal"]): j for j in summary["journals"]}
    assert set(by_name) == {"other.db", "run.db"}
    copied = by_name["run.db"]
    assert copied["found_by_readback"] > 0  # host A's calls were found, not sent again
    want = Counter(journal_item_list(str(usb / "run.db"), state_b)) + \
        Counter(journal_item_list(other, state_b))
    have = Counter(applied_item_list(emu.state()))
    assert want == have, (want - have, have - want)  # exactly once, nothing missing
    assert len(os.listdir(os.path.join(state_b, "progress"))) >= 2  # host B's own progress


def test_a_directory_without_journals_is_a_clear_error(emulator, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.db").write_bytes(b"not a journal")
    proc = run_cli("--url", emulator.url, "--api-key", KEY, *FAST, str(empty))
    assert proc.returncode == 2
    assert "directory with no journal" in proc.stderr and str(empty) in proc.stderr


def test_a_copy_uploaded_to_a_documented_only_server_adopts_the_experiment(emulator_factory,
                                                                         tmp_path):
    """Without clientlib the server picks the experiment's key; the second host finds host
    A's experiment by the mark carrying the journal's client key and adopts it."""
    emu = emulator_factory(clientlib=False,
                           faults={"rules": [{"route": "*", "kind": "latency", "ms": 15}]})
    path = _partly_uploaded_on_host_a(emu, tmp_path, experiments=1)
    usb = tmp_path / "usb"
    usb.mkdir()
    shutil.copy(path, usb / "run.db")
    home_b, state_b = _host_state(tmp_path, "b")
    emu.set_faults({"rules": []})
    proc = run_cli("--url", emu.url, "--api-key", KEY, *FAST, "--json", str(usb / "run.db"),
                   env={"XDG_STATE_HOME": home_b}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["journals"][0]["found_by_readback"] > 0
    have = Counter(applied_item_list(emu.state()))
    assert sum(1 for item in have if item[1] == "create") == 1  # one experiment, adopted
    want = Counter(journal_item_list(str(usb / "run.db"), state_b))
    assert want == have, (want - have, have - want)  # exactly once, nothing missing
