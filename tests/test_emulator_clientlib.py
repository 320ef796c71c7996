"""The official SDK's own routes: idempotent creation, batches, heartbeats, uploads."""

from __future__ import annotations

import gzip
import hashlib
import json
import uuid

import pytest

from comet_journal.emulator.testing import EmulatorClient

ADD_RUN = "/clientlib/logger/add/run"


def add_run(client, key, **extra):
    body = {"apiKey": "test-key", "experimentKey": key, "projectName": "proj",
            "teamName": "ws", "offline": True, "libVersion": "3.58.8", **extra}
    return client.post(ADD_RUN, json=body)


def gzip_post(client, path, payload):
    return client.post(path, data=gzip.compress(json.dumps(payload).encode()),
                       headers={"Content-Type": "application/json;charset=utf-8",
                                "Content-Encoding": "gzip"})


@pytest.fixture
def key(emulator_client):
    key = uuid.uuid4().hex
    assert add_run(emulator_client, key).status_code == 200
    return key


def test_add_run_creates_with_the_client_key_and_refuses_it_twice(emulator_client):
    key = uuid.uuid4().hex
    first = add_run(emulator_client, key)
    assert first.status_code == 200
    handshake = first.json()
    for field in ("runId", "project_id", "focusUrl", "lastOffset", "s3DirectAccessEnabled",
                  "featureToggles"):
        assert field in handshake
    assert handshake["experimentKey"] == key and handshake["lastOffset"] == 0

    again = add_run(emulator_client, key)
    assert again.status_code == 400
    assert again.json()["sdk_error_code"] == 90999
    state = emulator_client.state()
    assert list(state["experiments"]) == [key]
    assert [a["endpoint"] for a in state["applied"]] == ["clientlib_add_run"]
    assert state["applied"][0]["fields"]["apiKey"] == "<redacted>"
    assert state["experiments"][key]["offline"] is True

    get_or_create = add_run(emulator_client, key, getOrCreateEnabled=True)
    assert get_or_create.status_code == 200
    assert get_or_create.json()["runId"] == handshake["runId"]


def test_add_run_refuses_a_malformed_key(emulator_client):
    response = add_run(emulator_client, "short-key")
    assert response.status_code == 400 and "32 to 50" in response.json()["msg"]


def test_get_run_finds_an_experiment_or_answers_90210(emulator_client, key):
    found = emulator_client.post("/clientlib/logger/get/run",
                                 json={"apiKey": "test-key", "previousExperiment": key})
    assert found.status_code == 200 and found.json()["experimentKey"] == key
    missing = emulator_client.post("/clientlib/logger/get/run",
                                   json={"apiKey": "test-key", "previousExperiment": "a" * 32})
    assert missing.status_code == 400 and missing.json()["sdk_error_code"] == 90210


def test_metric_and_parameter_batches_arrive_gzipped(emulator_client, key):
    values = [{"metricName": "loss", "metricValue": i / 10, "step": i, "epoch": None,
               "context": None, "timestamp": 1_700_000_000_000 + i} for i in range(1000)]
    values[5]["metricValue"] = "NaN"  # the SDK sends special floats as text
    response = gzip_post(emulator_client, "/clientlib/batch/logger/experiment/metric",
                         {"experimentKey": key, "values": values})
    assert response.status_code == 200
    params = [{"parameterName": "layers", "parameterValue": [1, 2], "step": None,
               "source": "manual", "context": None, "timestamp": 1},
              {"parameterName": "lr", "parameterValue": 0.1, "step": 3, "source": "manual",
               "context": None, "timestamp": 2}]
    assert gzip_post(emulator_client, "/clientlib/batch/logger/experiment/parameter",
                     {"experimentKey": key, "values": params}).status_code == 200

    view = emulator_client.state()["experiments"][key]
    assert [p["step"] for p in view["metrics"]["loss"]] == list(range(1000))
    assert view["metrics"]["loss"][5]["metricValue"] == "NaN"
    assert view["parameters"]["layers"][0]["parameterValue"] == [1, 2]
    assert view["parameters"]["lr"][0]["step"] == 3


def test_a_bad_item_rejects_the_whole_batch(emulator_client, key):
    values = [{"metricName": "loss", "metricValue": 1, "step": 1},
              {"metricName": "loss", "step": 2}]
    response = gzip_post(emulator_client, "/clientlib/batch/logger/experiment/metric",
                         {"experimentKey": key, "values": values})
    assert response.status_code == 400 and "metricValue" in response.json()["msg"]
    assert emulator_client.state()["experiments"][key]["metrics"] == {}


def test_heartbeat_answers_what_the_sdk_requires_and_ends_the_run(emulator_client, key):
    body = {"apiKey": "test-key", "runId": "r", "experimentKey": key, "projectId": "p",
            "is_alive": True, "local_timestamp": 1, "offline": True}
    answer = emulator_client.post("/clientlib/status-report/update", json=body).json()
    assert answer["is_alive_beat_duration_millis"] > 0
    assert answer["gpu_monitor_interval_millis"] > 0
    assert emulator_client.state()["experiments"][key]["state"] == "running"
    emulator_client.post("/clientlib/status-report/update", json={**body, "is_alive": False})
    emulator_client.post("/clientlib/status-report/offline-metadata",
                         json={"apiKey": "test-key", "experimentKey": key, "runId": "r",
                               "startTimestamp": 1_600_000_000_000,
                               "endTimestamp": 1_600_000_005_000})
    view = emulator_client.state()["experiments"][key]
    assert view["state"] == "ended"
    assert (view["startTimeMillis"], view["endTimeMillis"]) == (1_600_000_000_000,
                                                               1_600_000_005_000)


