"""Environment capture: system details, environment variables (redacted), git metadata and
patch (real repositories), the script's source, skips without git, and the defaults."""

from __future__ import annotations

import getpass
import glob
import io
import logging
import os
import platform
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import zipfile

import pytest

from auto_helpers import auto_on, options, wait_for  # noqa: F401  (auto_on is a fixture)
from journal_helpers import count, rows
from comet_journal.recorder import Experiment, auto_logging, environment
from comet_journal.schema.blobs import read_blob

pytestmark = pytest.mark.usefixtures("auto_on")


def blob(journal, ref: dict) -> bytes:
    conn = sqlite3.connect(str(journal))
    try:
        return read_blob(conn, ref["$blob"])
    finally:
        conn.close()


def details(journal) -> list[dict]:
    return [r["payload"] for r in rows(journal, "system_details")]


# --- system details ---------------------------------------------------------------------------

def test_system_details_as_documented(tmp_path):
    journal = tmp_path / "run.db"
    with Experiment(journal=str(journal), **options(log_env_details=True, log_env_host=True,
                                                    log_env_gpu=False)):
        pass
    [p] = details(journal)
    assert p["command"] == sys.argv and p["executable"] == sys.executable
    assert p["hostname"] == socket.gethostname() and p["pid"] == os.getpid()
    assert p["os"] == platform.platform(aliased=True) and p["osType"] == platform.system()
    assert p["pythonVersion"] == platform.python_version()
    assert p["pythonVersionVerbose"] == sys.version and p["user"] == getpass.getuser()
    assert p["networkInterfaceIps"] and "127.0.0.1" in p["networkInterfaceIps"]
    assert isinstance(p["ip"], str) and p["ip"] in p["networkInterfaceIps"]
    packages = p["installedPackages"]
    assert any(x.startswith("pytest==") for x in packages)
    assert any(x.lower().startswith("psutil==") for x in packages)
    assert "logAdditionalSystemInfoList" not in p  # environment variables: only when asked


def test_host_details_and_all_details_can_be_turned_off(tmp_path):
    journal = tmp_path / "run.db"
    with Experiment(journal=str(journal), **options(log_env_details=True, log_env_host=False)):
        pass
    assert [set(p) for p in details(journal)] == [{"installedPackages"}]
    with Experiment(journal=str(tmp_path / "none.db"), **options(log_env_details=False)):
        pass
    assert count(tmp_path / "none.db", "system_details") == 0


SECRETS = {"MY_API_KEY": "key-value-1", "GITHUB_TOKEN": "token-value-2",
           "DB_PASSWORD": "password-value-3", "AWS_SECRET_ACCESS_KEY": "secret-value-4",
           "HF_AUTH": "auth-value-5"}


def test_environment_variables_only_when_asked_with_secrets_redacted(tmp_path, monkeypatch):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DATABASE_URL", "postgres://ada:url-pass-6@db.example/x")
    monkeypatch.setenv("PLAIN_SETTING", "visible")
    journal = tmp_path / "run.db"
    with Experiment(journal=str(journal), **options(log_env_variables=True)):
        pass
    [p] = details(journal)
    assert set(p) == {"logAdditionalSystemInfoList"}  # no other details were asked for
    env = {e["key"]: e["value"] for e in p["logAdditionalSystemInfoList"]}
    assert set(env) == {f"env.{name}" for name in os.environ}
    assert all(env[f"env.{name}"] == "***" for name in SECRETS)
    assert env["env.DATABASE_URL"] == "postgres://ada:***@db.example/x"
    assert env["env.PLAIN_SETTING"] == "visible"
    raw = b"".join(open(f, "rb").read() for f in glob.glob(str(journal) + "*"))
    assert b"visible" in raw
    for secret in [*SECRETS.values(), "url-pass-6"]:
        assert secret.encode() not in raw  # not in the journal file, nor in its WAL

    with Experiment(journal=str(tmp_path / "some.db"), **options(
            log_env_variables=["PLAIN_SETTING", "MY_API_KEY", "NOT_SET_AT_ALL"])):
        pass
    [p] = details(tmp_path / "some.db")
    assert p["logAdditionalSystemInfoList"] == [
        {"key": "env.PLAIN_SETTING", "value": "visible"}, {"key": "env.MY_API_KEY",
                                                          "value": "***"}]


