"""Helpers for the importer's tests (no tests here): real archives made by the real
``comet_ml.OfflineExperiment`` in a subprocess (its import and threads stay out of pytest)."""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import time
import zipfile

QUIET = dict(log_code=False, log_graph=False, auto_param_logging=False,
             auto_metric_logging=False, log_env_gpu=False, log_env_cpu=False,
             log_git_metadata=False, log_git_patch=False, display_summary_level=0)

# Every call below makes the message types a run writes (see test_importer.py's checks).
FULL_RUN = r'''
import os, sys, comet_ml
os.makedirs(OUT, exist_ok=True)
options = dict(QUIET, log_env_details=True, log_env_host=True, log_git_metadata=GIT,
               log_git_patch=GIT)
exp = comet_ml.OfflineExperiment(offline_directory=OUT, project_name="proj", workspace="ws",
                                 **options)
exp.set_name("imported-run")
open(OUT + ".png", "wb").write(b"\x89PNG\r\n\x1a\n")
exp.log_image(OUT + ".png", name="picture.png", step=6)
exp.add_tags(["a", "b"])
for s in (1, 2, 3):
    exp.log_parameter("lr", 0.1 * s, step=s)
exp.log_parameters({"opt": {"name": "adam"}, "layers": [1, 2]})
with exp.train():
    for i in range(POINTS):
        exp.log_metric("loss", 1.0 / (i + 1), step=i, epoch=i // 10)
with exp.validate():
    for i in range(0, POINTS, 2):
        exp.log_metric("loss", 2.0 / (i + 1), step=i)
exp.log_metric("nan", float("nan"), step=1)
exp.log_metrics({"a": 1, "b": {"c": 2}}, prefix="pre", step=7)
for i in range(LINES):
    print("out", i)
    if i % 3 == 0:
        print("err", i, file=sys.stderr)
exp.log_other("k", 3)
exp.log_html("<b>x</b>"); exp.log_html("<i>y</i>", clear=True)
exp.set_model_graph("graph text")
exp.log_asset_data(b"data bytes", name="d.txt", step=3, metadata={"m": 1})
exp.log_asset_data(b"x" * 3_000_000, name="big.bin", overwrite=True)
exp.log_text("a sample", step=2, metadata={"t": 1})
exp.log_curve("c", [1, 2], [3, 4], step=5)
exp.log_confusion_matrix(matrix=[[1, 0], [0, 1]], labels=["x", "y"])
exp.log_histogram_3d([1, 2, 2, 3], name="h", step=4)
exp.log_code(code="print(1)", code_name="x.py")
exp.log_system_info("sk", "sv")
exp.log_dependency("numpy", "1.0")
exp.set_filename("train.py")
exp.log_remote_asset("s3://bucket/x", remote_file_name="x")
open(OUT + ".model.bin", "wb").write(b"weights")
exp.log_model("mdl", OUT + ".model.bin")
'''

END = "exp.end()\n"
# A run killed before end(): flush what was logged, say so, then wait to be killed.
HANG = r'''
import time
exp._streamer.flush() if hasattr(exp, "_streamer") else None
time.sleep(1.0)
print("READY", flush=True)
sys.__stdout__.write("READY\n"); sys.__stdout__.flush()
time.sleep(600)
'''


def _script(out: str, body: str, points: int, lines: int, git: bool = False) -> str:
    return (f"OUT = {out!r}\nPOINTS = {points}\nLINES = {lines}\nQUIET = {QUIET!r}\n"
            f"GIT = {git!r}\n" + body)


def _git_repo(directory: str) -> str | None:
    """A repository with one commit and one uncommitted change (for git metadata and patch),
    or None where git is not installed."""
    import shutil
    if shutil.which("git") is None:
        return None
    repo = os.path.join(directory, "repo")
    os.makedirs(repo, exist_ok=True)
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.com",
               GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.com")
    for args in (["init", "-q"], ["remote", "add", "origin", "https://example.com/r.git"]):
        subprocess.run(["git", *args], cwd=repo, env=env, check=True)
    with open(os.path.join(repo, "train.py"), "w") as fh:
        fh.write("print(1)\n")
    subprocess.run(["git", "add", "."], cwd=repo, env=env, check=True)
    subprocess.run(["git", "commit", "-qm", "one"], cwd=repo, env=env, check=True)
    with open(os.path.join(repo, "train.py"), "a") as fh:
        fh.write("print(2)\n")
    return repo


def _env(tmp: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMET_")}
    env.update(TMPDIR=tmp, HOME=tmp, COMET_OFFLINE_SAMPLING_SIZE="15000")
    return env


def make_archive(directory, points=60, lines=20, body=FULL_RUN) -> str:
    """Run OfflineExperiment to its end(); return the archive's path."""
    out = os.path.join(str(directory), "offline")
    tmp = os.path.join(str(directory), "tmp")
    os.makedirs(tmp, exist_ok=True)
    repo = _git_repo(str(directory)) if body is FULL_RUN else None
    proc = subprocess.run([sys.executable, "-c", _script(out, body + END, points, lines,
                                                         git=repo is not None)],
                          env=_env(tmp), capture_output=True, text=True, timeout=120,
                          cwd=repo)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (archive,) = glob.glob(os.path.join(out, "*.zip"))
    return archive


def make_killed_run(directory, points=60, lines=20) -> tuple[str, str]:
    """Run OfflineExperiment, SIGKILL it before end(); return (its temp dir, placeholder)."""
    out = os.path.join(str(directory), "offline")
    tmp = os.path.join(str(directory), "tmp")
    os.makedirs(tmp, exist_ok=True)
    proc = subprocess.Popen([sys.executable, "-c", _script(out, FULL_RUN + HANG, points, lines)],
                            env=_env(tmp), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if "READY" in (proc.stdout.readline() or "READY"):
                break
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    (placeholder,) = glob.glob(os.path.join(out, "*.zip"))
    dirs = [d for d in glob.glob(os.path.join(tmp, "*"))
            if os.path.exists(os.path.join(d, "messages.json"))]
    assert len(dirs) == 1, os.listdir(tmp)
    return dirs[0], placeholder


def archive_messages(source) -> list[dict]:
    """The messages of an archive (zip) or directory, in file order."""
    if os.path.isdir(source):
        with open(os.path.join(source, "messages.json"), "rb") as fh:
            data = fh.read()
    else:
        with zipfile.ZipFile(source) as zf:
            data = zf.read("messages.json")
    return [json.loads(line) for line in data.splitlines() if line.strip()]


def make_big_archive(path, megabytes: int) -> str:
    """An archive as OfflineExperiment writes it (stored, zip64) holding one big asset of
    random bytes, written 1 MiB at a time."""
    key = "b" * 32
    archive = os.path.join(str(path), f"{key}.zip")
    info = {"offline_id": key, "project_name": "p", "workspace": "w", "start_time": 1,
            "stop_time": 2, "tags": []}
    message = {"type": "file_upload", "payload": {
        "upload_type": "asset", "file_path": "tmpbig", "message_id": 1, "local_timestamp": 5,
        "metadata": {}, "clean": True, "additional_params": {
            "fileName": "big.bin", "step": 0, "overwrite": False, "context": None}}}
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        zf.writestr("experiment.json", json.dumps(info))
        zf.writestr("messages.json", json.dumps(message) + "\n")
        with zf.open("tmpbig", "w", force_zip64=True) as fh:
            for _ in range(megabytes):
                fh.write(os.urandom(1 << 20))
    return archive
