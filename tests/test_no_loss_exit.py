"""Issue 15, recorder side: what a script logged reaches the journal on every normal exit
path (a Project never closed; forked multiprocessing workers). Real processes."""

from __future__ import annotations

import os
import subprocess
import sys

from journal_helpers import count, rows

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, PYTHONPATH=ROOT)

PROJECT_WITHOUT_WITH = """
import sys
from comet_journal import Project
Project(journal=sys.argv[1], workspace="me", project_name="mnist").set_notes("hello")
"""


def test_project_without_with_is_written_at_exit_with_a_warning(tmp_path):
    journal = str(tmp_path / "p.db")
    proc = subprocess.run([sys.executable, "-c", PROJECT_WITHOUT_WITH, journal], env=ENV,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    [notes] = rows(journal, "project_notes")
    assert notes["payload"]["notes"] == "hello"
    assert count(journal) == 1
    assert "Project 'mnist' was not closed" in proc.stderr


PROJECT_CLOSED = """
import sys
from comet_journal import Project
with Project(journal=sys.argv[1], workspace="me", project_name="mnist") as project:
    project.set_notes("hello")
"""


def test_project_closed_properly_says_nothing_at_exit(tmp_path):
    journal = str(tmp_path / "p.db")
    proc = subprocess.run([sys.executable, "-c", PROJECT_CLOSED, journal], env=ENV,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert count(journal, "project_notes") == 1
    assert "not closed" not in proc.stderr
