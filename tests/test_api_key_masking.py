"""Issue 15: the API key never enters the journal, whichever way the SDK would find it
(``api_key=``, ``$COMET_API_KEY``, the config file), wherever user text carries it.
A real script runs; then every byte of the journal files (main file and WAL) is scanned."""

from __future__ import annotations

import glob
import os
import subprocess
import sys

import pytest

from journal_helpers import rows

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEY = "Zq7mW2xP9kLr4TnB8vYc3Hs6"  # shaped like a Comet key, in no other test

SCRIPT = """
import argparse, os, sys
from comet_journal import Experiment
journal, source, key = sys.argv[1:4]
parser = argparse.ArgumentParser()
parser.add_argument("--api-key")
parser.add_argument("--lr", type=float)
args = parser.parse_args(["--api-key", key, "--lr", "0.1"])
exp = Experiment(journal=journal, api_key=key if source == "argument" else None,
                 flush_interval=0.05, auto_output_logging="simple", log_env_details=False,
                 log_git_metadata=False, log_git_patch=False, log_code=False)
exp.log_parameters(vars(args))
exp.log_parameter("header", "Authorization: Bearer " + key)
exp.log_other("comet_key", key)
exp.log_others({"cmd": "train.py --api-key=" + key})
print("using the key", key)
exp.log_text("a sample that quotes " + key)
exp.log_html("<p>" + key + "</p>")
exp.set_code("API_KEY = '" + key + "'")
exp.log_system_details(command=["train.py", "--api-key", key])
import sqlite3
hold = sqlite3.connect(journal)  # another connection open: end() leaves the WAL in place
hold.execute("SELECT count(*) FROM calls").fetchone()
exp.end()
os._exit(0)
"""


def _clean_env(home) -> dict:
    """No key of the machine's (variable, ~/.comet.config); automatic capture on."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("COMET_API_KEY", "COMET_CONFIG", "COMET_JOURNAL_AUTO_LOG")}
    env.update(PYTHONPATH=ROOT, HOME=str(home))
    return env


@pytest.mark.parametrize("source", ["argument", "environment", "config-file"])
def test_api_key_is_masked_in_every_journaled_text(tmp_path, source):
    journal = str(tmp_path / "run.db")
    env = _clean_env(tmp_path)
    if source == "environment":
        env["COMET_API_KEY"] = KEY
    elif source == "config-file":
        config = tmp_path / "elsewhere.config"
        config.write_text(f"[comet]\napi_key = {KEY}\n")
        env["COMET_CONFIG"] = str(config)
    proc = subprocess.run([sys.executable, "-c", SCRIPT, journal, source, KEY], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert f"using the key {KEY}" in proc.stdout  # the terminal still shows it
    files = glob.glob(journal + "*")
    assert journal + "-wal" in files
    for path in files:
        with open(path, "rb") as fh:
            data = fh.read()
        assert KEY.encode() not in data, path
    params = {r["payload"]["parameterName"]: r["payload"]["parameterValue"]
              for r in rows(journal, "log_parameter")}
    assert params == {"api_key": "***", "lr": 0.1, "header": "Authorization: Bearer ***"}
    others = {r["payload"]["key"]: r["payload"]["value"] for r in rows(journal, "log_other")}
    assert others == {"comet_key": "***", "cmd": "train.py --api-key=***"}
    assert rows(journal, "log_html")[0]["payload"]["html"] == "<p>***</p>"
    outputs = [line["output"] for r in rows(journal, "log_output")
               for line in r["payload"]["outputLines"]]
    assert any(o.startswith("using the key ***") for o in outputs), outputs
    assert rows(journal, "system_details")[0]["payload"]["command"][-1] == "***"


def test_without_a_key_text_is_journaled_unchanged(tmp_path):
    journal = str(tmp_path / "run.db")
    env = _clean_env(tmp_path)
    proc = subprocess.run([sys.executable, "-c", SCRIPT, journal, "none", KEY], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert rows(journal, "log_other")[0]["payload"]["value"] == KEY
