"""3D point clouds (``log_points_3d``): journaled with their files, sent through the official
SDK's routes exactly once (container, thumbnail, items), held and reported by a server
without those routes.

Archives come from the real ``comet_ml.OfflineExperiment`` (Pillow draws the thumbnail); the
recorder's ``log_points_3d`` is compared with the SDK's message."""

from __future__ import annotations

import json
import os
import zipfile

import pytest

from journal_helpers import rows
from offline_archives import archive_messages, make_archive
from test_upload_support import new_experiment, run_cli, upload

from comet_journal.emulator.compare import compare
from comet_journal.schema.blobs import read_blob
from comet_journal.schema.journal import sqlite_connect
from comet_journal.uploader.importer import import_source

BOX = {"segments": [[[0, 0, 0], [1, 0, 0]], [[1, 0, 0], [1, 1, 1]]], "color": [255, 0, 0],
       "name": "b1"}
CLOUD_RUN = r'''
import comet_ml
exp = comet_ml.OfflineExperiment(offline_directory=OUT, project_name="proj", workspace="ws",
                                 log_env_details=False, log_env_host=False, **QUIET)
exp.log_metric("loss", 0.5, step=1)
exp.log_points_3d("scene", points=[[0, 0, 0], [1, 2, 3, 0.1, 0.2, 0.3], [2, 1, 0]],
                  boxes=[BOX], step=2, metadata={"note": "n"})
exp.log_points_3d("scene", points=[[5, 5, 5], [6, 6, 6]], step=3)
exp.log_points_3d("only-boxes", boxes=[BOX])
'''.replace("BOX", repr(BOX))
CLOUDS = 3


@pytest.fixture(scope="module")
def cloud_archive(tmp_path_factory):
    return make_archive(tmp_path_factory.mktemp("cloud"), body=CLOUD_RUN)


def _clouds(source, by_name: bool = False) -> list[dict]:
    clouds = [m["payload"] for m in archive_messages(source) if m["type"] == "3d-image"]
    return sorted(clouds, key=lambda c: (c["name"], c["step"] or 0)) if by_name else clouds


def _member(source, name) -> bytes:
    with zipfile.ZipFile(source) as zf:
        return zf.read(name)


def _key(archive) -> str:
    return os.path.basename(archive)[:-4]


def _server_clouds(emu, server_key) -> list[dict]:
    """The server's clouds, by name and step (clouds of different names go concurrently)."""
    return sorted(emu.state()["experiments"][server_key]["points3d"],
                  key=lambda c: (c["name"], c["step"] or 0))


def test_the_import_journals_each_cloud_with_its_files(cloud_archive, tmp_path):
    clouds = _clouds(cloud_archive)
    assert len(clouds) == CLOUDS and all(c["thumbnail_path"] for c in clouds)
    result = import_source(cloud_archive, journal=tmp_path / "j.db")
    report = result.report.as_dict()
    assert report["not_sendable"] == {} and report["orphan_files"] == 0
    calls = [r["payload"] for r in rows(tmp_path / "j.db") if r["endpoint"] ==
             "clientlib_points_3d"]
    assert len(calls) == CLOUDS
    conn = sqlite_connect(str(tmp_path / "j.db"), readonly=True)
    try:
        for call, msg in zip(calls, clouds):
            assert (call["userFileName"], call.get("step"), call.get("metadata")) == (
                msg["name"], msg["step"], msg["metadata"])
            files = {"thumbnail": msg["thumbnail_path"],
                     **{i["type"]: i["file_path"] for i in msg["items"]}}
            assert set(files) == {k for k in ("thumbnail", "points", "boxes") if k in call}
            for field, member in files.items():  # byte for byte, in the journal
                assert read_blob(conn, call[field]["$blob"]) == _member(cloud_archive, member)
    finally:
        conn.close()


