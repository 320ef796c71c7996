"""Packaging: one import name (``comet_journal``), and every package folder listed.

The install test builds the real wheel and installs it, the way a user does, into a fresh
virtual environment that already holds PyPI's ``schema`` distribution (whose import name the
old layout overwrote), then uninstalls it again.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PARTS = ("recorder", "uploader", "schema", "emulator")


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_every_package_folder_is_installed_under_comet_journal():
    setup = _pyproject()["tool"]["setuptools"]
    listed = set(setup["packages"])
    found = {"comet_journal"}
    for part in PARTS:
        for init in (REPO / part).rglob("__init__.py"):
            rel = init.parent.relative_to(REPO / part).parts
            found.add(".".join(("comet_journal", part, *rel)))
    for init in (REPO / "src" / "comet_journal").rglob("__init__.py"):  # e.g. integrations
        found.add(".".join(("comet_journal", *init.parent.relative_to(
            REPO / "src" / "comet_journal").parts)))
    assert listed == found, f"pyproject packages: missing {found - listed}, stale {listed - found}"
    for part in PARTS:
        assert setup["package-dir"][f"comet_journal.{part}"] == part
    scripts = _pyproject()["project"]["scripts"]
    assert all(target.startswith("comet_journal.") for target in scripts.values())


def _run(cmd, cwd, **kw):
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=240, **kw)
    assert done.returncode == 0, f"{cmd} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.mark.timeout(300)
def test_wheel_installs_beside_pypi_schema_and_uninstalls_cleanly(tmp_path):
    pip_env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1")
    fetched = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q",
                              "-d", str(tmp_path / "dl"), "schema==0.7.8"],
                             capture_output=True, text=True, timeout=120, env=pip_env)
    if fetched.returncode != 0:
        pytest.skip(f"PyPI not reachable for schema==0.7.8: {fetched.stderr.strip()[-300:]}")
    # Built from a copy: setuptools reuses an in-tree build/ (stale modules would ship).
    source = tmp_path / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".venv", ".git", "build", "*.egg-info", "__pycache__", "bench-results", "*.db*"))
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dl"),
          str(source)], tmp_path, env=pip_env)
    wheel = next((tmp_path / "dl").glob("comet_journal-*.whl"))
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], tmp_path)
    py = str(venv / "bin" / "python")
    pip = [py, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "-f", str(tmp_path / "dl")]
    _run([*pip, "schema==0.7.8"], tmp_path, env=pip_env)
    _run([*pip, str(wheel)], tmp_path, env=pip_env)
    # comet-journal's own dependencies come from the test environment, after the venv's own.
    purelib = Path(_run([py, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                        tmp_path).strip())
    (purelib / "zz_test_deps.pth").write_text(sysconfig.get_path("purelib") + "\n")

    top_level = _run([py, "-c", textwrap.dedent("""
        from importlib.metadata import distribution
        files = distribution("comet-journal").files
        print(sorted({f.parts[0] for f in files if f.parts[0].isidentifier()}))
        """)], tmp_path)
    assert top_level.strip() == "['comet_journal']"

    # A user's own schema.py in the working directory shadows nothing of ours.
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "schema.py").write_text("raise ImportError('the user module')\n")
    both = _run([py, "-c", textwrap.dedent("""
        import sys
        sys.path.remove("")  if "" in sys.path else None
        from schema import Schema
        assert Schema(int).validate(3) == 3
        import comet_journal
        from comet_journal import Experiment, Project, start
        from comet_journal.schema.catalogue import ENDPOINTS
        print(comet_journal.__file__, len(ENDPOINTS) > 0)
        """)], tmp_path)
    assert str(venv) in both and "True" in both
    own_module = _run([py, "-c", "from comet_journal import Experiment; print('ok')"],
                      tmp_path / "work")
    assert own_module.strip() == "ok"

    _run([py, "-m", "pip", "uninstall", "-y", "-q", "comet-journal"], tmp_path, env=pip_env)
    after = _run([py, "-c", textwrap.dedent("""
        import importlib.util
        from schema import Schema
        assert Schema(str).validate("x") == "x"
        print(importlib.util.find_spec("comet_journal"))
        """)], tmp_path)
    assert after.strip() == "None"
