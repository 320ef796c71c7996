"""What no documented endpoint carries (remote assets and models, model registration,
dependencies, the script's file name): journaled as calls to the official SDK's routes, sent
where the server offers them, and otherwise kept pending and reported, never dropped.

Archives come from the real ``comet_ml.OfflineExperiment``; the recorder's methods for the
same items are compared with the SDK's messages."""

from __future__ import annotations

import json
import os
import time
import zipfile

import pytest

from journal_helpers import rows
from offline_archives import archive_messages, make_archive
from test_upload_support import new_experiment, run_cli, upload

from comet_journal.uploader.importer import import_source

SDK_ONLY_RUN = r'''
import os, sys, comet_ml
exp = comet_ml.OfflineExperiment(offline_directory=OUT, project_name="proj", workspace="ws",
                                 log_env_details=False, log_env_host=False, **QUIET)
exp.log_metric("loss", 0.5, step=1)
exp.log_remote_asset("s3://bucket/folder/x.csv", remote_file_name="x", step=3,
                     metadata={"a": 1})
exp.log_remote_asset("https://example.com/data/train.parquet", overwrite=True)
exp.log_remote_model("rm", "s3://bucket/model", sync_mode=False, metadata={"b": 2})
open(OUT + ".model.bin", "wb").write(b"weights")
exp.log_model("mdl", OUT + ".model.bin")
exp.register_model("mdl", version="1.0.1", description="d", tags=["t"], status="Production")
exp.log_dependency("numpy", "1.0")
exp.set_filename("train.py")
'''
# The SDK's calls whose messages the importer journals for its routes.
SDK_TYPES = ("remote_file", "remote_model", "register_model", "log_dependency", "file_name")


@pytest.fixture(scope="module")
def sdk_archive(tmp_path_factory):
    return make_archive(tmp_path_factory.mktemp("sdk"), body=SDK_ONLY_RUN)


def _by_type(source) -> dict[str, list]:
    out: dict[str, list] = {}
    for m in archive_messages(source):
        out.setdefault(m["type"], []).append(m["payload"])
    return out


def _applied(emu, key, endpoint) -> list[dict]:
    return [a["fields"] for a in emu.state()["applied"]
            if a["experimentKey"] == key and a["endpoint"] == endpoint]


def _remote_asset_fields(link, extra, metadata) -> tuple:
    return (link, extra.get("fileName"), extra.get("assetId"), extra.get("step"),
            bool(extra.get("overwrite")), json.dumps(metadata or None, sort_keys=True))