def test_clouds_reach_the_server_item_by_item_and_only_once(emulator, cloud_archive,
                                                              tmp_path, monkeypatch):
    state = tmp_path / "state"
    monkeypatch.setenv("COMET_JOURNAL_STATE", str(state))  # where compare finds server keys
    summary = json.loads(upload(emulator, cloud_archive, "--state", state, "--json",
                                check=0).stdout)["journals"][0]
    assert summary["rejected"] == 0 and summary["not_sendable"] == 0
    server_key = summary["experiments"][0]["server_key"]
    on_server = _server_clouds(emulator, server_key)
    clouds = _clouds(cloud_archive, by_name=True)
    assert len(on_server) == len(clouds)
    for have, msg in zip(on_server, clouds):
        assert (have["name"], have["step"], have["metadata"]) == (
            msg["name"], msg["step"], msg["metadata"])
        assert have["thumbnail"]["size"] == len(_member(cloud_archive, msg["thumbnail_path"]))
        assert have["thumbnailUploads"] == 1
        assert {name: (i["type"], i["size"], i["uploads"]) for name, i in
                have["items"].items()} == {
            i["file_name"]: (i["type"], len(_member(cloud_archive, i["file_path"])), 1)
            for i in msg["items"]}
    # the experiment's asset list shows each cloud once, as a 3d-image asset
    listed = [a for a in emulator.state()["experiments"][server_key]["assets"]
              if a["endpoint"] == "clientlib_asset_3d"]
    assert sorted((a["fileName"], a["type"]) for a in listed) == [(c["name"], "3d-image")
                                                                  for c in clouds]
    journal = str(state / "imported" / f"{_key(cloud_archive)}.db")
    result = compare([journal], emulator.state())
    assert result.ok, result.describe()
    # again: nothing sent
    before = len(emulator.state()["applied"])
    again = json.loads(upload(emulator, cloud_archive, "--state", state, "--json",
                              check=0).stdout)["journals"][0]
    assert again["uploaded"] == 0 and again["not_sendable"] == 0
    assert len(emulator.state()["applied"]) == before


def test_a_lost_answer_to_the_container_creation_makes_no_second_asset(
        emulator, cloud_archive, tmp_path, monkeypatch):
    emulator.set_faults({"rules": [{"route": "clientlib_asset_3d", "kind": "drop_after",
                                    "count": 2}]})
    state = tmp_path / "state"
    monkeypatch.setenv("COMET_JOURNAL_STATE", str(state))
    summary = json.loads(upload(emulator, cloud_archive, "--state", state, "--json", "--batch",
                                check=0).stdout)["journals"][0]  # batched: the default
    assert summary["rejected"] == 0, summary
    server_key = summary["experiments"][0]["server_key"]
    on_server = _server_clouds(emulator, server_key)
    assert [c["name"] for c in on_server] == [c["name"] for c in _clouds(cloud_archive, True)]
    assert all(i["uploads"] == 1 for c in on_server for i in c["items"].values())
    assert emulator.state()["faults"]["drop_after"] == 2  # two creations lost their answer
    applied = [a for a in emulator.state()["applied"] if a["endpoint"] == "clientlib_asset_3d"]
    assert len(applied) == CLOUDS  # found by the read-back, never made twice
    journal = str(state / "imported" / f"{_key(cloud_archive)}.db")
    result = compare([journal], emulator.state())
    assert result.ok, result.describe()


def test_a_cloud_left_half_sent_by_an_earlier_run_is_finished_in_its_container(
        emulator, cloud_archive, tmp_path, monkeypatch):
    """The first run made the containers but could not add the items (the route answered
    503 until the deadline); the next run finds each container and fills it."""
    state = tmp_path / "state"
    monkeypatch.setenv("COMET_JOURNAL_STATE", str(state))
    emulator.set_faults({"rules": [{"route": "clientlib_asset_item", "kind": "status",
                                    "status": 503}]})
    first = upload(emulator, cloud_archive, "--state", state, "--deadline", "2", "--json")
    assert first.returncode != 0
    made = [a for a in emulator.state()["applied"] if a["endpoint"] == "clientlib_asset_3d"]
    assert made and not any(c["items"] for c in emulator.state()["experiments"][
        made[0]["experimentKey"]]["points3d"])
    emulator.set_faults({"rules": []})
    summary = json.loads(upload(emulator, cloud_archive, "--state", state, "--json",
                                check=0).stdout)["journals"][0]
    assert summary["rejected"] == 0
    on_server = _server_clouds(emulator, made[0]["experimentKey"])
    assert [c["name"] for c in on_server] == [c["name"] for c in _clouds(cloud_archive, True)]
    assert all(i["uploads"] == 1 for c in on_server for i in c["items"].values())
    assert len([a for a in emulator.state()["applied"]
                if a["endpoint"] == "clientlib_asset_3d"]) == CLOUDS
    journal = str(state / "imported" / f"{_key(cloud_archive)}.db")
    result = compare([journal], emulator.state())
    assert result.ok, result.describe()


