"""Shared pytest fixtures. Keep each fixture short; put helpers in the package they test."""

from __future__ import annotations

import os

import pytest

# Journals in tests hold only the calls each test makes: the recorder's automatic capture
# (system details, code, git patch, output, samples) is off unless a test turns it back on
# (tests/auto_helpers.py). Set before anything starts, so subprocesses inherit it too.
os.environ.setdefault("COMET_JOURNAL_AUTO_LOG", "0")
# Nor does end() print its how-to-upload line (tests/test_cli_first_hour.py checks it with
# the variable removed): tests compare stderr exactly.
os.environ.setdefault("COMET_JOURNAL_QUIET", "1")

from comet_journal.emulator.testing import EmulatorClient, EmulatorFactory

# The files that take longest, started first: ./scripts/test runs the suite on parallel
# workers a file at a time in collection order (--no-loadscope-reorder), and a minute-long
# file started last keeps one worker busy while the others idle (measured: 255 s -> ~200 s
# on 2 cores). The rest keep their alphabetical order and fill in around these.
RUN_FIRST = ("test_chaos.py", "test_watch.py", "test_scale_readback.py", "test_bad_server.py",
             "test_upload_e2e.py", "test_cli_first_hour.py", "test_segments_daemon.py",
             "test_importer.py", "test_bad_journals.py", "test_viewer_browser.py")


def pytest_collection_modifyitems(config, items):
    first = {name: rank for rank, name in enumerate(RUN_FIRST)}
    items.sort(key=lambda item: first.get(item.path.name, len(RUN_FIRST)))  # stable


# --- the uploader's state directory -----------------------------------------------------------

@pytest.fixture(autouse=True)
def uploader_state_dir(tmp_path_factory, monkeypatch):
    """Each test's own uploader state directory (upload progress and locks live there, never
    beside journals), outside ``tmp_path`` so listings of a test's journals don't see it;
    subprocesses inherit it through the environment."""
    home = tmp_path_factory.mktemp("uploader-state")
    state = home / "comet-journal"
    # Both: helpers that run the CLI without COMET_* variables still find it through XDG.
    monkeypatch.setenv("XDG_STATE_HOME", str(home))
    monkeypatch.setenv("COMET_JOURNAL_STATE", str(state))
    return state


# --- the emulator (a real Comet-compatible server on a real socket) -------------------------

@pytest.fixture
def emulator_factory(tmp_path):
    """Call with :class:`comet_journal.emulator.Emulator` keyword arguments to start more emulators."""
    factory = EmulatorFactory(tmp_path)
    yield factory
    factory.stop_all()


@pytest.fixture
def emulator(emulator_factory):
    """A started emulator (API key ``test-key``) on a temporary SQLite file."""
    return emulator_factory()


@pytest.fixture
def emulator_client(emulator):
    """A requests session bound to ``emulator``, sending its API key."""
    client = EmulatorClient(emulator)
    yield client
    client.close()
