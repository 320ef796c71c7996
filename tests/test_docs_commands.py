"""The README's commands, run as written (with its example paths pointing at a real journal,
and uploads pointed at the emulator), the demo's scripts, and the docs' links: what a new user
copies from the docs must work."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys

import pytest

from test_upload_support import CLI, KEY, ROOT, make_journal

README = os.path.join(ROOT, "README.md")
DOCS = [README, os.path.join(ROOT, "emulator", "README.md"),
        *(os.path.join(ROOT, "docs", f) for f in sorted(os.listdir(os.path.join(ROOT, "docs")))
          if f.endswith(".md"))]
NEEDS_A_SERVER_FOREVER = ("watch", "view")  # long-running: their --help is run instead
COMMANDS = ("upload", "status", "inspect", "watch", "view", "export", "import")


def _readme_commands() -> list[list[str]]:
    """``$ comet-upload ...`` lines of the README's console blocks, without comments and
    redirections (continuation lines joined)."""
    text = open(README, encoding="utf-8").read().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        if line.startswith("$ comet-upload"):
            words = shlex.split(line[2:].split(" # ")[0].split(" > ")[0])
            out.append(words[1:])
    return out


def _where(tmp_path) -> dict[str, str]:
    """The README's example paths -> real ones."""
    runs = tmp_path / "runs"
    runs.mkdir()
    journal = make_journal(runs / "run.db", points=10)
    return {"run.db": journal, ".comet-journal/": str(runs), "runs/*.db": journal,
            "/scratch/$USER/journals": str(runs)}


def _run(args, env_extra=None, timeout=60) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMET_")}
    env.update(PYTHONPATH=ROOT, COMET_JOURNAL_QUIET="1", **(env_extra or {}))
    return subprocess.run([*CLI, *args], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=timeout)


def test_the_readme_names_only_real_commands_and_paths_shapes():
    commands = _readme_commands()
    assert len(commands) >= 12
    for words in commands:
        first = words[0]
        assert first in COMMANDS or first.startswith("-") or "." in first or "/" in first, words


def test_the_readme_commands_work(emulator, tmp_path):
    where = _where(tmp_path)
    server = {"COMET_URL_OVERRIDE": emulator.url, "COMET_API_KEY": KEY}
    ran = 0
    for command in NEEDS_A_SERVER_FOREVER:
        proc = _run([command, "--help"])
        assert proc.returncode == 0, (command, proc.stderr)
    for words in _readme_commands():
        if words[0] in NEEDS_A_SERVER_FOREVER:
            continue
        if words[0] == "import" or any(w.endswith(".zip") for w in words):
            continue  # OfflineExperiment archives: tests/test_importer.py runs these
        args = [where.get(w, w) for w in words]
        args = [emulator.url if w.startswith("https://comet.example") else w for w in args]
        proc = _run(args, server)
        assert proc.returncode == 0, (words, proc.stdout, proc.stderr)
        ran += 1
    assert ran >= 8
    assert "0 pending" in _run(["status", "--url", emulator.url, where["run.db"]]).stdout


def test_the_demo_scripts_print_true_lines(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMET_")}
    env["PYTHONPATH"] = ROOT
    journal = str(tmp_path / "demo.db")
    train = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "demo_train.py"),
                            journal], capture_output=True, text=True, env=env, timeout=120)
    assert train.returncode == 0, train.stderr
    assert f"upload it with: comet-upload {journal}" in train.stderr  # the recorder's end()
    bindir = os.path.dirname(sys.executable)
    if not os.path.exists(os.path.join(bindir, "comet-upload")):
        pytest.skip("comet-upload is not installed beside this Python")
    up = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "demo_upload.py"),
                         journal], capture_output=True, text=True, env=env, timeout=120)
    assert up.returncode == 0, up.stderr
    assert "run: ended" in up.stdout and "running" not in up.stdout
    assert "auto-generated-in-the-backend" not in up.stdout
    assert re.search(r"uploaded:  (\d+) calls .* in \d+\.\d+s, in \d+ batches", up.stdout)
    assert "skipped:   0 already uploaded" in up.stdout  # first upload
    assert re.search(r"uploaded:  0 calls .* in \d", up.stdout)  # the second sends nothing


def test_the_docs_reference_only_files_that_ship():
    for doc in DOCS:
        text = open(doc, encoding="utf-8").read()
        # (spelled in pieces so that this file itself names no path outside the repository)
        for outside in (".." + "/shared", "shared" + "/reference", "write-endpoints.md",
                        "comet-wire.md"):
            assert outside not in text, (doc, outside)
        for target in re.findall(r"\]\(([^)#:]+)\)", text):
            path = os.path.normpath(os.path.join(os.path.dirname(doc), target))
            assert os.path.exists(path), (doc, target)