def test_a_server_without_the_sdk_routes_holds_the_clouds_and_says_so(
        emulator_factory, cloud_archive, tmp_path):
    bare = emulator_factory(clientlib=False)
    state = tmp_path / "state"
    proc = upload(bare, cloud_archive, "--state", state, check=0)
    assert f"not sent:  {CLOUDS} calls this server cannot take" in proc.stdout
    assert f"clientlib_points_3d x{CLOUDS}" in proc.stdout
    summary = json.loads(upload(bare, cloud_archive, "--state", state, "--json",
                                check=0).stdout)["journals"][0]
    assert summary["not_sendable"] == CLOUDS and summary["rejected"] == 0
    server_key = summary["experiments"][0]["server_key"]
    assert bare.state()["experiments"][server_key]["points3d"] == []
    assert [p["metricValue"] for p in bare.state()["experiments"][server_key]["metrics"][
        "loss"]] == [0.5]
    journal = str(state / "imported" / f"{_key(cloud_archive)}.db")
    status = json.loads(run_cli("status", "--json", "--url", bare.url, journal, check=0,
                                env={"COMET_JOURNAL_STATE": str(state)}).stdout)["journals"][0]
    assert status["sdk_only_pending"] == {"clientlib_points_3d": CLOUDS}
    assert status["in_doubt"] == 0 and status["rejected"] == 0
    inspected = run_cli("inspect", journal, check=0).stdout
    assert f"SDK-only calls: {CLOUDS} (clientlib_points_3d x{CLOUDS}" in inspected


# --- the recorder journals what the SDK's message describes ----------------------------------

def test_recorder_log_points_3d_matches_the_sdks_message(cloud_archive, tmp_path):
    journal = str(tmp_path / "run.db")
    with new_experiment(journal) as exp:
        assert exp.log_points_3d("scene", points=[[0, 0, 0], [1, 2, 3, 0.1, 0.2, 0.3],
                                                  [2, 1, 0]],
                                 boxes=[BOX], step=2, metadata={"note": "n"}) is None
        exp.log_points_3d("scene", points=[[5, 5, 5], [6, 6, 6]], step=3)
        exp.log_points_3d("only-boxes", boxes=[BOX])
    ours = [r["payload"] for r in rows(journal) if r["endpoint"] == "clientlib_points_3d"]
    clouds = _clouds(cloud_archive)
    assert [(p["userFileName"], p.get("step"), p.get("metadata")) for p in ours] == [
        (c["name"], c["step"], c["metadata"]) for c in clouds]
    conn = sqlite_connect(journal, readonly=True)
    try:
        for p, c in zip(ours, clouds):
            items = {i["type"]: _member(cloud_archive, i["file_path"]) for i in c["items"]}
            assert {k for k in ("points", "boxes") if k in p} == set(items)
            for kind, data in items.items():  # the same lines (the SDK shuffles points)
                assert sorted(read_blob(conn, p[kind]["$blob"]).splitlines()) == \
                    sorted(data.splitlines())
            assert read_blob(conn, p["thumbnail"]["$blob"])[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        conn.close()


def test_recorder_refuses_bad_clouds_with_a_warning_and_strict_raises(tmp_path, caplog):
    journal = str(tmp_path / "run.db")
    with new_experiment(journal) as exp:
        assert exp.log_points_3d("empty") is None  # neither points nor boxes
        assert exp.log_points_3d("bad", points=[[0, 0]]) is None  # a point of two numbers
        assert exp.log_points_3d(None, points=[[0, 0, 0]]) is None
        exp.log_points_3d("good", points=[[0, 0, 0]])
        summary = exp.end()
    assert summary["refused"] == 3
    assert [r["payload"]["userFileName"] for r in rows(journal)
            if r["endpoint"] == "clientlib_points_3d"] == ["good"]
    assert any("log_points_3d()" in r.getMessage() for r in caplog.records)
    with new_experiment(str(tmp_path / "strict.db"), strict=True) as strict:
        with pytest.raises((TypeError, ValueError)):
            strict.log_points_3d("bad", points=[[0, 0]])