def test_sdk_items_reach_a_server_with_the_sdk_routes(emulator, sdk_archive, tmp_path):
    messages = _by_type(sdk_archive)
    assert all(messages.get(t) for t in SDK_TYPES), sorted(messages)
    key = os.path.basename(sdk_archive)[:-4]
    proc = upload(emulator, sdk_archive, "--state", tmp_path / "state", "--json", check=0)
    summary = json.loads(proc.stdout)["journals"][0]
    assert summary["rejected"] == 0 and summary["not_sendable"] == 0
    # remote assets, item by item: link, name, client assetId, step, overwrite, metadata
    want = sorted(_remote_asset_fields(p["remote_uri"], p["additional_params"], p["metadata"])
                  for p in messages["remote_file"])
    have = sorted(_remote_asset_fields(f["link"], f, f.get("metadata"))
                  for f in _applied(emulator, key, "clientlib_asset_upload") if "link" in f)
    assert want == have and len(want) == 2
    exp = emulator.state()["experiments"][key]
    assert sorted(a["link"] for a in exp["assets"] if a["link"]) == sorted(
        p["remote_uri"] for p in messages["remote_file"])
    # the remote model as the SDK sends it; the model's files keep their grouping
    assert exp["remoteModels"] == [{"modelName": p["model_name"],
                                    "remoteEntities": p["remote_assets"]}
                                   for p in messages["remote_model"]]
    (model,) = [a for a in exp["assets"] if a["type"] == "model-element"]
    assert model["fileName"] == "offline.model.bin"
    (element,) = [f for f in _applied(emulator, key, "upload_asset")
                  if f.get("type") == "model-element"]
    assert element["groupingName"] == "mdl"
    # dependencies and the file name
    assert exp["dependencies"] == [{"name": p["name"], "version": p["version"]}
                                   for p in messages["log_dependency"]]
    assert exp["filePath"] == messages["file_name"][-1]["file_name"]
    # the registration, as the SDK's one-request route takes it, after the model's files
    (sdk_reg,) = messages["register_model"]
    (reg,) = exp["registeredModels"]
    assert {k: v for k, v in reg.items() if k != "experimentKey"} == {
        "experimentModelName": "mdl", "registryModelName": sdk_reg["registry_name"],
        "registryModelDescription": "d", "version": "1.0.1", "tags": ["t"],
        "status": "Production"}
    order = [a["endpoint"] for a in emulator.state()["applied"] if a["experimentKey"] == key]
    assert order.index("registry_model_item_create") > max(
        i for i, e in enumerate(order) if e == "upload_asset")
    status = run_cli("status", "--url", emulator.url, summary["journal"], check=0,
                     env={"COMET_JOURNAL_STATE": str(tmp_path / "state")}).stdout
    assert "0 pending" in status and "SDK-only" not in status
    # again: nothing sent twice
    before = len(emulator.state()["applied"])
    again = json.loads(upload(emulator, sdk_archive, "--state", tmp_path / "state", "--json",
                              check=0).stdout)["journals"][0]
    assert again["uploaded"] == 0 and again["not_sendable"] == 0
    assert len(emulator.state()["applied"]) == before


def test_a_server_without_the_sdk_routes_keeps_them_pending_and_says_so(
        emulator_factory, sdk_archive, tmp_path):
    bare = emulator_factory(clientlib=False)
    state = tmp_path / "state"
    messages = _by_type(sdk_archive)
    sdk_calls = sum(len(messages[t]) for t in SDK_TYPES)
    proc = upload(bare, sdk_archive, "--state", state, check=0)
    assert f"not sent:  {sdk_calls} calls this server cannot take" in proc.stdout
    assert "clientlib_asset_upload x2" in proc.stdout and "upload it again" in proc.stdout
    summary = json.loads(upload(bare, sdk_archive, "--state", state, "--json",
                                check=0).stdout)["journals"][0]
    assert summary["not_sendable"] == sdk_calls and summary["rejected"] == 0
    key = os.path.basename(sdk_archive)[:-4]
    server_key = summary["experiments"][0]["server_key"]
    exp = bare.state()["experiments"][server_key]
    # the rest went: the metric, the model's file, start/end times
    assert [p["metricValue"] for p in exp["metrics"]["loss"]] == [0.5]
    assert [a["type"] for a in exp["assets"]] == ["model-element"]
    assert not exp["dependencies"] and exp["filePath"] is None
    assert {a["endpoint"] for a in bare.state()["applied"]}.isdisjoint(
        {"clientlib_asset_upload", "experiment_dependencies", "experiment_file_path"})
    journal = str(state / "imported" / f"{key}.db")
    status = json.loads(run_cli("status", "--json", "--url", bare.url, journal, check=0,
                                env={"COMET_JOURNAL_STATE": str(state)}).stdout)["journals"][0]
    assert status["pending"] == sdk_calls
    assert status["in_doubt"] == 0 and status["rejected"] == 0  # never sent: not in doubt
    assert status["sdk_only_pending"] == {
        "clientlib_asset_upload": 2, "clientlib_log_remote_model": 1,
        "experiment_dependencies": 1, "experiment_file_path": 1, "registry_model_item_create": 1}
    inspected = run_cli("inspect", journal, check=0).stdout
    assert f"SDK-only calls: {sdk_calls} (clientlib_asset_upload x2" in inspected


