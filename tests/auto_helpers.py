"""Helpers for the tests of automatic capture (monitor, output, environment).

``auto_on`` is a fixture (import it into a test module to use it): it turns automatic capture
back on even when the suite sets ``COMET_JOURNAL_AUTO_LOG=0``, and lets the monitor run with
intervals below the public 1-second minimum so that the tests stay fast.
"""

from __future__ import annotations

import os
import sys
import time

import pytest

from comet_journal.recorder import auto_logging, monitor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Everything automatic off; a test turns on what it looks at.
NOTHING = dict(auto_output_logging=None, log_env_details=False, log_env_host=False,
               log_git_metadata=False, log_git_patch=False, log_code=False,
               system_monitor_interval=None, keep_alive_interval=None)


@pytest.fixture
def auto_on(monkeypatch):
    monkeypatch.delenv(auto_logging.KILL_SWITCH_ENV, raising=False)
    monkeypatch.setattr(monitor, "min_interval_s", 0.01)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


def options(**overrides) -> dict:
    return {**NOTHING, **overrides}


def wait_for(predicate, timeout: float = 5.0, interval: float = 0.01):
    """Poll until ``predicate()`` is truthy; return its value (fail after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {predicate}")
        time.sleep(interval)


def child_env(**extra) -> dict:
    """Environment for a child Python that imports the project, with capture on."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop(auto_logging.KILL_SWITCH_ENV, None)
    env.update(extra)
    return env


PYTHON = sys.executable