@pytest.mark.parametrize("name, secret", [
    ("OPENAI_API_KEY", True), ("SSH_PRIVATE_KEY", True), ("PGPASSWORD", True),
    ("SESSION_COOKIE", True), ("COMET_API_KEY", True), ("HOME", False), ("PATH", False),
    ("CUDA_VISIBLE_DEVICES", False)])
def test_secret_names(name, secret):
    assert bool(environment.SECRET_NAME.search(name)) is secret


def test_urls_lose_their_passwords():
    assert environment.redact_url("https://u:p@h.x/y") == "https://u:***@h.x/y"
    assert environment.redact_url("see git+ssh://me:pw@h and http://h/x?a=b@c") == \
        "see git+ssh://me:***@h and http://h/x?a=b@c"
    assert environment.redact_url("https://token@github.com/a/b") == \
        "https://token@github.com/a/b"  # no password part: a token alone is kept (git style)


# --- git ----------------------------------------------------------------------------------------

def git(repo, *args) -> str:
    env = dict(os.environ, GIT_AUTHOR_NAME="Ada", GIT_AUTHOR_EMAIL="ada@example.com",
               GIT_COMMITTER_NAME="Ada", GIT_COMMITTER_EMAIL="ada@example.com")
    return subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "-c", "init.defaultBranch=main", "init", "-q")
    git(repo, "config", "user.name", "Ada Lovelace")
    (repo / "train.py").write_text("print('v1')\n")
    git(repo, "add", "train.py")
    git(repo, "commit", "-q", "-m", "first")
    (repo / "train.py").write_text("print('v2')\n")
    git(repo, "commit", "-q", "-am", "second")
    git(repo, "remote", "add", "origin", "https://ada:hunter2@github.com/ada/proj.git")
    monkeypatch.setenv("COMET_GIT_DIRECTORY", str(repo))
    return repo


def test_git_metadata_and_patch_of_uncommitted_changes(tmp_path, repo):
    (repo / "train.py").write_text("print('v3, not committed')\n")
    (repo / "staged.py").write_text("x = 1\n")
    git(repo, "add", "staged.py")
    expected_patch = subprocess.run(["git", "diff", "HEAD", "--binary"], cwd=repo,
                                    capture_output=True, check=True).stdout
    journal = tmp_path / "run.db"
    with Experiment(journal=str(journal), **options(log_git_metadata=True, log_git_patch=True)):
        pass
    [meta] = [r["payload"] for r in rows(journal, "git_metadata")]
    first = git(repo, "rev-list", "--max-parents=0", "HEAD")
    assert meta == {"user": "Ada Lovelace", "root": first, "branch": "refs/heads/main",
                    "parent": git(repo, "rev-parse", "HEAD"),
                    "origin": "https://ada:***@github.com/ada/proj.git"}
    [patch_row] = rows(journal, "upload_git_patch")
    with zipfile.ZipFile(io.BytesIO(blob(journal, patch_row["payload"]["file"]))) as zf:
        assert zf.namelist() == ["git_diff.patch"]
        patch = zf.read("git_diff.patch")
    assert patch == expected_patch
    assert b"+print('v3, not committed')" in patch and b"+x = 1" in patch


