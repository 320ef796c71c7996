"""Helpers for the uploader's tests (no tests here): journals, running the CLI, and comparing
what the emulator applied with what the journal holds, item by item."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLI = [sys.executable, "-m", "comet_journal.uploader.cli"]
KEY = "test-key"
# --no-batch: these tests check the per-call routes; batching (the default) has its own tests
FAST = ["--backoff-base", "0.01", "--backoff-cap", "0.05", "--timeout", "3", "--no-batch"]


def new_experiment(path, name=None, **kw):
    """A recorder Experiment with automatic logging off where this recorder has it (the
    tests decide every call the journal holds)."""
    import inspect
    from comet_journal import Experiment
    quiet = {"auto_output_logging": False, "log_env_details": False, "log_env_host": False,
             "log_env_gpu": False, "log_env_cpu": False, "log_git_metadata": False,
             "log_git_patch": False, "log_code": False}
    accepted = inspect.signature(Experiment.__init__).parameters
    opts = {k: v for k, v in quiet.items() if k in accepted}
    return Experiment(journal=str(path), project_name="proj", workspace="ws",
                      experiment_name=name, **opts, **kw)


def make_journal(path, experiments=1, points=60, assets=False, name=True):
    """A small journal with every ordered and positioned kind of call."""
    for e in range(experiments):
        with new_experiment(path, f"exp{e}" if name else None) as exp:
            exp.log_parameter("lr", 0.5)  # not equal to the next value: see readback
            for i in range(points):
                exp.log_metric("loss", 1.0 / (i + 1), step=i)
                if i % 10 == 0:
                    exp.log_parameter("lr", 0.1 / (i + 1))
                    exp.log_other("phase", f"p{i}")
                    exp.log_output(f"line {i}\n")
                    exp.log_html(f"<p>{i}</p>")
                    exp.add_tags([f"t{i}"])
            exp.log_metric("nan", float("nan"), step=1)
            exp.log_git_metadata("main", "origin", "abc", "/repo", "me")
            exp.set_code("print('hi')")
            if assets:
                exp.log_asset_data(os.urandom(2_500_000), name="big.bin")
                exp.log_asset_data(b"small", name="small.txt", step=2)
            exp.log_text("a text sample")
    return str(path)


def run_cli(*args, env=None, timeout=60, check=None):
    """Run ``comet-upload`` in a subprocess (no COMET_* variables unless given)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("COMET_")}
    full_env["PYTHONPATH"] = ROOT
    full_env.update(env or {})
    proc = subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, cwd=ROOT,
                          env=full_env, timeout=timeout)
    if check is not None:
        assert proc.returncode == check, (proc.returncode, proc.stdout, proc.stderr)
    return proc


def upload(emu, path, *extra, env=None, check=None, timeout=60):
    return run_cli("--url", emu.url, "--api-key", KEY, *FAST, *extra, path, env=env,
                   check=check, timeout=timeout)


def server_keys(path) -> dict[int, str]:
    """The server key of each journal experiment, from the uploader's state database."""
    from comet_journal.uploader.journal.progress_store import open_progress_view
    conn = open_progress_view(str(path))
    try:
        return dict(conn.execute("SELECT experiment_id, server_key FROM upload_experiments"))
    finally:
        conn.close()


def journal_items(path) -> Counter:
    """What the server must hold after the upload: one item per metric point, parameter
    value, output line and other call, keyed by the server key of its experiment (the same
    reduction as ``emulator.compare``, counted strictly: every call exactly once)."""
    from comet_journal.emulator.compare import journal_item_list
    return Counter(journal_item_list(str(path)))


def applied_items(state: dict) -> Counter:
    from comet_journal.emulator.compare import applied_item_list
    return Counter(applied_item_list(state))


def journal_items_for_compare(path) -> Counter:
    """``journal_items`` with the timestamps the uploader adds (``ts_ms``) dropped for
    endpoints whose applied form is compared without them."""
    return journal_items(path)


def assert_server_matches(emu, path) -> None:
    """Every journal call applied exactly once: no duplicate, nothing missing."""
    want = journal_items(path)
    have = applied_items(emu.state())
    missing = want - have
    extra = have - want
    assert not missing and not extra, (f"missing {len(missing)}: {list(missing)[:5]}; "
                                       f"duplicate/extra {len(extra)}: {list(extra)[:5]}")


def applied_counts(emu) -> Counter:
    return Counter(a["endpoint"] for a in emu.state()["applied"])