def test_is_alive_needs_no_key_and_reports_a_version(emulator):
    import requests
    response = requests.get(emulator.url + "/clientlib/isAlive/ver", timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    major, minor, patch = (int(x) for x in response.json()["version"].split("."))
    assert (major, minor) >= (1, 2)


def test_output_batch_on_the_alternate_base(emulator_client, key):
    lines = [{"stderr": False, "output": f"line {i}\n", "localTimestamp": 336000, "offset": i}
             for i in range(3)]
    response = gzip_post(emulator_client, "/clientlib/rest/v2/write/experiment/output",
                         {"experimentKey": key, "outputLines": lines, "runContext": None})
    assert response.status_code == 200
    state = emulator_client.state()
    assert state["applied"][-1]["endpoint"] == "batch_output"
    assert [line["output"] for line in state["experiments"][key]["output"]] == \
        ["line 0\n", "line 1\n", "line 2\n"]
    resumed = emulator_client.post("/clientlib/logger/get/run",
                                   json={"apiKey": "test-key", "previousExperiment": key})
    assert resumed.json()["lastOffset"] == 3


@pytest.mark.parametrize("keep_bytes", [True, False])
def test_asset_upload_keeps_bytes_or_only_hashes(emulator_factory, keep_bytes):
    client = EmulatorClient(emulator_factory(store_asset_bytes=keep_bytes))
    key = uuid.uuid4().hex
    add_run(client, key)
    data = b"weights" * 1000
    response = client.post(
        "/clientlib/asset/upload",
        params={"experimentId": key, "projectId": "p", "assetId": "a" * 32,
                "fileName": "model.bin", "overwrite": "False", "step": "5", "type": "asset"},
        files={"file": ("file", data), "metadata": (None, '{"kind":"model"}')})
    assert response.status_code == 200, response.text
    assert response.json()["assetId"] == "a" * 32
    asset = client.state()["experiments"][key]["assets"][0]
    assert asset["sha256"] == hashlib.sha256(data).hexdigest() and asset["size"] == len(data)
    assert asset["metadata"] == {"kind": "model"} and asset["step"] == 5
    download = client.get("/api/rest/v2/experiment/asset/get-asset",
                          params={"experimentKey": key, "assetId": "a" * 32})
    if keep_bytes:
        assert download.status_code == 200 and download.content == data
    else:
        assert download.status_code == 404


def test_upload_of_an_unknown_experiment_is_refused(emulator_client):
    response = emulator_client.post("/clientlib/asset/upload",
                                    params={"experimentId": "b" * 32, "fileName": "x"},
                                    files={"file": ("file", b"x")})
    assert response.status_code == 400
    assert emulator_client.state()["applied"] == []


def test_sdk_rest_extras_file_path_dependencies_update_status(emulator_client, key):
    path = "/api/rest/v2/write/experiment/"
    assert emulator_client.post(path + "file-path", json={"experimentKey": key,
                                                          "filePath": "/src/train.py"}).ok
    assert emulator_client.put(path + "dependencies", json={
        "experimentKey": key, "timestamp": 1, "logDependencies": [{"name": "numpy",
                                                                   "version": "2.0"}]}).ok
    assert emulator_client.post(path + "update-status", json={
        "experimentKey": key, "isAlive": False, "error": None, "hasCrashed": False}).ok
    view = emulator_client.state()["experiments"][key]
    assert view["filePath"] == "/src/train.py"
    assert view["dependencies"] == [{"name": "numpy", "version": "2.0"}]
    assert view["state"] == "ended"


def test_a_bare_server_serves_only_the_documented_routes(emulator_factory):
    client = EmulatorClient(emulator_factory(clientlib=False))
    key = uuid.uuid4().hex
    assert add_run(client, key).status_code == 404
    assert client.get("/clientlib/isAlive/ver").status_code == 404
    real_key = client.create_experiment()
    assert gzip_post(client, "/clientlib/batch/logger/experiment/metric",
                     {"experimentKey": real_key, "values": []}).status_code == 404
    assert client.post("/clientlib/rest/v2/write/experiment/output", json={
        "experimentKey": real_key, "outputLines": []}).status_code == 404
    assert client.post("/api/rest/v2/write/experiment/file-path", json={
        "experimentKey": real_key, "filePath": "x"}).status_code == 404
    assert client.post("/api/rest/v2/write/experiment/metric", json={
        "experimentKey": real_key, "metricName": "m", "metricValue": 1}).status_code == 200
    assert client.get("/api/rest/v2/experiment/metadata",
                      params={"experimentKey": real_key}).status_code == 200
