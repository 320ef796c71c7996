"""Helpers for the uploader's tests (no tests here): journals, running the CLI, and comparing
what the emulator applied with what the journal holds, item by item."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections import Counter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLI = [sys.executable, "-m", "uploader.cli"]
KEY = "test-key"
FAST = ["--backoff-base", "0.01", "--backoff-cap", "0.05", "--timeout", "3"]


def new_experiment(path, name=None, **kw):
    """A recorder Experiment with automatic logging off where this recorder has it (the
    tests decide every call the journal holds)."""
    import inspect
    from recorder import Experiment
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
    conn = sqlite3.connect(path)
    try:
        return dict(conn.execute("SELECT experiment_id, server_key FROM upload_experiments"))
    finally:
        conn.close()


def _canon(value):
    return json.dumps(value, sort_keys=True)


def _metric_item(key, p, ts):
    return (key, "metric", p["metricName"], _canon(p["metricValue"]), p.get("step"),
            p.get("epoch"), p.get("context"), p.get("timestamp", ts))


def _param_item(key, p, ts):
    return (key, "param", p["parameterName"], _canon(p["parameterValue"]), p.get("step"),
            p.get("timestamp", ts))


def _line_item(key, line):
    return (key, "output", line["output"], bool(line.get("stderr")), line.get("offset"),
            line.get("localTimestamp"))


_IGNORED = {"experimentKey", "apiKey"}


def journal_items(path) -> Counter:
    """What the server must hold after the upload: one item per metric point, parameter
    value, output line and other call, keyed by the server key of its experiment."""
    keys = server_keys(path)
    conn = sqlite3.connect(path)
    items: Counter = Counter()
    try:
        for seq, endpoint, exp_id, ts, text in conn.execute(
                "SELECT seq, endpoint, experiment_id, ts_ms, payload FROM calls ORDER BY seq"):
            p = json.loads(text)
            key = keys.get(exp_id)
            if endpoint == "experiment_create":
                items[(key, "create")] += 1
                if p.get("experimentName"):
                    items[(key, "name", p["experimentName"])] += 1
            elif endpoint == "log_metric":
                items[_metric_item(key, p, ts)] += 1
            elif endpoint == "log_parameter":
                items[_param_item(key, p, ts)] += 1
            elif endpoint == "log_output":
                for line in p["outputLines"]:
                    items[_line_item(key, line)] += 1
            elif endpoint in ("upload_asset", "upload_git_patch", "upload_text_sample"):
                items[(key, endpoint, p.get("fileName"), p.get("step"),
                       (p.get("file") or p.get("content"))["size"])] += 1
            else:
                from schema.blobs import is_blob_ref, read_blob
                fields = {k: (read_blob(conn, v["$blob"]).decode() if is_blob_ref(v) else v)
                          for k, v in p.items()}
                items[(key, endpoint, _canon({k: v for k, v in fields.items()
                                              if not isinstance(v, dict)}))] += 1
    finally:
        conn.close()
    return items


def applied_items(state: dict) -> Counter:
    items: Counter = Counter()
    for a in state["applied"]:
        ep, key, f = a["endpoint"], a["experimentKey"], dict(a["fields"])
        if ep in ("experiment_create", "clientlib_add_run"):
            items[(key, "create")] += 1
            if f.get("experimentName"):
                items[(key, "name", f["experimentName"])] += 1
        elif ep == "log_other" and f.get("key") == "Name":
            items[(key, "name", f["value"])] += 1
        elif ep == "log_metric":
            items[_metric_item(key, f, None)] += 1
        elif ep == "batch_metrics":
            for v in f["values"]:
                items[_metric_item(key, v, None)] += 1
        elif ep == "log_parameter":
            items[_param_item(key, f, None)] += 1
        elif ep == "batch_parameters":
            for v in f["values"]:
                items[_param_item(key, v, None)] += 1
        elif ep in ("log_output", "batch_output"):
            for line in f["outputLines"]:
                items[_line_item(key, line)] += 1
        elif ep in ("upload_asset", "upload_git_patch", "upload_text_sample"):
            size = f["file"]["size"] if "file" in f else len(f["content"].encode())
            items[(key, ep, f.get("fileName"), f.get("step"), size)] += 1
        else:
            rest = {k: v for k, v in f.items() if k not in _IGNORED and not isinstance(v, dict)}
            if ep in ("log_other", "log_html"):
                rest.pop("timestamp", None)
            items[(key, ep, _canon(rest))] += 1
    return items


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
