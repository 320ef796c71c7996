"""Issue 15: the errors a user meets when sharing an experiment with workers, or pointing it
at a directory it cannot write, name the fix."""

from __future__ import annotations

import multiprocessing
import os
import pickle

import pytest

from journal_helpers import count, small_tmpfs
from comet_journal import Experiment
from comet_journal.schema.errors import JournalError


def _log_from_worker(exp) -> None:  # never runs: the Experiment cannot reach the worker
    exp.log_metric("m", 1)


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_spawned_worker_error_names_the_fix(tmp_path, method):
    journal = str(tmp_path / "run.db")
    with Experiment(journal=journal) as exp:
        worker = multiprocessing.get_context(method).Process(target=_log_from_worker,
                                                             args=(exp,))
        with pytest.raises(TypeError) as error:
            worker.start()
        message = str(error.value)
        assert "cannot be pickled" in message and method in message
        assert f"Experiment(journal={journal!r}, experiment_key={exp.key!r})" in message
    assert count(journal, "log_metric") == 0


def test_pickling_directly_gives_the_same_hint(tmp_path):
    with Experiment(journal=str(tmp_path / "run.db")) as exp:
        with pytest.raises(TypeError, match="create the Experiment in the worker"):
            pickle.dumps(exp)


@pytest.fixture
def unwritable_dir(tmp_path):
    directory = tmp_path / "readonly"
    directory.mkdir()
    if os.geteuid() != 0:
        directory.chmod(0o500)
        yield directory
        directory.chmod(0o700)
        return
    # root writes through permissions: a read-only file system is what stops it
    with small_tmpfs(directory, "ro,size=1m"):
        yield directory


@pytest.mark.parametrize("as_file", [False, True])
def test_unwritable_journal_directory_is_named_with_the_reason(unwritable_dir, as_file):
    journal = str(unwritable_dir / "run.db") if as_file else str(unwritable_dir)
    with pytest.raises(JournalError) as error:
        Experiment(journal=journal)
    message = str(error.value)
    assert message.startswith(f"{unwritable_dir}: cannot create or write the journal")
    assert "Read-only file system" in message or "Permission denied" in message
    assert "choose a writable directory" in message
