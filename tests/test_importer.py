"""Importing comet_ml OfflineExperiment archives: real archives from the real SDK, uploaded to
the emulator and compared item by item with the archive's own messages.json."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sys
import subprocess
import time
import zipfile
from collections import Counter, defaultdict

import pytest

from offline_archives import archive_messages, make_archive, make_killed_run
from test_upload_support import CLI, FAST, KEY, ROOT, run_cli, upload

from comet_journal.uploader.importer import ArchiveError, import_source
from comet_journal.uploader.state_home import default_state_dir


@pytest.fixture(scope="module")
def full_archive(tmp_path_factory):
    return make_archive(tmp_path_factory.mktemp("archive"))


def _sha(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def _canon(value) -> str:
    return json.dumps(value, sort_keys=True)


def _applied(emu, key) -> list[dict]:
    return [a for a in emu.state()["applied"] if a["experimentKey"] == key]


def _member_sizes(source) -> dict:
    if os.path.isdir(source):
        return {n: os.path.getsize(os.path.join(source, n)) for n in os.listdir(source)}
    with zipfile.ZipFile(source) as zf:
        return {i.filename: i.file_size for i in zf.infolist()}


def assert_server_holds_archive(emu, source, key) -> None:
    """Nothing missing, nothing duplicated, order kept where order matters."""
    messages = archive_messages(source)
    applied = _applied(emu, key)
    by_type = defaultdict(list)
    for m in messages:
        by_type[m["type"]].append(m["payload"])
    fields = defaultdict(list)
    for a in applied:
        if a["endpoint"] == "batch_metrics":
            fields["log_metric"].extend(a["fields"]["values"])
        elif a["endpoint"] == "batch_parameters":
            fields["log_parameter"].extend(a["fields"]["values"])
        else:
            fields[a["endpoint"]].append(a["fields"])
    # every metric point of every context, with step, epoch and timestamp
    want = Counter((p["metric"]["metricName"], _canon(p["metric"]["metricValue"]),
                    p["metric"].get("step"), p["metric"].get("epoch"), p.get("context"),
                    p["local_timestamp"]) for p in by_type["metric_msg"])
    have = Counter((f["metricName"], _canon(f["metricValue"]), f.get("step"), f.get("epoch"),
                    f.get("context"), f.get("timestamp")) for f in fields["log_metric"])
    assert want == have and sum(want.values()) == len(by_type["metric_msg"])
    # every parameter value, in order per name, with its step
    want_p, have_p = defaultdict(list), defaultdict(list)
    for p in by_type["parameter_msg"]:
        param = p.get("param") or p["params"]
        want_p[param["paramName"]].append((_canon(param["paramValue"]), param.get("step")))
    for f in fields["log_parameter"]:
        have_p[f["parameterName"]].append((_canon(f["parameterValue"]), f.get("step")))
    for name in want_p:
        assert want_p[name] == have_p[name], (name, len(want_p[name]), len(have_p[name]),
            [i for i, (a, b) in enumerate(zip(want_p[name], have_p[name])) if a != b][:5])
    assert want_p.keys() == have_p.keys()
    assert len(want_p["lr"]) >= 3  # comet upload keeps the last only
    # output lines in their order, with the stderr flag and original timestamps
    lines = sorted((line for f in fields["log_output"] for line in f["outputLines"]),
                   key=lambda line: line["offset"])
    assert [(x["output"], x["stderr"], x["localTimestamp"]) for x in lines] == [
        (p["output"], bool(p["stderr"]), p["local_timestamp"])
        for p in by_type["standard_output"]]
    # log_other (Name included) in order per key; html appends and overrides in order
    want_o, have_o = defaultdict(list), defaultdict(list)
    for p in by_type["log_other"]:
        want_o[p["key"]].append(p["value"])
    for f in fields["log_other"]:
        have_o[f["key"]].append(f["value"])
    assert want_o == have_o
    html = [(p.get("html", p.get("htmlOverride")), "htmlOverride" in p)
            for m in messages if m["type"] in ("html", "htmlOverride") for p in [m["payload"]]]
    assert [(f["html"], f.get("override", False)) for f in fields["log_html"]] == html
    assert [f["graph"] for f in fields["log_graph"]] == [p["graph"] for p in by_type["graph"]]
    # every file with its type, step, context, name, extension, overwrite, metadata and bytes
    sizes = _member_sizes(source)
    want_a = Counter()
    for p in by_type["file_upload"]:
        extra = p["additional_params"] or {}
        if p["upload_type"] == "visualization":  # an image: uploaded as REST log_image does
            extra = dict(extra, fileName=extra["figName"], type="image")
        want_a[(extra.get("fileName"), extra.get("type") or p["upload_type"],
                extra.get("step"), extra.get("context"), extra.get("extension"),
                bool(extra.get("overwrite")), _canon(p.get("metadata") or None),
                sizes[p["file_path"]])] += 1
    have_a = Counter((f.get("fileName"), f.get("type"), f.get("step"), f.get("context"),
                      f.get("extension"), bool(f.get("overwrite")),
                      _canon(f.get("metadata") or None), f["file"]["size"])
                     for f in fields["upload_asset"])
    assert want_a == have_a
    if not by_type["system_details"]:
        return
    # environment: details, packages, system info
    details = {k: v for f in fields["system_details"] for k, v in f.items()}
    assert details["installedPackages"] == by_type["installed_packages"][0]["installed_packages"]
    assert details["osPackages"] == by_type["os_packages"][0]["os_packages"]
    assert details["hostname"] == by_type["system_details"][0]["hostname"]
    assert details["logAdditionalSystemInfoList"] == [{"key": "sk", "value": "sv"}]
    for p in by_type["git_metadata"]:  # where git is installed (offline_archives._git_repo)
        (git,) = fields["git_metadata"]
        assert {k: v for k, v in git.items() if k != "experimentKey"} == {k: p["git_metadata"][k] or "" for k in
                       ("branch", "origin", "parent", "root", "user")}


def _holds(emu, source, key) -> bool:
    try:
        assert_server_holds_archive(emu, source, key)
    except (AssertionError, KeyError):
        return False
    return True


def _import_json(*args) -> dict:
    proc = run_cli("import", "--json", *args)
    assert proc.returncode in (0, 1), proc.stderr
    return json.loads(proc.stdout)


# --- a whole archive, uploaded once ---------------------------------------------------------

def test_archive_upload_is_lossless_and_exactly_once(emulator, full_archive, tmp_path):
    state = tmp_path / "state"
    before = _sha(full_archive)
    proc = upload(emulator, full_archive, "--state", state, "--json", check=0)
    summary = json.loads(proc.stdout)["journals"][0]
    key = os.path.basename(full_archive)[:-4]
    assert summary["journal"] == str(state / "imported" / f"{key}.db")
    assert [e["server_key"] for e in summary["experiments"]] == [key]  # the archive's key
    assert_server_holds_archive(emulator, full_archive, key)
    first = len(emulator.state()["applied"])
    # again: already imported, nothing sent
    again = json.loads(upload(emulator, full_archive, "--state", state, "--json",
                              check=0).stdout)["journals"][0]
    assert again["uploaded"] == 0 and len(emulator.state()["applied"]) == first
    # the unpacked archive, and the same run as a rescued directory: the same experiment
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(full_archive) as zf:
        zf.extractall(unpacked)
    result = _import_json(unpacked, "--state", state)["imports"][0]
    assert result["imported"] is False and result["key"] == key
    rescued = tmp_path / "tmpabcdefgh"
    shutil.copytree(unpacked, rescued)
    os.unlink(rescued / "experiment.json")
    result = _import_json(rescued, "--placeholder", full_archive, "--state", state,
                          "--workspace", "ws", "--project-name", "proj")
    assert result["imports"][0]["imported"] is False
    assert [f for f in os.listdir(state / "imported") if f.endswith(".db")] == [f"{key}.db"]
    assert _sha(full_archive) == before  # the source is never modified


def test_import_report_keeps_what_no_endpoint_carries(full_archive, tmp_path):
    result = _import_json(full_archive, "--journal", tmp_path / "run.db")["imports"][0]
    assert result["messages"]["file_upload"] >= 9 and result["messages"]["log_other"] >= 4
    assert result["imported"] and result["ended"] and not result["skipped"]
    # what no documented endpoint carries is journaled for the SDK's routes, not set apart
    assert result["not_sendable"] == {}
    from comet_journal.schema.journal import Journal
    with Journal.open(tmp_path / "run.db", readonly=True) as journal:
        meta = journal.meta()
    assert "import.not_sendable" not in meta and meta["import.run_ended"] == "true"
    human = run_cli("import", full_archive, "--journal", tmp_path / "run.db", check=0)
    assert "already imported" in human.stdout
    inspected = run_cli("inspect", tmp_path / "run.db", check=0).stdout
    assert "SDK-only calls: 4 (clientlib_asset_upload x1, clientlib_system_details x1, " \
        "experiment_dependencies x1, experiment_file_path x1)" in inspected
    facts = json.loads(run_cli("inspect", "--json", tmp_path / "run.db", check=0).stdout)
    # the host's machine, OS release and processor: only the SDK's system-details carries them
    assert facts["sdk_only_calls"] == {"clientlib_asset_upload": 1, "clientlib_system_details": 1,
                                       "experiment_dependencies": 1, "experiment_file_path": 1}
    assert "parameter_msg.source" in facts["imported"]["dropped_fields"]
    assert not {"system_details.machine", "file_upload.epoch"} & set(
        facts["imported"]["dropped_fields"])


# --- a run SIGKILLed before end() ----------------------------------------------------------

def test_killed_run_is_rescued_from_its_temp_dir(emulator, tmp_path):
    temp_dir, placeholder = make_killed_run(tmp_path / "run")
    assert os.path.getsize(placeholder) == 22
    state = tmp_path / "state"
    refused = run_cli("import", placeholder, "--state", state)
    assert refused.returncode == 1 and "placeholder" in refused.stderr
    assert "--placeholder" in refused.stderr
    nameless = run_cli("import", temp_dir, "--placeholder", placeholder, "--state", state)
    assert nameless.returncode == 1 and "--project-name" in nameless.stderr
    result = _import_json(temp_dir, "--placeholder", placeholder, "--state", state,
                          "--workspace", "ws", "--project-name", "proj")
    imported = result["imports"][0]
    key = os.path.basename(placeholder)[:-4]
    assert imported["key"] == key and imported["ended"] is False
    proc = upload(emulator, imported["journal"], "--json", check=0)
    assert json.loads(proc.stdout)["journals"][0]["rejected"] == 0
    assert_server_holds_archive(emulator, temp_dir, key)
    stamps = [m["payload"]["local_timestamp"] for m in archive_messages(temp_dir)
              if "local_timestamp" in m["payload"]]
    (times,) = [a["fields"] for a in _applied(emulator, key)
                if a["endpoint"] == "experiment_start_end_time"]
    assert (times["startTimeMillis"], times["endTimeMillis"]) == (stamps[0], stamps[-1])
    # without its placeholder, the same directory gets the same derived key every time
    one = import_source(temp_dir, journal=tmp_path / "a.db", workspace="w", project="p")
    two = import_source(temp_dir, journal=tmp_path / "b.db", workspace="w", project="p")
    assert one.key == two.key != key and one.imported and two.imported


# --- resumable -----------------------------------------------------------------------------

# Steps only grow here: the uploader's read-back of a parameter compares the server's current
# value and timestamp, which cannot tell apart two equal values logged in the same millisecond
# (curr_step of a run that restarts its steps); see the README's limits.
RESUME_RUN = r'''
import os, sys, comet_ml
exp = comet_ml.OfflineExperiment(offline_directory=OUT, project_name="proj", workspace="ws",
                                 log_env_details=False, log_env_host=False, **QUIET)
for i in range(POINTS):
    exp.log_metric("loss", 1.0 / (i + 1), step=i)
    if i % 5 == 0:
        exp.log_parameter("lr", 0.1 / (i + 1), step=i)
        exp.log_other("phase", f"p{i}")
        print("line", i)
exp.log_asset_data(b"x" * 1000, name="a.bin")
'''


def test_killed_upload_resumes_without_duplicates(emulator, tmp_path):
    full_archive = make_archive(tmp_path / "resume", points=150, body=RESUME_RUN)
    state = tmp_path / "state"
    emulator.set_faults({"rules": [{"route": "*", "kind": "latency", "ms": 15}]})
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMET_")}
    env["PYTHONPATH"] = ROOT
    proc = subprocess.Popen([*CLI, "--url", emulator.url, "--api-key", KEY, *FAST,
                             "--concurrency", "1", "--state", str(state), full_archive],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while len(emulator.state()["applied"]) < 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    part = len(emulator.state()["applied"])
    emulator.set_faults({"rules": []})
    resumed = json.loads(upload(emulator, full_archive, "--state", state, "--json",
                                check=0).stdout)["journals"][0]
    assert 20 <= part < resumed["calls_total"] and resumed["skipped_already_uploaded"] > 0
    assert_server_holds_archive(emulator, full_archive, os.path.basename(full_archive)[:-4])


# --- bad archives ---------------------------------------------------------------------------

def _rewrite(archive, dest, edit_messages=None, drop=(), extra=()) -> str:
    """A copy of ``archive`` with messages.json edited, members dropped or added."""
    with zipfile.ZipFile(archive) as src, zipfile.ZipFile(dest, "w") as out:
        for info in src.infolist():
            if info.filename in drop:
                continue
            data = src.read(info.filename)
            if info.filename == "messages.json" and edit_messages:
                data = edit_messages(data.splitlines(keepends=True))
            out.writestr(info.filename, data)
        for name, data in extra:
            out.writestr(name, data)
    return str(dest)


def _first_file(archive) -> tuple[int, str]:
    for n, m in enumerate(archive_messages(archive), start=1):
        if m["type"] == "file_upload":
            return n, m["payload"]["file_path"]
    raise AssertionError("no file_upload")


def _bad_cases(archive, tmp):
    line, member = _first_file(archive)
    insert = lambda text: (lambda lines: b"".join(lines[:4] + [text] + lines[4:]))  # noqa
    return {
        "invalid JSON": (_rewrite(archive, tmp / "json.zip", insert(b'{"type": "metric_msg"\n')),
                         5, "not valid JSON"),
        "unknown type": (_rewrite(archive, tmp / "type.zip",
                                  insert(b'{"type": "teleport", "payload": {}}\n')),
                         5, "unknown message type 'teleport'"),
        "missing file": (_rewrite(archive, tmp / "missing.zip", drop=(member,)), line,
                         f"{member!r}, which is not in the archive"),
        "escaping path": (_rewrite(archive, tmp / "escape.zip", extra=(("../evil", b"x"),)),
                          None, "escapes the archive's directory"),
    }


def test_bad_archives_are_refused_whole_or_imported_partially(full_archive, tmp_path):
    n_messages = len(archive_messages(full_archive))
    for name, (path, line, problem) in _bad_cases(full_archive, tmp_path).items():
        before = _sha(path)
        with pytest.raises(ArchiveError) as err:
            import_source(path, journal=tmp_path / f"{name}.db")
        assert problem in str(err.value) and path in str(err.value), name
        assert err.value.line == line, name
        assert not os.path.exists(tmp_path / f"{name}.db"), name  # nothing half-imported
        assert not [f for f in os.listdir(tmp_path) if f.endswith(".importing")]
        result = import_source(path, journal=tmp_path / f"{name}.db", partial=True)
        skipped = result.report.skipped
        assert len(skipped) == 1 and skipped[0][0] == line and problem in skipped[0][1], name
        assert sum(result.report.messages.values()) == n_messages - (name == "missing file")
        assert _sha(path) == before, name
    # the CLI names the archive, the line and the problem, with the --partial hint
    (tmp_path / "cli").mkdir()
    path, _, _ = _bad_cases(full_archive, tmp_path / "cli")["invalid JSON"]
    proc = run_cli("import", path, "--journal", tmp_path / "cli.db")
    assert proc.returncode == 1 and f"{path}, messages.json line 5" in proc.stderr
    assert "--partial" in proc.stderr
    partial = run_cli("import", path, "--journal", tmp_path / "cli.db", "--partial", check=0)
    assert "skipped line 5" in partial.stdout


def test_truncated_and_orphans(full_archive, tmp_path):
    truncated = tmp_path / "cut.zip"
    data = open(full_archive, "rb").read()
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArchiveError, match="truncated or damaged") as err:
        import_source(truncated, journal=tmp_path / "cut.db")
    assert str(truncated) in str(err.value)
    orphaned = _rewrite(full_archive, tmp_path / "orphan.zip",
                        extra=(("tmporphan1", b"o"), ("tmporphan2", b"p")))
    result = import_source(orphaned, journal=tmp_path / "orphan.db")
    assert result.report.orphans == 2 and not result.report.skipped


# --- the state directory ---------------------------------------------------------------------

def test_state_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("COMET_JOURNAL_STATE", raising=False)
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    assert default_state_dir() == str(tmp_path / "home/.local/state/comet-journal")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert default_state_dir() == str(tmp_path / "xdg/comet-journal")
    monkeypatch.setenv("COMET_JOURNAL_STATE", str(tmp_path / "env"))
    assert default_state_dir() == str(tmp_path / "env")
    assert default_state_dir(tmp_path / "flag") == str(tmp_path / "flag")


# --- the watch daemon -------------------------------------------------------------------------

def test_watch_imports_archives_appearing_and_uploads_them_once(emulator, full_archive,
                                                                tmp_path):
    from test_watch import start_daemon, stop_daemon, wait_until
    watched, state = tmp_path / "offline", tmp_path / "state"
    watched.mkdir()
    placeholder = watched / ("f" * 32 + ".zip")  # a run still going: not an error
    with zipfile.ZipFile(placeholder, "w"):
        pass
    daemon = start_daemon(emulator, watched, "--rescan", "0.5", "--state", str(state))
    try:
        time.sleep(1.0)
        shutil.copy(full_archive, watched / os.path.basename(full_archive))
        key = os.path.basename(full_archive)[:-4]
        assert wait_until(lambda: _holds(emulator, full_archive, key), timeout=60, interval=1)
    finally:
        code, _, _, err = stop_daemon(daemon)
    assert code == 0, err
    assert_server_holds_archive(emulator, full_archive, key)
    assert sorted(os.listdir(watched)) == sorted([placeholder.name,
                                                  os.path.basename(full_archive)])
    assert os.path.exists(state / "imported" / f"{key}.db")
    assert "placeholder" not in err and "Error" not in err


# --- bounded memory ---------------------------------------------------------------------------

# VmHWM, this process's own peak: ru_maxrss would carry the forking parent's peak across
# exec on Linux (a pytest process grown by earlier tests)
MEASURE_IMPORT = r'''
import json, sys
from comet_journal.uploader.importer import import_source
result = import_source(sys.argv[1], journal=sys.argv[2])
hwm = next(int(line.split()[1]) for line in open("/proc/self/status")
           if line.startswith("VmHWM:"))
print(json.dumps({"calls": result.calls, "max_rss_mb": hwm / 1024}))
'''


def test_big_archive_is_imported_with_bounded_memory(tmp_path):
    from offline_archives import make_big_archive
    megabytes = 192
    archive = make_big_archive(tmp_path, megabytes)
    proc = subprocess.run([sys.executable, "-c", MEASURE_IMPORT, archive,
                           str(tmp_path / "big.db")], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=ROOT), timeout=120)
    assert proc.returncode == 0, proc.stderr
    measured = json.loads(proc.stdout)
    assert measured["calls"] == 3  # create, the asset, start/end
    assert measured["max_rss_mb"] < 110  # the asset is 192 MiB: streamed, never held
    import sqlite3
    conn = sqlite3.connect(tmp_path / "big.db")
    (payload,) = conn.execute("SELECT payload FROM calls WHERE endpoint='upload_asset'").fetchone()
    from comet_journal.schema.blobs import iter_chunks
    digest = hashlib.sha256()
    for chunk in iter_chunks(conn, json.loads(payload)["file"]["$blob"]):
        digest.update(chunk)
    with zipfile.ZipFile(archive) as zf, zf.open("tmpbig") as fh:
        want = hashlib.sha256()
        for block in iter(lambda: fh.read(1 << 20), b""):
            want.update(block)
    conn.close()
    assert digest.hexdigest() == want.hexdigest()