def test_clean_or_detached_repository(tmp_path, repo):
    git(repo, "checkout", "-q", "--detach")
    journal = tmp_path / "run.db"
    with Experiment(journal=str(journal), **options(log_git_metadata=True, log_git_patch=True)):
        pass
    [meta] = [r["payload"] for r in rows(journal, "git_metadata")]
    assert meta["branch"] == "" and meta["parent"] == git(repo, "rev-parse", "HEAD")
    assert count(journal, "upload_git_patch") == 0  # nothing uncommitted: no patch


def test_no_repository_or_no_git_is_skipped_silently(tmp_path, monkeypatch, capfd, caplog):
    plain = tmp_path / "plain"
    plain.mkdir()
    monkeypatch.setenv("COMET_GIT_DIRECTORY", str(plain))
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    journal = tmp_path / "run.db"
    with caplog.at_level(logging.INFO, logger="comet_journal.recorder"):
        with Experiment(journal=str(journal), **options(log_git_metadata=True,
                                                        log_git_patch=True, log_env_details=True)):
            pass
        empty = tmp_path / "empty-bin"
        empty.mkdir()
        monkeypatch.setenv("PATH", str(empty))  # no git binary at all
        with Experiment(journal=str(journal), **options(log_git_metadata=True,
                                                        log_git_patch=True, log_env_details=True)):
            pass
    assert count(journal, "git_metadata") == 0 and count(journal, "upload_git_patch") == 0
    assert count(journal, "system_details") == 2  # the rest was recorded
    assert capfd.readouterr().err == "" and not caplog.records


# --- code ----------------------------------------------------------------------------------------

def test_the_creating_file_is_recorded_as_code(tmp_path):
    journal = tmp_path / "run.db"
    with Experiment(journal=str(journal), **options(log_code=True)):
        pass
    [code] = rows(journal, "set_code")
    with open(__file__, "rb") as fh:
        assert blob(journal, code["payload"]["code"]) == fh.read()
    with Experiment(journal=str(tmp_path / "none.db"), **options(log_code=False)):
        pass
    assert count(tmp_path / "none.db", "set_code") == 0
    assert environment.caller_file() == __file__


# --- the thread, failures, defaults ----------------------------------------------------------

def test_a_failing_part_is_reported_once_and_the_others_still_recorded(tmp_path, monkeypatch,
                                                                       capsys):
    def broken():
        raise OSError("site-packages unreadable")

    monkeypatch.setattr(environment, "installed_packages", broken)
    journal = tmp_path / "run.db"
    with Experiment(journal=str(journal), **options(log_env_details=True, log_code=True)) as exp:
        pass
    err = capsys.readouterr().err
    assert err.count("comet-journal: could not record the system details") == 1
    assert "site-packages unreadable" in err
    assert count(journal, "set_code") == 1 and count(journal, "system_details") == 0
    assert exp._auto.environment.failures == {
        "system details": "OSError: site-packages unreadable"}


def test_end_waits_for_the_environment_but_not_forever(tmp_path, monkeypatch, caplog):
    real = environment.git_metadata

    def slow(delay):
        def git_metadata(directory=None):
            time.sleep(delay)
            return {"user": "u", "root": "r", "branch": "b", "parent": "p", "origin": "o"}
        return git_metadata

    monkeypatch.setattr(environment, "git_metadata", slow(0.3))
    journal = tmp_path / "run.db"
    with Experiment(journal=str(journal), **options(log_git_metadata=True)) as exp:
        thread = exp._auto.environment._thread
        assert thread.name == "recorder.environment" and thread.daemon
    assert count(journal, "git_metadata") == 1  # end() waited for it

    monkeypatch.setattr(auto_logging, "ENVIRONMENT_WAIT_S", 0.1)
    monkeypatch.setattr(environment, "git_metadata", slow(0.6))
    exp = Experiment(journal=str(tmp_path / "slow.db"), **options(log_git_metadata=True))
    started = time.monotonic()
    exp.end()
    assert time.monotonic() - started < 0.5
    time.sleep(0.8)  # the abandoned capture finishes, and journals nothing after the end
    assert count(tmp_path / "slow.db", "git_metadata") == 0 and exp._calls_after_end == 0
    assert any("did not finish" in r.getMessage() for r in caplog.records)
    assert real is not environment.git_metadata