def test_what_no_route_carries_is_listed_by_name(sdk_archive, tmp_path):
    """Fields no route has are kept in the import report and listed by inspect, by name; a
    3D point cloud is no longer among them (tests/test_importer_3d.py): it is journaled."""
    cloud = {"type": "3d-image", "payload": {
        "name": "cloud", "upload_type": "asset-item", "items": [], "thumbnail_path": None,
        "metadata": {"xRange": [0, 1]}, "step": 4, "asset_id": None, "message_id": 999}}
    source = tmp_path / "cloud.zip"
    with zipfile.ZipFile(sdk_archive) as src, zipfile.ZipFile(source, "w") as out:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename == "messages.json":
                data += json.dumps(cloud).encode() + b"\n"
            out.writestr(info.filename, data)
    result = import_source(source, journal=tmp_path / "cloud.db")
    report = result.report.as_dict()
    assert report["not_sendable"] == {}
    (cloud_call,) = [r["payload"] for r in rows(tmp_path / "cloud.db")
                     if r["endpoint"] == "clientlib_points_3d"]
    assert (cloud_call["userFileName"], cloud_call["step"]) == ("cloud", 4)
    sources = sum(1 for p in _by_type(sdk_archive)["parameter_msg"]
                  if (p.get("param") or p["params"]).get("source") not in (None, "manual"))
    assert sources >= 1  # curr_step, auto-logged: the parameter endpoint has no source
    assert report["dropped_fields"] == {"register_model.workspace": 1,
                                        "parameter_msg.source": sources}
    inspected = run_cli("inspect", tmp_path / "cloud.db", check=0).stdout
    assert "3d-image" not in inspected
    assert "field not sent (no route carries it): register_model.workspace x1" in inspected
    assert f"field not sent (no route carries it): parameter_msg.source x{sources}" \
        in inspected


# --- the recorder journals the same calls the SDK's messages describe ------------------------

def test_recorder_remote_calls_match_the_sdks_messages(sdk_archive, tmp_path):
    messages = _by_type(sdk_archive)
    journal = str(tmp_path / "run.db")
    with new_experiment(journal) as exp:
        exp.set_step(3)  # the SDK's run was at step 3 (log_remote_asset's step)
        exp.log_remote_asset("s3://bucket/folder/x.csv", remote_file_name="x", step=3,
                             metadata={"a": 1})
        exp.log_remote_asset("https://example.com/data/train.parquet", overwrite=True)
        exp.log_remote_model("rm", "s3://bucket/model", sync_mode=False, metadata={"b": 2})
        exp.register_model("mdl", version="1.0.1", description="d", tags=["t"],
                           status="Production")
        exp.log_dependency("numpy", "1.0")
        exp.set_filename("train.py")
    ours = {}
    for row in rows(journal):
        ours.setdefault(row["endpoint"], []).append(row["payload"])
    # remote assets: everything but the random assetId
    drop_id = lambda t: t[:2] + t[3:]  # noqa: E731
    assert [drop_id(_remote_asset_fields(p["link"], p, p.get("metadata")))
            for p in ours["clientlib_asset_upload"]] == [
        drop_id(_remote_asset_fields(p["remote_uri"], p["additional_params"], p["metadata"]))
        for p in messages["remote_file"]]
    assert [p["type"] for p in ours["clientlib_asset_upload"]] == [
        p["upload_type"] for p in messages["remote_file"]]
    # remote model: name, URL, file name and encoded metadata
    strip = lambda entities: [{k: v for k, v in e.items() if k != "assetId"}  # noqa: E731
                              for e in entities]
    assert [(p["modelName"], strip(p["remoteEntities"]))
            for p in ours["clientlib_log_remote_model"]] == [
        (p["model_name"], strip(p["remote_assets"])) for p in messages["remote_model"]]
    # registration, dependency, file name
    (reg,) = ours["registry_model_item_create"]
    (sdk_reg,) = messages["register_model"]
    assert (reg["experimentModelName"], reg["registryModelName"], reg["version"],
            reg["registryModelDescription"], reg["tags"], reg["status"]) == (
        sdk_reg["model_name"], sdk_reg["registry_name"], sdk_reg["version"],
        sdk_reg["description"], sdk_reg["tags"], sdk_reg["status"])
    assert [d for p in ours["experiment_dependencies"] for d in p["logDependencies"]] == [
        {"name": p["name"], "version": p["version"]} for p in messages["log_dependency"]]
    assert [p["filePath"] for p in ours["experiment_file_path"]] == [
        p["file_name"] for p in messages["file_name"] if p["file_name"] == "train.py"]