def test_defaults_record_everything_like_the_sdk(tmp_path, monkeypatch):
    monkeypatch.setenv("COMET_GIT_DIRECTORY", str(tmp_path))
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    journal = tmp_path / "run.db"
    original = sys.stdout
    with Experiment(journal=str(journal), log_env_network=True) as exp:
        assert sys.stdout is not original  # Python-level output capture
        sampler = exp._auto.monitor
        assert (sampler.interval, sampler.keep_alive_interval) == (30.0, 60.0)
        assert sampler.restart_in_child is True
        names = {t.name for t in threading.enumerate()}
        assert "recorder.monitor" in names
        print("printed")
        wait_for(lambda: count(journal, "cpu_metrics"))
    assert sys.stdout is original
    assert count(journal, "system_details") >= 1 and count(journal, "set_code") == 1
    assert count(journal, "cpu_metrics") == 1  # the first sample, at start
    assert "printed\n" in [line["output"] for r in rows(journal, "log_output")
                           for line in r["payload"]["outputLines"]]


def test_the_kill_switch_turns_everything_off(tmp_path, monkeypatch):
    monkeypatch.setenv(auto_logging.KILL_SWITCH_ENV, "0")
    journal = tmp_path / "run.db"
    original = sys.stdout
    with Experiment(journal=str(journal), auto_output_logging="fd", log_env_variables=True):
        assert sys.stdout is original
        assert not {"recorder.monitor", "recorder.environment"} & {
            t.name for t in threading.enumerate()}
    assert [r["endpoint"] for r in rows(journal)] == [
        "experiment_create", "experiment_start_end_time", "experiment_start_end_time"]


# --- the API key is never stored ------------------------------------------------------------

API_KEY = "Zk3pQ9vX2mL7aB4nR8sT1wYc"  # appears in this file: the recorded code must not keep it


def test_secret_filter_masks_keys_it_only_knows_by_fingerprint():
    f = environment.SecretFilter([API_KEY, None, "short"])
    text = f'key="{API_KEY}"\nbearer = "Bearer:{API_KEY}123"\nnear = "{API_KEY[:-1]}"\n'
    assert f.mask_text(text) == f'key="***"\nbearer = "Bearer:***123"\nnear = "{API_KEY[:-1]}"\n'
    assert API_KEY not in repr(f) and API_KEY not in str(vars(f))
    assert environment.SecretFilter([None]).mask(b"anything") == b"anything"


def test_the_api_key_is_masked_in_the_code_and_the_patch(tmp_path, repo, monkeypatch):
    monkeypatch.setenv("COMET_API_KEY", "EnvKey0123456789abcdefgh")
    (repo / "train.py").write_text(f'API_KEY = "{API_KEY}"\nENV = "EnvKey0123456789abcdefgh"\n')
    journal = tmp_path / "run.db"
    with Experiment(journal=str(journal), api_key=API_KEY, **options(
            log_code=True, log_git_patch=True)) as exp:
        assert API_KEY not in str(vars(exp))
    raw = b"".join(open(f, "rb").read() for f in glob.glob(str(journal) + "*"))
    code = blob(journal, rows(journal, "set_code")[0]["payload"]["code"])
    [patch_row] = rows(journal, "upload_git_patch")
    with zipfile.ZipFile(io.BytesIO(blob(journal, patch_row["payload"]["file"]))) as zf:
        patch = zf.read("git_diff.patch")
    assert b'+API_KEY = "***"\n+ENV = "***"\n' in patch
    assert b'API_KEY = "***"  # appears in this file' in code
    assert API_KEY.encode() not in raw + code + patch  # the file, and the decoded blobs
    assert b"EnvKey0123456789abcdefgh" not in raw + code + patch