def test_an_sdk_route_answering_404_is_held_for_the_run_not_rejected(emulator, tmp_path):
    """The probe found the SDK's routes, but one of them is missing (an older server): its
    calls stay pending, the others go, nothing is rejected or retried in a loop."""
    journal = str(tmp_path / "run.db")
    with new_experiment(journal) as exp:
        exp.log_dependency("numpy", "2.0")
        exp.log_dependency("torch", "2.1")
        exp.log_remote_asset("s3://bucket/a.csv")
        exp.log_metric("loss", 1.0, step=1)
    emulator.set_faults({"rules": [{"route": "experiment_dependencies", "kind": "status",
                                    "status": 404}]})
    summary = json.loads(upload(emulator, journal, "--json", check=0).stdout)["journals"][0]
    assert summary["rejected"] == 0
    assert summary["not_sendable_calls"] == {"experiment_dependencies": 2}
    exp_state = emulator.state()["experiments"][summary["experiments"][0]["server_key"]]
    assert [a["link"] for a in exp_state["assets"]] == ["s3://bucket/a.csv"]
    assert exp_state["metrics"]["loss"][0]["metricValue"] == 1.0
    # one 404 switched the route off for the run: the second call was never sent
    assert emulator.state()["requests"]["by_route"]["experiment_dependencies"] == 1
    # the route is back: the next upload sends what was kept
    emulator.set_faults({"rules": []})
    again = json.loads(upload(emulator, journal, "--json", check=0).stdout)["journals"][0]
    assert again["not_sendable"] == 0 and again["uploaded"] == 2
    assert [d["name"] for d in emulator.state()["experiments"][
        summary["experiments"][0]["server_key"]]["dependencies"]] == ["numpy", "torch"]
    from comet_journal.emulator.compare import compare
    result = compare([journal], emulator.state())
    assert result.ok, result.describe()


def test_capabilities_decide_every_journaled_route():
    from comet_journal.schema.catalogue import ENDPOINTS, JOURNALED_SDK_ROUTES
    from comet_journal.uploader.wire.capabilities import Capabilities
    bare, full = Capabilities(clientlib=False), Capabilities(clientlib=True)
    sdk = {name for name, ep in ENDPOINTS.items() if not ep.documented}
    assert sdk == set(JOURNALED_SDK_ROUTES)
    assert {n for n in ENDPOINTS if bare.not_sendable(n)} == sdk
    assert not {n for n in ENDPOINTS if full.not_sendable(n)}
    full.route_gone("experiment_dependencies")
    assert "does not offer" in full.not_sendable("experiment_dependencies")


def test_watch_never_deletes_a_journal_with_calls_kept_pending(emulator_factory, tmp_path):
    from test_watch import start_daemon, stop_daemon, wait_until
    bare = emulator_factory(clientlib=False)
    watched = tmp_path / "runs"
    watched.mkdir()
    journal = watched / "run.db"
    with new_experiment(journal) as exp:
        exp.log_metric("loss", 0.5, step=1)
        exp.log_dependency("numpy", "2.0")
    daemon = start_daemon(bare, watched, "--rescan", "0.5", "--after-upload", "delete",
                          "--state", str(tmp_path / "state"))
    try:
        assert wait_until(lambda: any(a["endpoint"] == "experiment_start_end_time"
                                      for a in bare.state()["applied"]), timeout=30)
        time.sleep(1.5)  # a rescan or two: still there
    finally:
        code, _, out, err = stop_daemon(daemon)
    assert code == 0, err
    assert journal.exists()  # its dependency is kept pending in it
    assert "1 calls this server cannot take" in out + err
